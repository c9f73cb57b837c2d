# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Clusters of nodes: systemd containers reached over SSH, and their Ansible inventory."""

import concurrent.futures
import datetime
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time

from . import podman as pm
from .common import TestbedError, atomic_write, ensure_ssh_key, locked, log, read_json, run, ssh_key_path, state_path
from .hostsetup import ensure_kernel_limits
from .image import HOSTS, image_name
from .inventory import SSH_COMMON_ARGS, render_inventory
from .layout import expand_spec, validate_cluster_name

NODE_LABEL = "kubeforge.testbed.node"
# Data directories get volumes: containerd's snapshots fail on overlay-on-overlay, etcd's fsyncs
# are slow there.
VOLUMES = ("/var/lib/containerd", "/var/lib/etcd")


def cluster_dir(cluster):
    return state_path("clusters", cluster)


def default_inventory(cluster):
    return os.path.join(cluster_dir(cluster), "inventory.yml")


def resolv_conf_from(text):
    """Name server, search and options lines of a resolv.conf, without loopback servers (a
    resolver on the host's loopback cannot be reached from a node). None when no server is left."""
    servers, extra = [], []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            try:
                if ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            servers.append(fields[1])
        elif fields[0] in ("search", "domain", "options"):
            extra.append(" ".join(fields))
    if not servers:
        return None
    return "".join(f"nameserver {server}\n" for server in servers[:3]) + "".join(f"{line}\n" for line in extra)


def host_resolv_conf():
    """resolv.conf for the nodes, from the host's (or systemd-resolved's upstream list)."""
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            with open(path, encoding="utf-8") as handle:
                text = resolv_conf_from(handle.read())
        except OSError:
            continue
        if text:
            return text
    raise TestbedError("no usable name server in /etc/resolv.conf or /run/systemd/resolve/resolv.conf")


def node_files(name, public_key, resolv_conf):
    """Files written into a new node before it boots: {path in the node: (text, mode)}."""
    return {
        "/root/.ssh/authorized_keys": (public_key + "\n", 0o600),
        "/etc/resolv.conf": (resolv_conf, 0o644),
        "/etc/hosts": (HOSTS + f"127.0.1.1\t{name}\n", 0o644),
    }


def addresses_path():
    return state_path("addresses.json")


def static_range(subnet):
    """The upper half of the podman network: podman hands out dynamic addresses from the bottom,
    so the nodes' fixed addresses never meet another container's."""
    if subnet.prefixlen >= 30:
        raise TestbedError(f"podman network {subnet} is too small for fixed node addresses")
    upper = list(subnet.subnets(prefixlen_diff=1))[1]
    return upper


def assign_addresses(names, existing_containers):
    """A fixed address for each node name, kept for the node's life (stop and start keep it; only
    `down` frees it). Reads and updates STATE/addresses.json; call under the addresses lock."""
    subnet, gateway = pm.network_subnet()
    table = read_json(addresses_path(), default=None) or {}
    # Forget nodes that no longer exist (removed by hand, or by a run that did not finish).
    table = {name: address for name, address in table.items() if name in existing_containers or name in names}
    in_use = in_use_on_network()
    taken = set(table.values()) | {str(gateway)} | in_use
    pool = static_range(subnet)
    hosts = (str(host) for host in pool.hosts())
    for name in names:
        # the names asked for are nodes to create: their address in use means another container has it
        if name in table and ipaddress.ip_address(table[name]) in subnet and table[name] not in in_use:
            continue
        for candidate in hosts:
            if candidate not in taken:
                table[name] = candidate
                taken.add(candidate)
                break
        else:
            raise TestbedError(f"no free fixed address left in {pool}")
    atomic_write(addresses_path(), json.dumps(dict(sorted(table.items())), indent=2) + "\n")
    return table


def in_use_on_network():
    """Addresses of the containers on the podman network, stopped ones too (podman keeps a fixed
    address reserved while its container exists), those of another state directory's nodes among
    them."""
    proc = pm.podman("ps", "-a", "-q", check=False)
    ids = proc.stdout.split()
    if not ids:
        return set()
    details = json.loads(pm.podman("container", "inspect", *ids, check=False).stdout or "[]")
    return {pm.container_address(item) for item in details} - {""}


def release_addresses(names):
    with locked("addresses"):
        table = read_json(addresses_path(), default=None) or {}
        for name in names:
            table.pop(name, None)
        atomic_write(addresses_path(), json.dumps(dict(sorted(table.items())), indent=2) + "\n")


