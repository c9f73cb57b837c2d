# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""What the roles need to know about a host, read in one pass, and the host checks of preflight.

Standard library only: this runs before the os role has installed anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import platform
import re
import shlex

# (os-release ID, major version) pairs the collection supports, by package family.
SUPPORTED_OS = {
    "debian": ("Debian", ("12", "13")),
    "ubuntu": ("Debian", ("22.04", "24.04")),
    "rhel": ("RedHat", ("9", "10")),
    "rocky": ("RedHat", ("9", "10")),
    "almalinux": ("RedHat", ("9", "10")),
    "centos": ("RedHat", ("9", "10")),
    "ol": ("RedHat", ("9", "10")),
}
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
TIME_SERVICES = ("chronyd", "chrony", "systemd-timesyncd", "ntpd", "ntpsec", "openntpd")
# Programs the collection runs as services: one still running a binary that has since been
# replaced (an upgrade installed with --tags install, or a failed restart) is reported, so the
# next run restarts it.
MANAGED_PROGRAMS = ("containerd", "etcd", "kubelet", "kube-proxy", "kube-apiserver",
                    "kube-controller-manager", "kube-scheduler", "haproxy")
ARTIFACTS_STATE = "/var/lib/kubeforge/artifacts.json"
_TIME_ERROR = 5  # adjtimex(2): clock not synchronized


def read_os_release(path="/etc/os-release"):
    data = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                parts = shlex.split(value) if value else [""]
                data[key] = parts[0] if parts else ""
    except OSError:
        pass
    return data


def os_info(os_release):
    os_id = os_release.get("ID", "").lower()
    version = os_release.get("VERSION_ID", "")
    family, _versions = SUPPORTED_OS.get(os_id, (None, ()))
    if family is None:
        for like in os_release.get("ID_LIKE", "").lower().split():
            if like in SUPPORTED_OS:
                family = SUPPORTED_OS[like][0]
                break
    major = version if os_id == "ubuntu" else version.split(".")[0]
    return {
        "os_id": os_id,
        "os_family": family,
        "os_version": version,
        "os_major": major,
        "os_codename": os_release.get("VERSION_CODENAME", ""),
        "os_pretty": os_release.get("PRETTY_NAME", os_id),
    }


def os_support_error(info):
    supported = SUPPORTED_OS.get(info["os_id"])
    names = "; ".join(f"{k} {', '.join(v[1])}" for k, v in SUPPORTED_OS.items())
    if supported is None:
        return f"operating system {info['os_pretty']!r} is not supported (supported: {names})"
    if info["os_major"] not in supported[1]:
        return (f"{info['os_pretty']} is not a supported release of {info['os_id']} "
                f"(supported: {', '.join(supported[1])})")
    return None


