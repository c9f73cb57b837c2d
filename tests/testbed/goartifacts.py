# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The programs of the Go builds, packed as their upstream release files below the mirror root.

Each component is laid out exactly as its project publishes it (single binaries on dl.k8s.io, the
etcd, containerd, crictl and CNI plugin archives on GitHub), with a ``<file>.sha256`` beside it, so
that the collection's download code reads them as it reads the official files. Archives are
reproducible: entries sorted, owner root, mtime the release time of the module.
"""

import datetime
import os

from .common import atomic_write
from .manifest import glibc_key
from .release import binary_glibc, copy_file, write_checksums, write_tar_gz

ARCH = "amd64"


def _epoch(stamp):
    released = stamp.get("released") or "1970-01-01T00:00:00Z"
    return int(datetime.datetime.fromisoformat(released.replace("Z", "+00:00")).timestamp())


def layouts(component, version):
    """[(manifest component, path below the mirror root, format, archive members)] of one build.

    ``format`` is ``binary`` (the file as is), ``tar.gz`` with members under ``prefix``.
    """
    if component == "kubernetes":
        from .gobuild import KUBERNETES_PROGRAMS

        return [(program, f"dl.k8s.io/release/v{version}/bin/linux/{ARCH}/{program}", "binary", [(program, "")])
                for program in KUBERNETES_PROGRAMS]
    if component == "etcd":
        top = f"etcd-v{version}-linux-{ARCH}"
        return [("etcd", f"github.com/etcd-io/etcd/releases/download/v{version}/{top}.tar.gz", "tar.gz",
                 [(name, top + "/") for name in ("etcd", "etcdctl", "etcdutl")])]
    if component == "containerd":
        return [("containerd",
                 f"github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-{ARCH}.tar.gz",
                 "tar.gz", [(name, "bin/") for name in ("containerd", "containerd-shim-runc-v2", "ctr")])]
    if component == "runc":
        return [("runc", f"github.com/opencontainers/runc/releases/download/v{version}/runc.{ARCH}", "binary",
                 [("runc", "")])]
    if component == "crictl":
        return [("crictl",
                 f"github.com/kubernetes-sigs/cri-tools/releases/download/v{version}/crictl-v{version}-linux-{ARCH}.tar.gz",
                 "tar.gz", [("crictl", "")])]
    if component == "cni_plugins":
        from .gobuild import CNI_PLUGINS

        return [("cni_plugins",
                 f"github.com/containernetworking/plugins/releases/download/v{version}/cni-plugins-linux-{ARCH}-v{version}.tgz",
                 "tar.gz", [(path.split("/")[1], "./") for path in CNI_PLUGINS])]
    from .gobuild import IMAGES

    if component in IMAGES:
        return []  # programs that run only as images (mirror.build_program_images)
    raise ValueError(f"no release layout for {component}")


def paths_of(stamps):
    return {path for stamp in stamps for _c, path, _f, _m in layouts(stamp["component"], stamp["version"])}


def source_text(stamp):
    modules = ", ".join(f"{module}@{version}" for module, version in sorted(stamp["modules"].items()))
    return f"go build {modules} ({stamp['go']}, recipe {stamp['recipe'][:12]})"


def package(stamps, mirror_root, previous):
    """Write every release file of ``stamps`` below ``mirror_root``; return (records, changed)."""
    records, changed = [], False
    for stamp in stamps:
        source = source_text(stamp)
        mtime = _epoch(stamp)
        for component, relative, fmt, members in layouts(stamp["component"], stamp["version"]):
            destination = os.path.join(mirror_root, relative)
            old = previous.get(relative)
            if (old and old.get("source") == source and os.path.isfile(destination)
                    and os.path.getsize(destination) == old.get("size")):
                records.append(dict(old))
                continue
            binaries = [(name, os.path.join(stamp["dir"], name)) for name, _prefix in members]
            if fmt == "binary":
                copy_file(binaries[0][1], destination)
            else:
                prefixes = sorted({prefix for _name, prefix in members if prefix})
                entries = [(prefix.rstrip("/") if prefix != "./" else "./", None, 0o755, mtime) for prefix in prefixes]
                entries += [(prefix + name, os.path.join(stamp["dir"], name), 0o755, mtime)
                            for name, prefix in members]
                write_tar_gz(destination, entries)
            digest = write_checksums(destination)
            glibc = [g for g in (binary_glibc(path) for _n, path in binaries) if g]
            record = {
                "component": component,
                "version": stamp["version"],
                "arch": ARCH,
                "path": relative,
                "sha256": digest,
                "size": os.path.getsize(destination),
                "source": source,
                "glibc": max(glibc, key=glibc_key) if glibc else None,
                "runs_on": [],
                "checked_on": [],
                "failed_on": {},
                "binaries": [name for name, _p in binaries],
                "suites": [],
                "built": True,
            }
            if stamp.get("pinned") and stamp["pinned"] != stamp["version"]:
                record["pinned"] = stamp["pinned"]
                record["substitute"] = stamp.get("substitute", "")
            records.append(record)
            changed = True
    return records, changed


def write_build_report(path, stamps):
    """STATE/mirror/go-builds.json: what was built from which modules, how long each step took."""
    import json

    atomic_write(path, json.dumps({"builds": stamps}, indent=2, sort_keys=True) + "\n")
