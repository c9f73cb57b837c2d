# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Node images: a debootstrap minbase Debian with systemd and sshd, imported into podman.

The recipe (packages, the files written into the tree, this module's version) is hashed; the
rootfs tarball is cached under that hash and the podman image carries it as a label, so a build
happens only when the recipe changes.
"""

import concurrent.futures
import glob
import hashlib
import json
import os
import shutil

from . import podman as pm
from .common import TestbedError, Timer, atomic_write, debian_archives, locked, log, run, safe_rmtree, state_path
from .layout import SUITES

RECIPE_VERSION = "1"
IMAGE_REPO = "localhost/kubeforge-node"
DEBIAN_MIRROR, SECURITY_MIRROR = debian_archives()

# What a freshly installed minimal server has, plus what the repackaged Debian binaries of the
# mirror link against (libseccomp2 for runc). Deliberately absent: everything the collection's
# os role installs (python3-yaml, python3-cryptography, conntrack, socat, ...).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "openssh-server",
    "iproute2",
    "iptables",
    "kmod",
    "ca-certificates",
    "libseccomp2",
)

HOSTKEYS_UNIT_NAME = "kubeforge-testbed-hostkeys.service"
HOSTKEYS_UNIT = """\
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
"""

# cgroup v1 without a cgroup namespace (podman's default there): every hierarchy in the node is
# mounted with the node's own cgroup R as its root, while /proc/PID/cgroup names full paths below
# the host's root, and podman's systemd mount of name=systemd shows the host's whole tree. runc
# then cannot find a container's cgroup when it mounts /sys/fs/cgroup into a pod ("create mountpoint
# for /sys/fs/cgroup/systemd mount: stat /sys/fs/kubepods/...: no such file or directory"). Before
# containerd starts: narrow name=systemd to the node's subtree, and bind each hierarchy onto the
# path R inside itself, so that both ways of naming a cgroup lead to the same directory. What a
# real machine needs nothing of; a cgroup v2 host skips it.
CGROUPS_SCRIPT_PATH = "/usr/local/libexec/kubeforge-testbed-cgroups"
CGROUPS_SCRIPT = r"""#!/bin/sh
set -eu
[ -f /sys/fs/cgroup/cgroup.controllers ] && exit 0
R=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/1/cgroup | sed 's#/init\.scope$##')
[ -n "$R" ] && [ "$R" != / ] || exit 0
root_of() { awk -v m="$1" '$5 == m {r = $4} END {print r}' /proc/self/mountinfo; }
if [ "$(root_of /sys/fs/cgroup/systemd)" = / ] && [ -d "/sys/fs/cgroup/systemd$R" ]; then
  mount --bind "/sys/fs/cgroup/systemd$R" /sys/fs/cgroup/systemd
fi
for m in $(awk '$9 == "cgroup" {print $5}' /proc/self/mountinfo | sort -u); do
  [ "$(root_of "$m")" = "$R" ] || continue
  [ -d "$m$R" ] && continue
  mkdir -p "$m$R"
  mount --bind "$m" "$m$R"
done
"""
CGROUPS_UNIT_NAME = "kubeforge-testbed-cgroups.service"
CGROUPS_UNIT = f"""\
[Unit]
Description=Make cgroup v1 paths consistent inside this node container
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh {CGROUPS_SCRIPT_PATH}
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
"""

HOSTS = """\
127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""


def image_name(suite):
    """The image of the suite's current recipe: the tag names the recipe, so that checkouts with
    another recipe (an older branch) keep their own image instead of rebuilding each other's."""
    return f"{IMAGE_REPO}:{suite}-{recipe_hash(suite)}"


def sources_list(suite):
    return (
        f"deb {DEBIAN_MIRROR} {suite} main\n"
        f"deb {DEBIAN_MIRROR} {suite}-updates main\n"
        f"deb {SECURITY_MIRROR} {suite}-security main\n"
    )


def recipe(suite):
    """Everything that decides the image's content."""
    return {
        "suite": suite,
        "version": RECIPE_VERSION,
        "packages": list(PACKAGES),
        "mirror": DEBIAN_MIRROR,
        "files": {
            "/etc/apt/sources.list": sources_list(suite),
            "/etc/hosts": HOSTS,
            f"/etc/systemd/system/{HOSTKEYS_UNIT_NAME}": HOSTKEYS_UNIT,
            CGROUPS_SCRIPT_PATH: CGROUPS_SCRIPT,
            f"/etc/systemd/system/{CGROUPS_UNIT_NAME}": CGROUPS_UNIT,
        },
    }


