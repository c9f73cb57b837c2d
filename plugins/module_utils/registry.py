# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Images from an OCI distribution registry, written as OCI archives, for offline bundles.

Runs on the controller only. Reads anonymously (with the bearer token a registry hands out for
public pulls), one image by its pinned index digest: the index, the manifest of each wanted
platform, their configs and layers, every blob checked against its digest. The archive is an OCI
image layout in a tar (``oci-layout``, ``index.json``, ``blobs/sha256/...``), which
``ctr images import`` reads; the platforms not wanted are listed by the index but not held, as
after a pull.

A mirror (``kubeforge_image_mirror``) serves every upstream repository below its own host with the
upstream host as first path component: ``registry.k8s.io/pause`` is ``<mirror>/v2/registry.k8s.io/pause``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.kubeforge.cluster.plugins.module_utils import files
from ansible_collections.kubeforge.cluster.plugins.module_utils.artifacts import CHUNK, hashed_chunks, sha256_file

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    pass


def split_name(name):
    """(registry host, repository) of an image name; Docker Hub's short names expanded."""
    first, _slash, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = "docker.io", name
    if host == "docker.io" and "/" not in repository:
        repository = "library/" + repository
    return host, repository


def endpoint(name, mirror=""):
    """(base URL, repository) to read ``name`` from: the registry itself, or ``mirror``."""
    host, repository = split_name(name)
    if mirror:
        base = mirror if "://" in mirror else "https://" + mirror
        return base.rstrip("/"), f"{host}/{repository}"
    return "https://" + ("registry-1.docker.io" if host == "docker.io" else host), repository


def archive_path(name, tag):
    """Where an image's archive lies below a bundle: ``images/<name>/<tag>.oci.tar``."""
    return f"images/{name}/{tag or 'untagged'}.oci.tar"


class Client:
    """Anonymous reads, with the token a registry's 401 challenge names."""

    def __init__(self, timeout=60, validate_certs=True):
        self.timeout = timeout
        self.validate_certs = validate_certs
        self._tokens = {}

    def _open(self, url, accept=None, token=None):
        headers = {}
        if accept:
            headers["Accept"] = accept
        if token:
            headers["Authorization"] = "Bearer " + token
        return open_url(url, headers=headers, timeout=self.timeout, validate_certs=self.validate_certs,
                        http_agent="kubeforge.cluster-images", follow_redirects="all")

    def _token(self, challenge, repository):
        scheme, _space, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise RegistryError(f"the registry asks for {scheme} authentication; only anonymous pulls are supported")
        fields = dict(_CHALLENGE.findall(params))
        if "realm" not in fields:
            raise RegistryError(f"the registry's challenge names no token realm: {challenge}")
        query = [f"scope=repository:{repository}:pull"]
        if fields.get("service"):
            query.append("service=" + fields["service"])
        with self._open(fields["realm"] + "?" + "&".join(query)) as answer:
            body = json.loads(answer.read().decode("utf-8"))
        return body.get("token") or body.get("access_token")

    def get(self, base, repository, path, accept=None):
        """The open response of ``<base>/v2/<repository>/<path>``."""
        url = f"{base}/v2/{repository}/{path}"
        key = (base, repository)
        try:
            return self._open(url, accept, self._tokens.get(key))
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "") if exc.headers else ""
            if exc.code != 401 or not challenge or key in self._tokens:
                raise RegistryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        self._tokens[key] = self._token(challenge, repository)
        try:
            return self._open(url, accept, self._tokens[key])
        except urllib.error.HTTPError as exc:
            raise RegistryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise RegistryError(f"{url}: {exc.reason}") from None

    def manifest(self, base, repository, digest):
        """(media type, bytes) of the manifest or index ``digest``, checked against it."""
        try:
            with self.get(base, repository, f"manifests/{digest}", accept=ACCEPT) as answer:
                body = answer.read()
                header = answer.headers.get("Content-Type", "") if answer.headers else ""
        except urllib.error.URLError as exc:
            raise RegistryError(f"{base}/v2/{repository}/manifests/{digest}: {exc.reason}") from None
        check_digest(body, digest, f"{base}/v2/{repository}/manifests/{digest}")
        media_type = json.loads(body.decode("utf-8")).get("mediaType") or header.split(";")[0].strip()
        return media_type, body

    def blob(self, base, repository, digest, directory):
        """Path of blob ``digest`` downloaded into ``directory``, checked against it."""
        what = f"{base}/v2/{repository}/blobs/{digest}"
        sha = hashlib.sha256()
        try:
            with self.get(base, repository, f"blobs/{digest}") as answer:
                path = files.stage(directory, hashed_chunks(iter(lambda: answer.read(CHUNK), b""), sha),
                                   suffix=".blob")
        except urllib.error.URLError as exc:
            raise RegistryError(f"{what}: {exc.reason}") from None
        if "sha256:" + sha.hexdigest() != digest:
            files.unlink_quietly(path)
            raise RegistryError(f"{what}: the blob's sha256 is sha256:{sha.hexdigest()}, not {digest}")
        return path


