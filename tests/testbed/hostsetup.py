# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Prepare a Debian 12 host: podman with runc, debootstrap, and a containers.conf that works here.

crun fails on hosts with cgroup v1 controllers plus an empty cgroup2 mount, and podman's default
ulimits cannot be raised without CAP_SYS_RESOURCE: runc and lowered ulimits avoid both.
"""

import os
import time

from .common import TestbedError, atomic_write, log, run

# podman, runc, debootstrap for the nodes (podman's recommended packages bring netavark, the
# network stack the nodes were checked with; iptables is only suggested but netavark needs it);
# binutils (objdump) and openssh-client (ssh, ssh-keygen) are used by the tool itself; gcc builds
# the pause program and, with pkg-config and libseccomp-dev, runc's cgo part.
HOST_PACKAGES = ("podman", "runc", "debootstrap", "iptables", "binutils", "openssh-client", "tar", "gzip", "gcc",
                 "libc6-dev", "pkg-config", "libseccomp-dev")
CONTAINERS_CONF = "/etc/containers/containers.conf"
ULIMITS = ["nofile=16384:16384", "nproc=16384:16384"]
CONTAINERS_CONF_TEXT = f"""\
# Written by hack/testbed host-setup.
[containers]
default_ulimits = [{", ".join(f'"{u}"' for u in ULIMITS)}]
[engine]
runtime = "runc"
"""


def missing_packages(packages=HOST_PACKAGES):
    proc = run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *packages], check=False)
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip().endswith("install ok installed")}
    return [package for package in packages if package not in installed]


def containers_conf_ok(text):
    """True when the file already selects runc and the lowered ulimits."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return (data.get("engine") or {}).get("runtime") == "runc" and sorted(
        (data.get("containers") or {}).get("default_ulimits") or []
    ) == sorted(ULIMITS)


def host_setup():
    start = time.monotonic()
    if os.geteuid() != 0:
        raise TestbedError("host-setup must run as root")
    if not os.path.exists("/etc/debian_version"):
        raise TestbedError("host-setup supports Debian hosts only (no /etc/debian_version)")
    missing = missing_packages()
    if missing:
        log(f"host-setup: installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "-q", "update"], env=env, timeout=900)
        run(["apt-get", "-q", "-y", "install", *missing], env=env, timeout=1800)
    else:
        log("host-setup: packages present (" + ", ".join(HOST_PACKAGES) + ")")
    current = ""
    if os.path.exists(CONTAINERS_CONF):
        with open(CONTAINERS_CONF, encoding="utf-8") as handle:
            current = handle.read()
    if containers_conf_ok(current):
        log(f"host-setup: {CONTAINERS_CONF} already selects runc and lowered ulimits")
    else:
        if current:
            atomic_write(CONTAINERS_CONF + ".before-testbed", current)
            log(f"host-setup: kept the previous {CONTAINERS_CONF} as {CONTAINERS_CONF}.before-testbed")
        atomic_write(CONTAINERS_CONF, CONTAINERS_CONF_TEXT)
        log(f"host-setup: wrote {CONTAINERS_CONF}")
    runtime = run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], timeout=120).stdout.strip()
    if runtime != "runc":
        raise TestbedError(
            f"podman uses the OCI runtime {runtime!r}, not runc, although {CONTAINERS_CONF} asks for runc"
        )
    log(f"host-setup: podman runtime {runtime}; {time.monotonic() - start:.1f} s")


# systemd, journald and containerd in every node each hold inotify instances, counted against one
# host-wide per-user limit (128 by default): about seven per node, so the 19th node's systemd cannot
# start and exits without a word. These floors leave room for a few hundred nodes.
KERNEL_FLOORS = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def ensure_kernel_limits(proc_sys="/proc/sys"):
    """Raise the host's inotify limits to the floors above; say so, or say why it cannot."""
    for key, floor in KERNEL_FLOORS.items():
        path = os.path.join(proc_sys, key)
        try:
            with open(path, encoding="ascii") as handle:
                current = int(handle.read().split()[0])
        except (OSError, ValueError):
            continue
        if current >= floor:
            continue
        name = key.replace("/", ".")
        try:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(str(floor))
            log(f"host limits: raised {name} from {current} to {floor} (many nodes share it)")
        except OSError as exc:
            log(f"host limits: {name} is {current} and cannot be raised ({exc.strerror}): "
                f"nodes beyond about {current // 8} may fail to boot")