def detect_container(root="/"):
    """Container kind, or '' on a machine or VM."""
    def exists(path):
        return os.path.exists(os.path.join(root, path.lstrip("/")))

    if exists("/run/.containerenv"):
        return "podman"
    if exists("/.dockerenv"):
        return "docker"
    try:
        with open(os.path.join(root, "run/systemd/container"), encoding="utf-8") as handle:
            value = handle.read().strip()
            if value:
                return value
    except OSError:
        pass
    try:
        with open(os.path.join(root, "proc/1/environ"), "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item.startswith(b"container="):
                    return item.split(b"=", 1)[1].decode() or "container"
    except OSError:
        pass
    return ""


def cgroup_version(root="/"):
    return 2 if os.path.exists(os.path.join(root, "sys/fs/cgroup/cgroup.controllers")) else 1


CAP_SYS_RESOURCE = 24


def has_capability(bit, status="/proc/self/status"):
    """Whether this process holds a capability (by its bit number) in its effective set."""
    try:
        with open(status, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def memory_mb(meminfo="/proc/meminfo"):
    try:
        with open(meminfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def active_swaps(path="/proc/swaps"):
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.split()[0] for line in handle.readlines()[1:] if line.strip()]
    except OSError:
        return []


def clock_synchronized():
    """True/False from the kernel's clock state (adjtimex, read-only), None when unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def listening_ports(proc="/proc"):
    """port -> set of socket inodes listening on it (TCP, IPv4 and IPv6)."""
    ports = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", name), encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            ports.setdefault(port, set()).add(fields[9])
    return ports


def socket_owners(inodes, proc="/proc"):
    """inode -> program name (comm) of a process holding that socket."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners = {}
    if not wanted:
        return owners
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted:
                try:
                    with open(os.path.join(proc, pid, "comm"), encoding="utf-8") as handle:
                        owners[wanted[target]] = handle.read().strip()
                except OSError:
                    owners[wanted[target]] = f"pid {pid}"
        if len(owners) == len(wanted):
            break
    return owners


def port_conflicts(required, proc="/proc"):
    """``required``: list of {'port': N, 'owners': [names], 'purpose': text}. Returns messages for
    ports held by a program that is not one of the expected owners."""
    listening = listening_ports(proc)
    busy = [item for item in required if int(item["port"]) in listening]
    if not busy:
        return []
    inodes = set()
    for item in busy:
        inodes.update(listening[int(item["port"])])
    owners = socket_owners(inodes, proc)
    problems = []
    for item in busy:
        port = int(item["port"])
        names = sorted({owners.get(inode, "an unknown process") for inode in listening[port]})
        allowed = set(item.get("owners") or [])
        # comm is cut at 15 characters by the kernel
        foreign = [n for n in names if not any(n == a[:15] for a in allowed)]
        if foreign:
            problems.append(f"port {port} ({item.get('purpose', 'needed')}) is in use by {', '.join(foreign)}")
    return problems


def time_sync_state(run_command):
    """Which time service is active (via systemctl), and whether the clock is synchronized."""
    active = None
    rc, out, _err = run_command(["systemctl", "is-active"] + list(TIME_SERVICES))
    for name, state in zip(TIME_SERVICES, out.split()):
        if state == "active":
            active = name
            break
    return {"service": active, "synchronized": clock_synchronized()}


def installed_artifacts(path=ARTIFACTS_STATE):
    """component -> version, from the download engine's state file (empty on a fresh host)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {name: str(entry.get("version")) for name, entry in (data.get("artifacts") or {}).items()
            if isinstance(entry, dict) and entry.get("version")}


def stale_programs(proc="/proc", programs=MANAGED_PROGRAMS):
    """Managed programs whose running binary was replaced on disk since they started."""
    stale = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            target = os.readlink(os.path.join(proc, pid, "exe"))
        except OSError:
            continue
        if not target.endswith(" (deleted)"):
            continue
        name = os.path.basename(target[:-len(" (deleted)")])
        if name in programs:
            stale.add(name)
    return sorted(stale)


def python_libraries(names=("apt", "cryptography", "yaml")):
    """Which of the Python libraries the collection's tasks need are importable here (the os role
    installs them; a fresh host lacks them, which matters to a check-mode plan)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found[name] = False
    return found


CNI_CONFIG_DIR = "/etc/cni/net.d"
BRIDGE_CONFLIST = "10-kubeforge-bridge.conflist"
FLANNEL_CONFLIST = "10-flannel.conflist"
# The CNI configuration each of the collection's pod networks writes.
OWN_NETWORKS = {BRIDGE_CONFLIST: "bridge", FLANNEL_CONFLIST: "flannel"}


def cni_configs(root="/"):
    """Names of the CNI configurations in /etc/cni/net.d (what containerd would load)."""
    try:
        names = os.listdir(os.path.join(root, CNI_CONFIG_DIR.lstrip("/")))
    except OSError:
        return []
    return sorted(n for n in names if n.endswith((".conf", ".conflist", ".json")))


def network_in_use(configs):
    """The pod network a host's CNI configurations show: bridge or flannel (the collection's), other
    (one of the user's own) or '' (none yet)."""
    for name, network in OWN_NETWORKS.items():
        if name in configs:
            return network
    return "other" if configs else ""


def network_switch_error(in_use, wanted):
    """Why installing ``wanted`` over the network ``in_use`` switches a running network, or ''."""
    if in_use in OWN_NETWORKS.values() and wanted != in_use:
        return f"runs the {in_use} pod network, and kubeforge_network_plugin is {wanted}"
    if in_use == "other" and wanted != "none":
        return ("runs a pod network of its own (a CNI configuration in /etc/cni/net.d), and kubeforge_network_plugin "
                f"is {wanted}")
    return ""


def _module_files(root, release):
    """Names (without .ko and compression suffix) of the modules modules.dep and modules.builtin list."""
    names = set()
    for listing in ("modules.dep", "modules.builtin"):
        try:
            with open(os.path.join(root, "lib/modules", release, listing), encoding="utf-8") as handle:
                for line in handle:
                    base = os.path.basename(line.split(":", 1)[0].strip())
                    names.add(re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base))
        except OSError:
            continue
    return names