def check_digest(body, digest, what):
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise RegistryError(f"{what}: the content's digest is {actual}, not {digest}")


def platform_manifests(index, architectures):
    """Descriptors of ``index`` for linux on each of ``architectures`` (attestations left out)."""
    chosen = [m for m in index.get("manifests", [])
              if (m.get("platform") or {}).get("os") == "linux"
              and (m.get("platform") or {}).get("architecture") in architectures]
    return chosen


def pull(client, name, tag, digest, architectures, destination, work_dir, mirror=""):
    """Write the archive of ``name:tag@digest`` to ``destination``; return its sha256."""
    base, repository = endpoint(name, mirror)
    media_type, top = client.manifest(base, repository, digest)
    blobs = {digest: top}
    paths = {}
    manifests = [top]
    if media_type in INDEX_TYPES:
        wanted = platform_manifests(json.loads(top.decode("utf-8")), architectures)
        missing = set(architectures) - {m["platform"]["architecture"] for m in wanted}
        if missing:
            raise RegistryError(f"{name}@{digest} holds no linux image for {', '.join(sorted(missing))}")
        manifests = []
        for descriptor in wanted:
            _kind, body = client.manifest(base, repository, descriptor["digest"])
            blobs[descriptor["digest"]] = body
            manifests.append(body)
    try:
        for body in manifests:
            manifest = json.loads(body.decode("utf-8"))
            for descriptor in [manifest.get("config") or {}] + list(manifest.get("layers") or []):
                blob = descriptor.get("digest")
                if blob and blob not in blobs and blob not in paths:
                    paths[blob] = client.blob(base, repository, blob, work_dir)
        return write_archive(destination, name, tag, digest, media_type, len(top), blobs, paths)
    finally:
        for path in paths.values():
            files.unlink_quietly(path)


def write_archive(destination, name, tag, digest, media_type, size, blobs, paths):
    """An OCI image layout tar: the index ``digest`` named ``name:tag``; ``blobs`` in memory
    ({digest: bytes}), ``paths`` on disk ({digest: path}). Returns the archive's sha256."""
    annotations = {"io.containerd.image.name": f"{name}:{tag}" if tag else f"{name}@{digest}"}
    if tag:
        annotations["org.opencontainers.image.ref.name"] = tag
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": media_type, "digest": digest, "size": size, "annotations": annotations}]}
    with files.atomic_writer(destination) as out, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        def add(member, data=None, path=None):
            info = tarfile.TarInfo(member)
            info.mtime, info.mode, info.uid, info.gid = 0, 0o644, 0, 0
            if path:
                info.size = os.path.getsize(path)
                with open(path, "rb") as handle:
                    archive.addfile(info, handle)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for blob in sorted(set(blobs) | set(paths)):
            member = "blobs/sha256/" + blob.split(":", 1)[1]
            add(member, data=blobs.get(blob), path=paths.get(blob))
    digest = sha256_file(destination)
    return digest


def archive_digest(path):
    """The index digest an archive written here names, or None (missing, unreadable)."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("index.json")
            index = json.loads(member.read().decode("utf-8"))
        return index["manifests"][0]["digest"]
    except (OSError, KeyError, IndexError, ValueError, tarfile.TarError, AttributeError):
        return None
