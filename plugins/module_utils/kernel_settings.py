# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Kernel features, sysctls and swap for a Kubernetes node, in one pass.

A feature may be a loadable module or built into the kernel: what counts is the feature itself
(the overlay file system, the bridge netfilter sysctls), not a module file.
"""

from __future__ import annotations

import errno
import os

# How to tell that a feature is available, whatever provides it.
FEATURE_PROBES = {
    "overlay": ("filesystem", "overlay"),
    "br_netfilter": ("path", "/proc/sys/net/bridge/bridge-nf-call-iptables"),
    "nf_conntrack": ("path", "/proc/sys/net/netfilter/nf_conntrack_max"),
    "ip_vs": ("path", "/proc/net/ip_vs"),
}


class KernelError(Exception):
    pass


def render_list_file(header, lines):
    return "".join(f"# {h}\n" for h in header) + "".join(f"{line}\n" for line in lines)


def render_sysctl_file(header, sysctls):
    return render_list_file(header, [f"{key} = {sysctls[key]}" for key in sorted(sysctls)])


def feature_present(name, root="/"):
    kind, what = FEATURE_PROBES.get(name, ("path", f"/sys/module/{name}"))
    if kind == "filesystem":
        try:
            with open(os.path.join(root, "proc/filesystems"), encoding="ascii") as handle:
                return any(line.split()[-1] == what for line in handle if line.strip())
        except OSError:
            return False
    return os.path.exists(os.path.join(root, what.lstrip("/")))


def sysctl_path(key, root="/"):
    return os.path.join(root, "proc/sys", key.replace(".", "/"))


def normalize(value):
    return " ".join(str(value).split())


def read_sysctl(key, root="/"):
    try:
        with open(sysctl_path(key, root), encoding="ascii") as handle:
            return normalize(handle.read())
    except OSError:
        return None


def namespaced(key):
    """Keys a container may set without reaching into the host's kernel settings."""
    return key.startswith("net.")


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def fstab_without_swap(text):
    """The fstab with swap entries commented out, so swap stays off after a reboot."""
    out, changed = [], False
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 3 and fields[2] == "swap":
            out.append("# disabled by kubeforge (Kubernetes nodes run without swap): " + line)
            changed = True
        else:
            out.append(line)
    return "".join(out), changed


class Plan:
    """Compares the host with the request and applies the difference (unless check mode)."""

    def __init__(self, params, container, root="/"):
        self.params = params
        self.container = container
        self.root = root
        self.changed = False
        self.notes = []
        self.files = {}  # path -> (before, after)
        self.result = {"modules": {}, "sysctl": {}, "swap": {}}

    # files ---------------------------------------------------------------------------------
    def want_file(self, path, content):
        before = read_text(os.path.join(self.root, path.lstrip("/")))
        if before != content:
            self.files[path] = (before, content)
            self.changed = True

    # features ------------------------------------------------------------------------------
    def modules(self, load):
        names = self.params["modules"]
        if self.params["modules_file"]:
            self.want_file(self.params["modules_file"],
                           render_list_file(self.params["header"], names))
        for name in names:
            if feature_present(name, self.root):
                self.result["modules"][name] = "present"
                continue
            if self.container:
                raise KernelError(
                    f"kernel feature {name} is missing and a container cannot load modules; "
                    f"load it on the machine that runs the container (modprobe {name})")
            self.changed = True
            self.result["modules"][name] = "loaded"
            if load is not None:
                rc, _out, err = load(name)
                if rc != 0 or not feature_present(name, self.root):
                    raise KernelError(f"kernel feature {name} is missing and modprobe {name} failed: "
                                      f"{err.strip() or 'rc=%d' % rc}")

    # sysctls ---------------------------------------------------------------------------------
    def sysctls(self, apply):
        wanted = {k: normalize(v) for k, v in (self.params["sysctl"] or {}).items()}
        if self.params["sysctl_file"]:
            self.want_file(self.params["sysctl_file"], render_sysctl_file(self.params["header"], wanted))
        for key in sorted(wanted):
            value = wanted[key]
            current = read_sysctl(key, self.root)
            entry = {"value": value, "current": current}
            self.result["sysctl"][key] = entry
            if current == value:
                entry["state"] = "set"
                continue
            if self.container and not namespaced(key):
                entry["state"] = "skipped"
                self.notes.append(f"sysctl {key}: host-wide, left to the machine running this container "
                                  f"(is {current}, wanted {value})")
                continue
            if current is None:
                entry["state"] = "skipped"
                self.notes.append(f"sysctl {key}: not available in this kernel")
                continue
            if not apply:
                entry["state"] = "would set"
                self.changed = True
                continue
            try:
                with open(sysctl_path(key, self.root), "w", encoding="ascii") as handle:
                    handle.write(value)
            except OSError as exc:
                if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    entry["state"] = "skipped"
                    self.notes.append(f"sysctl {key}: cannot be set here ({exc.strerror}; is {current}, wanted {value})")
                    continue
                raise KernelError(f"sysctl {key}: writing {value!r} failed: {exc}")
            entry["state"] = "applied"
            self.changed = True

    # swap ------------------------------------------------------------------------------------
    def swap(self, swapoff):
        if not self.params["swap_off"]:
            return
        swaps = []
        try:
            with open(os.path.join(self.root, "proc/swaps"), encoding="utf-8") as handle:
                swaps = [line.split()[0] for line in handle.readlines()[1:] if line.strip()]
        except OSError:
            pass
        self.result["swap"] = {"active": swaps}
        fstab_path = self.params["fstab"]
        fstab = read_text(os.path.join(self.root, fstab_path.lstrip("/")))
        if fstab is not None:
            new, changed = fstab_without_swap(fstab)
            if changed:
                self.files[fstab_path] = (fstab, new)
                self.changed = True
        if not swaps:
            return
        if self.container:
            self.notes.append(f"swap is active on the machine running this container ({', '.join(swaps)}); "
                              "the kubelet needs it off or failSwapOn: false")
            return
        self.changed = True
        if swapoff is not None:
            rc, _out, err = swapoff()
            if rc != 0:
                raise KernelError(f"swapoff -a failed: {err.strip() or 'rc=%d' % rc}")
