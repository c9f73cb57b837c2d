# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The mirror's manifest.json, checksum files, and the version facts read from Debian packages."""

import hashlib
import json
import re

from .common import atomic_write, read_json

KUBERNETES_COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
)
COMPONENTS = ("etcd", "containerd", "runc", "cni_plugins", "crictl") + KUBERNETES_COMPONENTS + ("image",)
MANIFEST_KEYS = ("component", "version", "arch", "path", "sha256", "size", "source", "glibc", "runs_on")

_GLIBC_RE = re.compile(r"\bGLIBC_([0-9]+(?:\.[0-9]+)+)\b")
_UPSTREAM_RE = re.compile(r"^[0-9]+(\.[0-9]+)*")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_line(hexdigest, filename):
    """One line in the format of sha256sum: two spaces between digest and file name."""
    if not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise ValueError(f"not a sha256 digest: {hexdigest!r}")
    if "/" in filename or not filename:
        raise ValueError(f"checksum files name a file in the same directory, not {filename!r}")
    return f"{hexdigest}  {filename}\n"


def max_glibc(objdump_text):
    """Highest GLIBC_x.y symbol version required by a binary, from ``objdump -T`` output.

    Returns None when no glibc symbol version appears (a static binary).
    """
    versions = {tuple(int(part) for part in match.split(".")) for match in _GLIBC_RE.findall(objdump_text or "")}
    if not versions:
        return None
    return ".".join(str(part) for part in max(versions))


def glibc_key(version):
    return tuple(int(part) for part in version.split(".")) if version else ()


def upstream_version(debian_version):
    """Upstream release version of a Debian package version.

    ``1:1.6.20~ds1-1+deb12u3`` -> ``1.6.20``; ``1.20.5+really1.20.2-1.1`` -> ``1.20.2`` (Debian's
    way of going back to an older release); ``3.4.23-4+b4`` -> ``3.4.23``.
    """
    version = debian_version.strip()
    if ":" in version:
        version = version.split(":", 1)[1]
    if "-" in version:
        version = version.rsplit("-", 1)[0]
    if "+really" in version:
        version = version.split("+really", 1)[1]
    match = _UPSTREAM_RE.match(version)
    if not match:
        raise ValueError(f"cannot read an upstream version from Debian version {debian_version!r}")
    return match.group(0)


def _sort_key(artifact):
    component = artifact["component"]
    rank = COMPONENTS.index(component) if component in COMPONENTS else len(COMPONENTS)
    version = tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.]", artifact["version"]))
    return (rank, version, artifact["path"])


def validate_artifact(artifact):
    missing = [key for key in MANIFEST_KEYS if key not in artifact]
    if missing:
        raise ValueError(f"artifact {artifact.get('path', '?')}: missing {', '.join(missing)}")
    if artifact["component"] not in COMPONENTS:
        raise ValueError(f"artifact {artifact['path']}: unknown component {artifact['component']!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", artifact["sha256"] or ""):
        raise ValueError(f"artifact {artifact['path']}: sha256 is not a hex digest")
    if artifact["path"].startswith("/") or ".." in artifact["path"].split("/"):
        raise ValueError(f"artifact {artifact['path']}: path must be relative to the mirror root")
    if not isinstance(artifact["size"], int) or artifact["size"] < 0:
        raise ValueError(f"artifact {artifact['path']}: size must be a non-negative integer")
    if not isinstance(artifact["runs_on"], list):
        raise ValueError(f"artifact {artifact['path']}: runs_on must be a list")


def render_manifest(artifacts, built):
    """Manifest text: artifacts sorted by component and version, one per path."""
    seen = set()
    for artifact in artifacts:
        validate_artifact(artifact)
        if artifact["path"] in seen:
            raise ValueError(f"artifact {artifact['path']} is listed twice")
        seen.add(artifact["path"])
    document = {"artifacts": sorted((dict(a) for a in artifacts), key=_sort_key), "built": built}
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def write_manifest(path, artifacts, built):
    atomic_write(path, render_manifest(artifacts, built))


