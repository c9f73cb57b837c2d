# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A real HTTP server on 127.0.0.1 serving fake release artifacts in the upstream layout.

Used by the artifact tests: the archives are built here from small files, served below
``<server>/<upstream host>/<upstream path>`` exactly like a mirror, and every request is counted
so a test can prove that a re-run downloads nothing.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading

from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import Table


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "release-test/1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests[path] += 1
        status = self.server.fail.get(path)
        if status:
            self.send_error(status)
            return
        super().do_GET()


class ReleaseServer:
    def __init__(self, root):
        self.root = str(root)
        handler = functools.partial(_Handler, directory=self.root)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = collections.Counter()
        self.httpd.fail = {}
        self.httpd.lock = threading.Lock()
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self):
        return self.httpd.requests

    @property
    def fail(self):
        return self.httpd.fail

    def total(self):
        return sum(self.httpd.requests.values())

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port():
    """A local TCP port with nothing listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def tar_gz(members):
    """A .tar.gz in memory: ``{name: bytes}``, regular files, mode 0755."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 1700000000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish(root, url, data):
    """Put ``data`` where a mirror serves ``url`` (``<root>/<host>/<path>``); returns its sha256."""
    relative = url.split("://", 1)[1]
    path = os.path.join(str(root), *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return sha256_bytes(data)


ETCD_URL = "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-{arch}.tar.gz"
RUNC_URL = "https://github.com/opencontainers/runc/releases/download/v{version}/runc.{arch}"
CNI_URL = ("https://github.com/containernetworking/plugins/releases/download/v{version}/"
           "cni-plugins-linux-{arch}-v{version}.tgz")
APISERVER_URL = "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kube-apiserver"


def etcd_archive(version, arch, payload=None):
    prefix = f"etcd-v{version}-linux-{arch}/"
    payload = payload or {}
    return tar_gz({
        prefix + "etcd": payload.get("etcd", f"#!/bin/sh\necho etcd {version}\n".encode()),
        prefix + "etcdctl": f"#!/bin/sh\necho etcdctl {version}\n".encode(),
        prefix + "etcdutl": f"#!/bin/sh\necho etcdutl {version}\n".encode(),
        prefix + "README.md": b"not installed\n",
    })


def cni_archive(version, plugins):
    members = {"./" + name: f"#!/bin/sh\necho {name} {version}\n".encode() for name in plugins}
    members["./LICENSE"] = b"license text\n"
    members["./README.md"] = b"readme\n"
    return tar_gz(members)


def build_release(serve_root, dest_root, etcd=("3.9.1", "3.9.2"), runc=("1.9.0",),
                  cni=(("1.9.0", ("bridge", "host-local", "loopback")), ("1.9.1", ("bridge", "host-local"))),
                  apiserver=("1.99.0",), etcd_payload=None, arch="amd64"):
    """Publish fake releases below ``serve_root`` and return a versions Table for them.

    The table has the real structure (URL templates, members, groups, pinned and published
    checksums) with destinations below ``dest_root``.
    """
    dest_root = str(dest_root)
    bin_dir = os.path.join(dest_root, "usr", "local", "bin")
    sbin_dir = os.path.join(dest_root, "usr", "local", "sbin")
    cni_dir = os.path.join(dest_root, "opt", "cni", "bin")
    etcd_sums = {}
    for version in etcd:
        data = etcd_archive(version, arch, (etcd_payload or {}).get(version))
        etcd_sums[version] = {arch: "sha256:" + publish(serve_root, ETCD_URL.format(version=version, arch=arch), data)}
    runc_sums = {}
    for version in runc:
        data = f"#!/bin/sh\necho runc {version}\n".encode()
        runc_sums[version] = {arch: "sha256:" + publish(serve_root, RUNC_URL.format(version=version, arch=arch), data)}
    cni_sums = {}
    for version, plugins in cni:
        data = cni_archive(version, plugins)
        cni_sums[version] = {arch: "sha256:" + publish(serve_root, CNI_URL.format(version=version, arch=arch), data)}
    for version in apiserver:
        data = f"#!/bin/sh\necho kube-apiserver {version}\n".encode()
        url = APISERVER_URL.format(version=version, arch=arch)
        digest = publish(serve_root, url, data)
        publish(serve_root, url + ".sha256", (digest + "\n").encode())
    data = {
        "__download_schema": 1,
        "__download_architectures": ["amd64", "arm64"],
        "__download_supported_kubernetes_minors": ["1.99"],
        "__download_default_kubernetes_version": apiserver[0],
        "__download_kubernetes_defaults": {"1.99": {
            "kubernetes": apiserver[0], "etcd": etcd[0], "runc": runc[0], "cni_plugins": cni[0][0]}},
        "__download_components": {
            "kube-apiserver": {
                "url": APISERVER_URL, "format": "binary", "groups": ["kube_control_plane"],
                "version_var": "kubeforge_kubernetes_version", "default_version": apiserver[0],
                "members": [{"dest": os.path.join(bin_dir, "kube-apiserver"), "mode": "0755"}],
                "checksum": "published", "versions": list(apiserver)},
            "etcd": {
                "url": ETCD_URL, "format": "tar.gz", "groups": ["etcd"],
                "version_var": "kubeforge_etcd_version", "default_version": etcd[0],
                "members": [{"src": "etcd-v{version}-linux-{arch}/" + n, "dest": os.path.join(bin_dir, n),
                             "mode": "0755"} for n in ("etcd", "etcdctl", "etcdutl")],
                "checksum": "pinned", "checksums": etcd_sums},
            "runc": {
                "url": RUNC_URL, "format": "binary", "groups": ["k8s_cluster"],
                "version_var": "kubeforge_runc_version", "default_version": runc[0],
                "members": [{"dest": os.path.join(sbin_dir, "runc"), "mode": "0755"}],
                "checksum": "pinned", "checksums": runc_sums},
            "cni_plugins": {
                "url": CNI_URL, "format": "tar.gz", "groups": ["k8s_cluster"],
                "version_var": "kubeforge_cni_plugins_version", "default_version": cni[0][0],
                "members": [{"glob": "*", "dest_dir": cni_dir, "mode": "0755", "exclude": ["LICENSE", "README.md"]}],
                "checksum": "pinned", "checksums": cni_sums},
        },
    }
    return Table(data, "<test table>")