def _copy_in(name, files):
    # One file at a time: copying a directory tree would also copy its directories' modes onto
    # /root and /root/.ssh, and podman 4.3 leaves a temporary file behind for tar streams on stdin.
    with tempfile.TemporaryDirectory(prefix="kubeforge-node-") as tmp:
        for index, (path, (text, mode)) in enumerate(sorted(files.items())):
            source = os.path.join(tmp, str(index))
            with open(source, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(source, mode)
            pm.podman("cp", source, f"{name}:{path}", timeout=60)


def _create(node, cluster, public_key, resolv_conf, address):
    args = [
        "create",
        "--privileged",
        "--systemd=always",
        "--dns=none",
        "--no-hosts",
        "--hostname",
        node.name,
        "--name",
        node.name,
        "--label",
        f"{pm.CLUSTER_LABEL}={cluster}",
        "--label",
        f"{pm.SUITE_LABEL}={node.suite}",
        "--label",
        f"{NODE_LABEL}={node.name}",
        "--network",
        pm.NETWORK,
        "--ip",
        address,
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
    ]
    for volume in VOLUMES:
        args += ["-v", volume]
    args += [image_name(node.suite), "/sbin/init"]
    pm.podman(*args, timeout=120)
    try:
        _copy_in(node.name, node_files(node.name, public_key, resolv_conf))
        pm.podman("start", node.name, timeout=120)
    except TestbedError:
        pm.podman("rm", "-f", "-v", "-t", "0", node.name, check=False)
        raise


def _systemd_state(name):
    """systemd's state on the node, or "" when it does not answer in time (asked again until the deadline)."""
    try:
        proc = pm.podman("exec", name, "systemctl", "is-system-running", check=False, timeout=15)
    except TestbedError:
        # on a host loaded by many running nodes one exec can take longer; wait_node's deadline decides
        return ""
    return proc.stdout.strip()


def _ssh_ok(address):
    command = ["ssh", "-i", ssh_key_path(), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
               *SSH_COMMON_ARGS.split(), f"root@{address}", "true"]
    try:
        proc = run(command, check=False, timeout=15)
    except TestbedError as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]


def wait_node(name, timeout):
    """Wait until systemd has finished booting and SSH accepts the key; return (state, failed units)."""
    deadline = time.monotonic() + timeout
    state = ""
    while True:
        state = _systemd_state(name)
        if state in ("running", "degraded"):
            break
        info = pm.inspect_containers([name]).get(name, {})
        if not (info.get("State") or {}).get("Running"):
            raise TestbedError(
                f"node {name} stopped while booting (podman logs {name}; a silent exit is often the host's "
                "fs.inotify.max_user_instances, shared by every node)"
            )
        if time.monotonic() > deadline:
            raise TestbedError(f"node {name}: systemd is still {state or 'not answering'!r} after {timeout:.0f} s")
        time.sleep(0.5)
    failed = []
    if state == "degraded":
        proc = pm.podman("exec", name, "systemctl", "list-units", "--failed", "--plain", "--no-legend", check=False)
        failed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    address = pm.container_address(pm.inspect_containers([name])[name])
    if not address:
        raise TestbedError(f"node {name} has no address on the podman network")
    reason = ""
    while True:
        ok, reason = _ssh_ok(address)
        if ok:
            break
        if time.monotonic() > deadline:
            raise TestbedError(
                f"node {name}: SSH on {address} does not accept the test bed key after {timeout:.0f} s: {reason}"
            )
        time.sleep(0.5)
    return state, failed, address


def _table(rows, header):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header] + rows
    )