def load_manifest(path):
    document = read_json(path, default=None) or {}
    return {artifact["path"]: artifact for artifact in document.get("artifacts", [])}


def _version_key(version):
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.]", version))


def mirror_variables(artifacts, base_url, suites, image_table=None):
    """Inventory variables for installs from this mirror.

    ``kubeforge_download_checksums``: the sha256 of every rebuilt file (they are not upstream's
    bytes, so the versions table's pins do not apply to them). ``testbed_versions``: for each
    component, the newest version that runs on every node suite (what a mixed cluster can use).
    ``testbed_mirror_versions``: every version the mirror holds, oldest first.
    ``testbed_versions.kubernetes``: the newest release of which every Kubernetes program is held
    and runs everywhere. ``testbed_substitutes``: {component: {pinned, built, reason}} where the
    mirror holds another patch than the versions table pins (the Go module proxy lacks that one).
    ``testbed_images``: {image reference: manifest digest} of the image archives, and
    ``testbed_image_archives`` the same as [{url, sha256, images}] for container_runtime_image_archives.
    """
    checksums, held, usable, substitutes, images, archives = {}, {}, {}, {}, {}, []
    for artifact in artifacts:
        component = artifact["component"]
        if component == "image":
            if artifact.get("digest"):
                images[artifact["image"]] = artifact["digest"]
                archives.append({"url": f"{base_url}/{artifact['path']}", "sha256": "sha256:" + artifact["sha256"],
                                 "images": [artifact["image"]]})
            continue
        version = artifact["version"]
        if artifact.get("pinned"):
            substitutes[component] = {"pinned": artifact["pinned"], "built": version,
                                      "reason": artifact.get("substitute", "")}
        checksums.setdefault(component, {}).setdefault(version, {})[artifact["arch"]] = "sha256:" + artifact["sha256"]
        held.setdefault(component, set()).add(version)
        runs_on = artifact.get("runs_on") or []
        if all(suite in runs_on for suite in suites):
            usable.setdefault(component, set()).add(version)
    versions = {c: max(v, key=_version_key) for c, v in sorted(usable.items())}
    complete = set.intersection(*(usable.get(c, set()) for c in KUBERNETES_COMPONENTS))
    if complete:
        versions["kubernetes"] = max(complete, key=_version_key)
    return {
        "kubeforge_files_mirror": base_url,
        # the same, under a name a scenario that sets kubeforge_files_mirror to a bundle keeps
        "testbed_mirror_url": base_url,
        "kubeforge_download_checksums": checksums,
        "testbed_versions": versions,
        "testbed_mirror_versions": {c: sorted(v, key=_version_key) for c, v in sorted(held.items())},
        "testbed_substitutes": substitutes,
        "testbed_images": dict(sorted(images.items())),
        # for container_runtime_image_archives: no registry is reachable from the nodes
        "testbed_image_archives": sorted(archives, key=lambda item: item["url"]),
        "testbed_kubeforge_images": image_overrides(images, image_table),
    }


def image_overrides(images, image_table):
    """kubeforge_images for installs from this mirror: the digest of each image of the collection's
    table that the mirror built under the table's name and tag (its bytes are not upstream's)."""
    out = {}
    for key, entry in sorted((image_table or {}).items()):
        digest = images.get(f"{entry['name']}:{entry['tag']}")
        if digest:
            out[key] = {"digest": digest}
    return out


def render_vars_inventory(variables):
    """A YAML inventory holding only ``all.vars`` (JSON is YAML: no YAML library needed)."""
    return ("# Local mirror of the test bed: written by `hack/testbed mirror`, rewritten on every run.\n"
            + json.dumps({"all": {"vars": variables}}, indent=2, sort_keys=True) + "\n")