def recipe_hash(suite):
    text = json.dumps(recipe(suite), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write(root, path, text, mode=0o644):
    target = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(target):
        os.unlink(target)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(target, mode)


def _customize(root, suite):
    for path, text in recipe(suite)["files"].items():
        _write(root, path, text)
    wants = os.path.join(root, "etc/systemd/system/ssh.service.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, HOSTKEYS_UNIT_NAME)
    if not os.path.lexists(link):
        os.symlink(f"/etc/systemd/system/{HOSTKEYS_UNIT_NAME}", link)
    wants = os.path.join(root, "etc/systemd/system/sysinit.target.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, CGROUPS_UNIT_NAME)
    if not os.path.lexists(link):
        os.symlink(f"/etc/systemd/system/{CGROUPS_UNIT_NAME}", link)
    # Package lists as on an installed machine; resolv.conf only for this step (nodes get theirs
    # when they are created).
    shutil.copyfile("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
    run(["chroot", root, "apt-get", "-q", "update"], timeout=600)
    for leftover in glob.glob(os.path.join(root, "etc/ssh/ssh_host_*")):
        os.unlink(leftover)
    for leftover in glob.glob(os.path.join(root, "var/cache/apt/*.bin")) + glob.glob(
        os.path.join(root, "var/cache/apt/archives/*.deb")
    ):
        os.unlink(leftover)
    for path in ("etc/resolv.conf", "etc/hostname", "var/lib/dbus/machine-id"):
        target = os.path.join(root, path)
        if os.path.lexists(target) and not (path == "var/lib/dbus/machine-id" and os.path.islink(target)):
            os.unlink(target)
    # An empty machine-id makes systemd create a fresh one on each node's first boot.
    _write(root, "/etc/machine-id", "", 0o444)
    os.makedirs(os.path.join(root, "root/.ssh"), mode=0o700, exist_ok=True)
    os.chmod(os.path.join(root, "root/.ssh"), 0o700)


def _build_rootfs(suite, digest, tarball, timer):
    build = state_path("build", f"{suite}-{digest}")
    cache = state_path("cache", "debootstrap", suite)
    os.makedirs(cache, exist_ok=True)
    safe_rmtree(build)
    os.makedirs(os.path.dirname(build), exist_ok=True)
    try:
        with timer.step("debootstrap"):
            proc = run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    f"--cache-dir={cache}",
                    suite,
                    build,
                    DEBIAN_MIRROR,
                ],
                check=False,
                timeout=1800,
            )
            if proc.returncode != 0:
                detail = ""
                debootstrap_log = os.path.join(build, "debootstrap", "debootstrap.log")
                if os.path.exists(debootstrap_log):
                    with open(debootstrap_log, encoding="utf-8", errors="replace") as handle:
                        detail = handle.read().strip().splitlines()[-1:]
                    detail = detail[0] if detail else ""
                reason = detail or (proc.stderr.strip().splitlines() or [""])[-1]
                raise TestbedError(f"debootstrap {suite} failed: {reason}")
        with timer.step("customize"):
            _customize(build, suite)
        with timer.step("tar"):
            partial = tarball + ".partial"
            run(["tar", "--numeric-owner", "-C", build, "-cf", partial, "."], timeout=1800)
            os.replace(partial, tarball)
    finally:
        safe_rmtree(build)


def build_image(suite, force=False):
    """Make sure ``localhost/kubeforge-node:<suite>-<recipe>`` exists for the current recipe."""
    timer = Timer(prefix=f"image {suite}: ")
    digest = recipe_hash(suite)
    image = image_name(suite)
    labels = pm.image_labels(image)
    if not force and labels and labels.get(pm.RECIPE_LABEL) == digest:
        log(f"image {suite}: {image} is up to date (recipe {digest})")
        return {"suite": suite, "image": image, "recipe": digest, "built": False, "steps": []}
    images_dir = state_path("images")
    os.makedirs(images_dir, exist_ok=True)
    tarball = os.path.join(images_dir, f"{suite}-{digest}.tar")
    if force or not os.path.exists(tarball):
        _build_rootfs(suite, digest, tarball, timer)
    else:
        log(f"image {suite}: using cached rootfs {tarball}")
    old_id = pm.image_id(image)
    with timer.step("import"):
        pm.podman(
            "import",
            "--change",
            'CMD ["/sbin/init"]',
            "--change",
            f"LABEL {pm.RECIPE_LABEL}={digest}",
            "--change",
            f"LABEL {pm.SUITE_LABEL}={suite}",
            tarball,
            image,
            timeout=1800,
        )
    new_id = pm.image_id(image)
    if old_id and old_id != new_id:
        # Still used by a running node: podman refuses, which is what we want.
        pm.podman("rmi", old_id, check=False)
    for stale in glob.glob(os.path.join(images_dir, f"{suite}-*.tar")):
        if stale != tarball:
            os.unlink(stale)
    return {"suite": suite, "image": image, "recipe": digest, "built": True, "steps": timer.steps}


def build_images(suites=None, force=False):
    suites = list(dict.fromkeys(suites or SUITES))
    for suite in suites:
        if suite not in SUITES:
            raise TestbedError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    with locked("image"):
        if len(suites) == 1:
            results = [build_image(suites[0], force)]
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(suites)) as pool:
                futures = [pool.submit(build_image, suite, force) for suite in suites]
                results = [future.result() for future in futures]
    atomic_write(
        state_path("images", "images.json"),
        json.dumps({r["suite"]: {"image": r["image"], "recipe": r["recipe"]} for r in results}, indent=2) + "\n",
    )
    return results


def available_suites():
    """Suites whose node image exists locally."""
    return [suite for suite in SUITES if pm.image_labels(image_name(suite)) is not None]
