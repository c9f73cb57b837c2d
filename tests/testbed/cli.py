# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Command line of the test bed (hack/testbed)."""

import argparse
import os
import sys
import time

from .common import TestbedError, log
from .layout import SUITES, LayoutError

# Another state directory (KUBEFORGE_TESTBED_HOME) beside the default one needs its own port.
DEFAULT_PORT = int(os.environ.get("KUBEFORGE_TESTBED_PORT") or 18080)


def _cmd_host_setup(args):
    from . import hostsetup

    hostsetup.host_setup()
    return 0


def _cmd_image(args):
    from . import image

    start = time.monotonic()
    results = image.build_images(args.suite or list(SUITES), force=args.force)
    for result in results:
        state = "built" if result["built"] else "cached"
        print(f"{result['image']}\trecipe {result['recipe']}\t{state}")
    log(f"image: {time.monotonic() - start:.1f} s in total")
    return 0


def _cmd_mirror(args):
    from . import mirror, server

    if args.stop:
        server.stop()
        return 0
    if args.url:
        print(server.url(port=None))
        return 0
    if args.vars and not args.serve:
        _write_mirror_vars(server.url(port=None), args.vars)
        return 0
    start = time.monotonic()
    mirror.build_mirror(refresh=args.refresh, verify=not args.no_verify, go_sets=_go_sets(args))
    log(f"mirror: {time.monotonic() - start:.1f} s in total")
    if args.serve:
        base_url = server.serve(args.port)
        print(base_url)
        _write_mirror_vars(base_url, args.vars)
    return 0


def _go_sets(args):
    sets = args.go_set or ["cluster", "addons"]
    return [] if "none" in sets else sets


def _cmd_build(args):
    from . import gobuild

    if args.background_child:
        return gobuild.run_background_child(_go_sets(args))
    if args.background:
        pid, log_path = gobuild.start_background(_go_sets(args))
        print(f"go builds running in the background (pid {pid}); progress in {log_path}")
        return 0
    if args.wait:
        return gobuild.wait_background()
    start = time.monotonic()
    stamps = gobuild.build(_go_sets(args))
    for line in gobuild.report(stamps):
        print(line)
    log(f"build: {time.monotonic() - start:.1f} s in total")
    return 0


def _write_mirror_vars(base_url, extra_path=None):
    """STATE/mirror/vars.yml (and ``extra_path``): an inventory with the mirror's URL and checksums."""
    from . import gobuild, manifest, mirror
    from .common import atomic_write, read_json
    from .layout import SUITES

    document = read_json(mirror.manifest_path(), default=None) or {}
    text = manifest.render_vars_inventory(
        manifest.mirror_variables(document.get("artifacts", []), base_url, SUITES,
                                  gobuild.load_image_table()))
    for path in filter(None, (os.path.join(mirror.mirror_root(), "vars.yml"), extra_path)):
        atomic_write(path, text)
        log(f"mirror variables: {path}")


def _cmd_up(args):
    from . import nodes

    nodes.up(
        args.cluster,
        args.layout,
        inventory_path=args.inventory,
        prune=args.prune,
        timeout=args.timeout,
    )
    return 0


def _cmd_down(args):
    from . import nodes

    if args.all:
        if args.cluster or args.node:
            raise TestbedError("down --all takes neither --cluster nor --node")
        nodes.down_all()
    else:
        if not args.cluster:
            raise TestbedError("down needs --cluster NAME (or --all)")
        nodes.down(args.cluster, args.node or None)
    return 0


def _cmd_ls(args):
    from . import nodes

    nodes.list_nodes()
    return 0


def _cmd_exec(args):
    from . import nodes

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise TestbedError("exec needs a command: hack/testbed exec NODE -- CMD ...")
    return nodes.exec_in(args.node, command)