def up(cluster, layout, inventory_path=None, prune=False, timeout=180):
    start = time.monotonic()
    validate_cluster_name(cluster)
    nodes = expand_spec(cluster, layout)
    for suite in sorted({node.suite for node in nodes}):
        if pm.image_labels(image_name(suite)) is None:
            raise TestbedError(f"node image {image_name(suite)} does not exist: run hack/testbed image --suite {suite}")
    public_key = ensure_ssh_key()
    resolv_conf = host_resolv_conf()
    ensure_kernel_limits()
    with locked(f"cluster-{cluster}"):
        existing = {pm.container_name(record): record for record in pm.testbed_containers(cluster)}
        wanted = {node.name for node in nodes}
        create, restart, keep = [], [], []
        for node in nodes:
            record = existing.get(node.name)
            if record is None:
                if pm.podman("container", "exists", node.name, check=False).returncode == 0:
                    raise TestbedError(f"a container named {node.name} exists and is not a node of cluster {cluster}")
                create.append(node)
                continue
            suite = (record.get("Labels") or {}).get(pm.SUITE_LABEL)
            if suite != node.suite:
                raise TestbedError(
                    f"node {node.name} runs {suite}, the layout asks for {node.suite}: "
                    f"remove it first (hack/testbed down --cluster {cluster} --node {node.name})"
                )
            if record.get("State") == "created":
                # Never started: an earlier run stopped between create and start, so the node may
                # lack its key and resolver. Start it afresh.
                pm.podman("rm", "-f", "-v", "-t", "0", node.name, timeout=120)
                create.append(node)
            else:
                (keep if record.get("State") == "running" else restart).append(node)
        extra = sorted(set(existing) - wanted)
        with locked("addresses"):
            every_node = {pm.container_name(record) for record in pm.testbed_containers()}
            addresses = assign_addresses([node.name for node in create], every_node)

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            jobs = [pool.submit(_create, node, cluster, public_key, resolv_conf, addresses[node.name])
                    for node in create]
            jobs += [pool.submit(pm.podman, "start", node.name, timeout=120) for node in restart]
            if extra and prune:
                jobs.append(pool.submit(pm.podman, "rm", "-f", "-v", "-t", "0", *extra, timeout=300))
            for job in jobs:
                job.result()
        if extra and prune:
            release_addresses(extra)
        started = time.monotonic()
        if extra and not prune:
            log(f"up: not in the layout, left running (--prune removes them): {', '.join(extra)}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            waits = {node.name: pool.submit(wait_node, node.name, timeout) for node in nodes}
            errors = []
            results = {}
            for name, job in waits.items():
                try:
                    results[name] = job.result()
                except TestbedError as exc:
                    errors.append(str(exc))
            if errors:
                raise TestbedError("; ".join(errors))

        hosts = []
        for node in nodes:
            state, failed, address = results[node.name]
            if failed:
                log(f"up: node {node.name}: systemd {state}, failed units: {', '.join(failed)}")
            hosts.append({"name": node.name, "address": address, "suite": node.suite, "groups": list(node.groups)})
        text = render_inventory(cluster, hosts, ssh_key_path())
        atomic_write(default_inventory(cluster), text)
        if inventory_path and os.path.abspath(inventory_path) != default_inventory(cluster):
            atomic_write(inventory_path, text)
        atomic_write(
            os.path.join(cluster_dir(cluster), "cluster.json"),
            json.dumps(
                {
                    "cluster": cluster,
                    "layout": layout,
                    "inventory": os.path.abspath(inventory_path or default_inventory(cluster)),
                    "nodes": [dict(host, roles=list(node.roles)) for host, node in zip(hosts, nodes)],
                    "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                },
                indent=2,
            )
            + "\n",
        )
    rows = [[h["name"], h["suite"], h["address"], ",".join(h["groups"])] for h in hosts]
    print(_table(rows, ["NODE", "SUITE", "ADDRESS", "GROUPS"]))
    print(f"inventory: {os.path.abspath(inventory_path or default_inventory(cluster))}")
    log(
        f"up {cluster}: {len(nodes)} nodes ({len(create)} created, {len(restart)} started, {len(keep)} kept"
        f"{', ' + str(len(extra)) + ' removed' if extra and prune else ''}); "
        f"ready {time.monotonic() - started:.1f} s after start; {time.monotonic() - start:.1f} s in total"
    )
    return hosts


def down(cluster, only=None):
    validate_cluster_name(cluster)
    with locked(f"cluster-{cluster}"):
        existing = [pm.container_name(record) for record in pm.testbed_containers(cluster)]
        if only:
            unknown = [name for name in only if name not in existing]
            if unknown:
                raise TestbedError(f"not nodes of cluster {cluster}: {', '.join(unknown)}")
            names = list(dict.fromkeys(only))
        else:
            names = existing
        start = time.monotonic()
        if names:
            pm.podman("rm", "-f", "-v", "-t", "0", *names, timeout=300)
            release_addresses(names)
        left = [name for name in existing if name not in names]
        if not left and os.path.isdir(cluster_dir(cluster)):
            shutil.rmtree(cluster_dir(cluster))
    log(
        f"down {cluster}: removed {len(names)} node(s){': ' + ', '.join(names) if names else ''}; "
        f"{len(left)} left; {time.monotonic() - start:.1f} s"
    )


def down_all():
    records = pm.testbed_containers()
    names = [pm.container_name(record) for record in records]
    if names:
        pm.podman("rm", "-f", "-v", "-t", "0", *names, timeout=600)
        release_addresses(names)
    clusters = state_path("clusters")
    if os.path.isdir(clusters):
        shutil.rmtree(clusters)
    log(f"down --all: removed {len(names)} node(s)")


def list_nodes():
    records = pm.testbed_containers()
    names = [pm.container_name(record) for record in records]
    details = pm.inspect_containers(names)
    rows = []
    for record in records:
        name = pm.container_name(record)
        labels = record.get("Labels") or {}
        info = details.get(name, {})
        address = pm.container_address(info) if (info.get("State") or {}).get("Running") else ""
        rows.append(
            [
                labels.get(pm.CLUSTER_LABEL, ""),
                name,
                labels.get(pm.SUITE_LABEL, ""),
                record.get("State", ""),
                address or "-",
            ]
        )
    rows.sort(key=lambda row: (row[0], row[1]))
    if rows:
        print(_table(rows, ["CLUSTER", "NODE", "SUITE", "STATE", "ADDRESS"]))
    else:
        print("no test bed nodes")
    for cluster in sorted(os.listdir(state_path("clusters"))) if os.path.isdir(state_path("clusters")) else []:
        data = read_json(os.path.join(cluster_dir(cluster), "cluster.json"), default={}) or {}
        if data:
            print(f"cluster {cluster}: layout {data.get('layout')}, inventory {data.get('inventory')}")


def exec_in(node, command):
    if pm.podman("container", "exists", node, check=False).returncode != 0:
        raise TestbedError(f"no node named {node}")
    args = ["podman", "exec", "-i"]
    if sys.stdin.isatty() and sys.stdout.isatty():
        args.append("-t")
    sys.stdout.flush()
    os.execvp("podman", args + [node] + list(command))