def kernel_modules(wanted, root="/", release=None):
    """{module: True} for each of ``wanted`` the running kernel has: loaded or built in
    (/sys/module/<name>), or installed where modprobe finds it (modules.dep, modules.builtin)."""
    release = release or platform.release()
    listed = None
    found = {}
    for name in wanted:
        if os.path.isdir(os.path.join(root, "sys/module", name)):
            found[name] = True
            continue
        if listed is None:
            listed = _module_files(root, release)
        found[name] = name in listed or name.replace("_", "-") in listed
    return found


def gather(run_command, root="/", modules=()):
    """The ``kubeforge_host`` facts; ``kernel_modules`` for the names in ``modules``."""
    info = os_info(read_os_release(os.path.join(root, "etc/os-release")))
    machine = platform.machine()
    info.update({
        "machine": machine,
        "arch": ARCHITECTURES.get(machine, machine),
        "container": detect_container(root),
        "cgroup_version": cgroup_version(root),
        # Without CAP_SYS_RESOURCE (an unprivileged or capability-limited container) no process can
        # lower an OOM score: containerd must not ask runc to give pods negative ones.
        "cap_sys_resource": has_capability(CAP_SYS_RESOURCE, os.path.join(root, "proc/self/status")),
        "memory_mb": memory_mb(),
        "cpus": os.cpu_count() or 1,
        "kernel": platform.release(),
        "systemd": os.path.isdir(os.path.join(root, "run/systemd/system")),
        "swaps": active_swaps(),
        "time_sync": time_sync_state(run_command),
        "artifacts": installed_artifacts(os.path.join(root, ARTIFACTS_STATE.lstrip("/"))),
        "stale_programs": stale_programs(),
        "python_libraries": python_libraries(),
        "cni_configs": cni_configs(root),
        "kernel_modules": kernel_modules(modules, root),
    })
    return info


def evaluate(facts, ports, min_memory_mb, min_cpus, proc="/proc", kernel_needs=None):
    """Errors and warnings for one host. ``kernel_needs``: {module: what needs it}."""
    errors, warnings = [], []
    for name, why in sorted((kernel_needs or {}).items()):
        if not facts.get("kernel_modules", {}).get(name):
            errors.append(f"{why} needs the kernel module {name}, which kernel {facts['kernel']} neither has loaded "
                          f"nor lists in /lib/modules/{facts['kernel']} (install it, or choose another backend)")
    problem = os_support_error(facts)
    if problem:
        errors.append(problem)
    if facts["arch"] not in ("amd64", "arm64"):
        errors.append(f"architecture {facts['machine']} is not supported (supported: x86_64, aarch64)")
    if not facts["systemd"]:
        errors.append("systemd is not the init system; every component runs as a systemd service")
    errors.extend(port_conflicts(ports, proc))
    if facts["memory_mb"] < min_memory_mb:
        warnings.append(f"{facts['memory_mb']} MiB of memory, below the recommended {min_memory_mb} MiB")
    if facts["cpus"] < min_cpus:
        warnings.append(f"{facts['cpus']} CPUs, below the recommended {min_cpus}")
    sync = facts["time_sync"]
    if facts["container"]:
        pass  # the clock is the host's; nothing here can or should set it
    elif sync["synchronized"] is False:
        warnings.append(f"the clock is not synchronized (time service: {sync['service'] or 'none'}); "
                        "certificates and etcd need synchronized clocks")
    if not facts.get("cap_sys_resource", True):
        warnings.append("no CAP_SYS_RESOURCE (a container with limited capabilities): containerd keeps pods' OOM "
                        "scores at or above its own (restrict_oom_score_adj)")
    if facts["cgroup_version"] == 1:
        warnings.append("cgroup v1: Kubernetes 1.35 and newer refuse it unless the kubelet sets failCgroupV1: false; "
                        "move the host to cgroup v2")
    return errors, warnings
