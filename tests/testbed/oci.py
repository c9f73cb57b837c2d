# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""OCI image archives written from a list of files, without a container engine.

The archive is what `podman save --format oci-archive` or `skopeo copy oci-archive:` produce: an
OCI image layout (oci-layout, index.json, blobs/sha256/...) in one tar file, which
`ctr -n k8s.io image import` takes. Every byte is derived from the inputs (file contents, modes,
the image config): the same inputs give the same digest on every machine, so the digests can be
listed and pinned like release checksums.
"""

import gzip
import hashlib
import io
import json
import os
import tarfile

from .common import atomic_write

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# Fixed image creation time: a rebuild of the same inputs must give the same config digest.
CREATED = "1970-01-01T00:00:00Z"


class Entry:
    """One entry of a layer: a directory, a regular file (from bytes or a path), or a symlink."""

    __slots__ = ("path", "kind", "data", "source", "target", "mode", "uid", "gid")

    def __init__(self, path, kind, *, data=None, source=None, target=None, mode=None, uid=0, gid=0):
        self.path = path.strip("/")
        self.kind = kind
        self.data = data
        self.source = source
        self.target = target
        self.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
        self.uid = uid
        self.gid = gid


def directory(path, mode=0o755):
    return Entry(path, "dir", mode=mode)


def file_from(path, source, mode=0o755):
    return Entry(path, "file", source=source, mode=mode)


def file_text(path, text, mode=0o644):
    return Entry(path, "file", data=text.encode() if isinstance(text, str) else text, mode=mode)


def symlink(path, target):
    return Entry(path, "symlink", target=target, mode=0o777)


def _parents(entries):
    """Every parent directory of every entry, so that the layer unpacks on any snapshotter."""
    have = {entry.path for entry in entries}
    extra = []
    for entry in entries:
        parts = entry.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent and parent not in have:
                have.add(parent)
                extra.append(directory(parent))
    return extra


def layer_tar(entries):
    """Uncompressed layer bytes: entries sorted by path, owner root unless given, mtime 0."""
    entries = list(entries)
    entries += _parents(entries)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = 0
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                archive.addfile(info)
            else:
                if entry.source is not None:
                    with open(entry.source, "rb") as handle:
                        payload = handle.read()
                else:
                    payload = entry.data
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _gzip(data):
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as compressed:
        compressed.write(data)
    return buffer.getvalue()


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def split_reference(reference):
    """``registry.k8s.io/pause:3.10.2`` -> (``registry.k8s.io/pause``, ``3.10.2``)."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not name:
        raise ValueError(f"image reference {reference!r} needs a tag (NAME:TAG)")
    return name, tag


def build_archive(destination, references, layers, config, arch="amd64"):
    """Write an OCI archive holding one image under each name of ``references``.

    ``layers``: lists of entries, base layer first. ``config``: the image's run settings
    (Entrypoint, Cmd, Env, User, WorkingDir, Labels). Returns the manifest digest, the image's
    identity in a registry (``NAME@sha256:...``).
    """
    references = list(references)
    for reference in references:
        split_reference(reference)
    blobs = {}
    diff_ids, layer_descriptors = [], []
    for entries in layers:
        raw = layer_tar(entries)
        compressed = _gzip(raw)
        diff_ids.append(_digest(raw))
        digest = _digest(compressed)
        blobs[digest] = compressed
        layer_descriptors.append({"mediaType": MEDIA_LAYER_GZIP, "digest": digest, "size": len(compressed)})
    image_config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {key: value for key, value in config.items() if value},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": "kubeforge test bed"} for _ in diff_ids],
    }
    config_bytes = _json(image_config)
    config_digest = _digest(config_bytes)
    blobs[config_digest] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": layer_descriptors,
    }
    manifest_bytes = _json(manifest)
    manifest_digest = _digest(manifest_bytes)
    blobs[manifest_digest] = manifest_bytes
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": split_reference(reference)[1],
                },
            }
            for reference in references
        ],
    }
    files = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", _json(index))]
    files += [(f"blobs/sha256/{digest.split(':', 1)[1]}", blobs[digest]) for digest in sorted(blobs)]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory_name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory_name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(info)
        for name, payload in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(payload), 0o644, 0
            archive.addfile(info, io.BytesIO(payload))
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    atomic_write(destination, buffer.getvalue())
    return manifest_digest


def read_archive_index(path):
    """(reference, manifest digest) of every image in an OCI archive."""
    with tarfile.open(path, "r") as archive:
        member = archive.extractfile("index.json")
        index = json.load(member)
    found = []
    for descriptor in index.get("manifests", []):
        annotations = descriptor.get("annotations") or {}
        reference = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name")
        found.append((reference, descriptor["digest"]))
    return found
