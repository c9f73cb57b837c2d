"""Images read from a registry (a real HTTP server on this machine, speaking the read side of the
OCI distribution API with a bearer-token challenge) and written as OCI archives."""

import hashlib
import http.server
import json
import tarfile
import threading

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import registry


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image(arch, payload):
    layer = payload.encode() * 1000
    rootfs = {"type": "layers", "diff_ids": [_digest(layer)]}
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": rootfs}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": _digest(layer), "size": len(layer)}]}).encode()
    return manifest, {_digest(config): config, _digest(layer): layer}


class Registry:
    """Serves one multi-platform image (amd64, arm64, an attestation) of repository ``repo``."""

    def __init__(self, repo, token=True):
        self.repo, self.token, self.requests = repo, token, []
        self.manifests, self.blobs = {}, {}
        descriptors = []
        for arch in ("amd64", "arm64"):
            manifest, blobs = _image(arch, arch)
            self.manifests[_digest(manifest)] = manifest
            self.blobs.update(blobs)
            descriptors.append({"mediaType": registry.OCI_MANIFEST, "digest": _digest(manifest),
                                "size": len(manifest), "platform": {"architecture": arch, "os": "linux"}})
        descriptors.append({"mediaType": registry.OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 1,
                            "platform": {"architecture": "unknown", "os": "unknown"}})
        self.index = json.dumps({"schemaVersion": 2, "mediaType": registry.OCI_INDEX,
                                 "manifests": descriptors}).encode()
        self.manifests[_digest(self.index)] = self.index
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append(self.path)
                if self.path.startswith("/token"):
                    return self._send(200, json.dumps({"token": "t0k"}).encode())
                if owner.token and self.headers.get("Authorization") != "Bearer t0k":
                    self.send_response(401)
                    realm = f"http://127.0.0.1:{self.server.server_port}/token"
                    self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="test"')
                    self.end_headers()
                    return None
                prefix = f"/v2/{owner.repo}/"
                kind, _slash, ref = self.path[len(prefix):].partition("/")
                store = owner.manifests if kind == "manifests" else owner.blobs
                if not self.path.startswith(prefix) or ref not in store:
                    return self._send(404, b"{}")
                return self._send(200, store[ref])

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def served():
    server = Registry("registry.k8s.io/pause")
    yield server
    server.close()


def test_names_are_split_and_mirrored_below_their_registry_host():
    assert registry.split_name("busybox") == ("docker.io", "library/busybox")
    assert registry.split_name("rancher/local-path-provisioner") == ("docker.io", "rancher/local-path-provisioner")
    assert registry.split_name("ghcr.io/flannel-io/flannel") == ("ghcr.io", "flannel-io/flannel")
    assert registry.endpoint("busybox") == ("https://registry-1.docker.io", "library/busybox")
    assert registry.endpoint("registry.k8s.io/pause", "http://10.0.0.1:5000/") == (
        "http://10.0.0.1:5000", "registry.k8s.io/pause")
    assert registry.endpoint("registry.k8s.io/pause", "mirror.example:5000")[0] == "https://mirror.example:5000"
    assert registry.archive_path("registry.k8s.io/pause", "3.10.2") == "images/registry.k8s.io/pause/3.10.2.oci.tar"


def test_an_image_is_pulled_by_digest_through_a_token_challenge_for_the_wanted_platforms(served, tmp_path):
    digest = _digest(served.index)
    destination = tmp_path / "out" / "pause.oci.tar"
    sha = registry.pull(registry.Client(timeout=10), "registry.k8s.io/pause", "3.10.2", digest, ["amd64"],
                        str(destination), str(tmp_path), mirror=served.url)
    assert sha == hashlib.sha256(destination.read_bytes()).hexdigest()
    assert registry.archive_digest(str(destination)) == digest
    with tarfile.open(destination) as archive:
        names = set(archive.getnames())
        index = json.loads(archive.extractfile("index.json").read())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "registry.k8s.io/pause:3.10.2"
    amd64 = [d for d in json.loads(served.index)["manifests"] if d["platform"]["architecture"] == "amd64"][0]
    wanted = {digest, amd64["digest"]} | {d["digest"] for d in [json.loads(served.manifests[amd64["digest"]])["config"]]
                                          + json.loads(served.manifests[amd64["digest"]])["layers"]}
    assert names == {"oci-layout", "index.json"} | {"blobs/sha256/" + d.split(":")[1] for d in wanted}
    assert any(p.startswith("/token") for p in served.requests)
    assert not list(tmp_path.glob("*.blob")), "downloaded blobs are removed once archived"


def test_a_digest_the_registry_does_not_match_is_refused(served, tmp_path):
    served.manifests["sha256:" + "b" * 64] = served.index  # served under a digest it does not have
    with pytest.raises(registry.RegistryError, match="the content's digest is sha256:"):
        registry.pull(registry.Client(timeout=10), "registry.k8s.io/pause", "3.10.2", "sha256:" + "b" * 64,
                      ["amd64"], str(tmp_path / "x.tar"), str(tmp_path), mirror=served.url)
    assert not (tmp_path / "x.tar").exists()


def test_a_platform_the_index_lacks_is_named(served, tmp_path):
    with pytest.raises(registry.RegistryError, match="holds no linux image for s390x"):
        registry.pull(registry.Client(timeout=10), "registry.k8s.io/pause", "3.10.2", _digest(served.index),
                      ["amd64", "s390x"], str(tmp_path / "x.tar"), str(tmp_path), mirror=served.url)


def test_an_unknown_image_names_the_url_and_status(served, tmp_path):
    with pytest.raises(registry.RegistryError, match=r"/v2/docker.io/library/nope/manifests/sha256:.*HTTP 404"):
        registry.pull(registry.Client(timeout=10), "nope", "1", "sha256:" + "c" * 64, ["amd64"],
                      str(tmp_path / "x.tar"), str(tmp_path), mirror=served.url)


def test_the_bundle_holds_each_image_once_and_a_rerun_reads_only_its_index(served, tmp_path):
    from ansible_collections.kubeforge.cluster.plugins.action.artifacts import ControllerCache, build_bundle

    bundle = str(tmp_path / "bundle")
    image = {"key": "pause", "name": "registry.k8s.io/pause", "tag": "3.10.2", "digest": _digest(served.index)}

    def build():
        return build_bundle(None, bundle, [], ["amd64", "arm64"], [], {}, {}, "", {},
                            ControllerCache(bundle, markers=str(tmp_path / "cache"), collect=True),
                            images=[image], image_mirror=served.url, timeout=10)

    first = build()
    assert first["changed"] is True and first["bundle"]["images_fetched"] == 1
    manifest = json.load(open(f"{bundle}/manifest.json"))
    [entry] = manifest["images"]
    assert entry["path"] == "images/registry.k8s.io/pause/3.10.2.oci.tar"
    assert entry["digest"] == image["digest"] and entry["architectures"] == ["amd64", "arm64"]
    assert f"{entry['sha256']}  {entry['path']}" in open(f"{bundle}/SHA256SUMS").read()
    requests = len(served.requests)
    again = build()
    assert again["changed"] is False and again["bundle"]["images_fetched"] == 0
    assert len(served.requests) == requests