def _cmd_all(args):
    from . import hostsetup, image, mirror, nodes, server
    from .common import Timer

    start = time.monotonic()
    timer = Timer(prefix="all: ")
    with timer.step("host-setup"):
        hostsetup.host_setup()
    with timer.step("image"):
        image.build_images(list(SUITES))
    with timer.step("mirror"):
        mirror.build_mirror(refresh=args.refresh, go_sets=_go_sets(args))
    with timer.step("mirror --serve"):
        base_url = server.serve(args.port)
        print(base_url)
        _write_mirror_vars(base_url)
    with timer.step("up"):
        nodes.up(args.cluster, args.layout, inventory_path=args.inventory, prune=args.prune, timeout=args.timeout)
    summary = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in timer.steps)
    log(f"all: {time.monotonic() - start:.1f} s in total ({summary})")
    return 0


def go_set_arg(p):
    from .gobuild import SET_NAMES

    p.add_argument("--go-set", action="append", choices=SET_NAMES + ("none",),
                   help="what the Go builds produce (repeatable): cluster (default: Kubernetes, etcd, containerd, "
                        "runc, crictl, CNI plugins at the default minor), upgrade (the previous minor's "
                        "Kubernetes), all, or none")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hack/testbed",
        description="Debian nodes in podman containers and a local mirror laid out like the upstream release sites.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("host-setup", help="install podman, runc, debootstrap; configure containers.conf")
    p.set_defaults(func=_cmd_host_setup)

    p = sub.add_parser("image", help="build the node images localhost/kubeforge-node:SUITE-RECIPE")
    p.add_argument("--suite", action="append", choices=SUITES, help="suite to build (repeatable; default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even when the recipe is unchanged")
    p.set_defaults(func=_cmd_image)

    p = sub.add_parser("mirror", help="build (and serve) the local mirror of release artifacts")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--serve", action="store_true", help="also start the HTTP server (idempotent)")
    group.add_argument("--url", action="store_true", help="print the mirror URL as the nodes see it")
    group.add_argument("--stop", action="store_true", help="stop the HTTP server")
    p.add_argument("--vars", metavar="PATH",
                   help="also write the mirror's inventory variables (URL, checksums) to PATH; "
                        "STATE/mirror/vars.yml is always written when serving")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--refresh", action="store_true", help="refresh the Debian package lists now")
    p.add_argument("--no-verify", action="store_true", help="skip running the binaries in the node images")
    go_set_arg(p)
    p.set_defaults(func=_cmd_mirror)

    p = sub.add_parser("build", help="build release binaries from their Go modules (what the mirror serves)")
    go_set_arg(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--background", action="store_true", help="start the build detached and return at once")
    group.add_argument("--wait", action="store_true",
                       help="wait for a background build, showing its progress; exit with its status")
    group.add_argument("--background-child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_build)

    def cluster_args(p):
        p.add_argument("--cluster", required=True, help="cluster name (lowercase RFC 1123 label)")
        p.add_argument("--layout", required=True, help="COUNT:ROLES[@SUITE],... e.g. 3:cp+etcd,2:worker@trixie")
        p.add_argument("--inventory", help="where to write the inventory (default STATE/clusters/NAME/inventory.yml)")
        p.add_argument("--prune", action="store_true", help="remove nodes of the cluster that the layout does not name")
        p.add_argument("--timeout", type=float, default=180, help="seconds to wait for each node (default 180)")

    p = sub.add_parser("up", help="start the nodes of a layout and write the inventory")
    cluster_args(p)
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("down", help="remove a cluster's nodes (with their volumes)")
    p.add_argument("--cluster", help="cluster name")
    p.add_argument("--node", action="append", help="remove only this node (repeatable)")
    p.add_argument("--all", action="store_true", help="remove every test bed node")
    p.set_defaults(func=_cmd_down)

    p = sub.add_parser("ls", help="list clusters, nodes, states and addresses")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("exec", help="run a command in a node: exec NODE -- CMD ...")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("all", help="host-setup, image, mirror --serve and up in one go")
    cluster_args(p)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--refresh", action="store_true", help="refresh the Debian package lists now")
    go_set_arg(p)
    p.set_defaults(func=_cmd_all)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (TestbedError, LayoutError) as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
