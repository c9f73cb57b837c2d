# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""OCI archives written without a container engine: layout, digests, reproducibility."""

import hashlib
import io
import json
import tarfile

import pytest

from testbed import oci


def _members(path):
    with tarfile.open(path) as archive:
        return {member.name: (archive.extractfile(member).read() if member.isfile() else None)
                for member in archive.getmembers()}


def _entries(tmp_path):
    program = tmp_path / "pause"
    program.write_bytes(b"\x7fELF fake program")
    return [oci.file_from("pause", str(program)), oci.file_text("etc/passwd", "root:x:0:0::/:/pause\n"),
            oci.symlink("bin/sh", "/pause"), oci.Entry("tmp", "dir", mode=0o1777)]


def test_archive_is_an_oci_layout_with_verified_blobs(tmp_path):
    path = tmp_path / "pause.oci.tar"
    digest = oci.build_archive(str(path), ["registry.k8s.io/pause:3.10.2"], [_entries(tmp_path)],
                               {"Entrypoint": ["/pause"], "User": "65535:65535"})
    members = _members(path)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    (descriptor,) = index["manifests"]
    assert descriptor["digest"] == digest
    assert descriptor["annotations"] == {"io.containerd.image.name": "registry.k8s.io/pause:3.10.2",
                                         "org.opencontainers.image.ref.name": "3.10.2"}
    assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    # every blob is stored under its own sha256
    for name, data in members.items():
        if name.startswith("blobs/sha256/") and data is not None:
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(members["blobs/sha256/" + digest.split(":")[1]])
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"] == {"Entrypoint": ["/pause"], "User": "65535:65535"}
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    (layer,) = manifest["layers"]
    blob = members["blobs/sha256/" + layer["digest"].split(":")[1]]
    assert layer["size"] == len(blob)
    import gzip

    raw = gzip.decompress(blob)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        listed = {member.name: member for member in archive.getmembers()}
    assert sorted(listed) == ["bin", "bin/sh", "etc", "etc/passwd", "pause", "tmp"]
    assert listed["bin/sh"].issym() and listed["bin/sh"].linkname == "/pause"
    assert listed["tmp"].mode == 0o1777 and listed["pause"].mode == 0o755
    assert all(member.mtime == 0 and member.uid == 0 for member in listed.values())


def test_same_inputs_same_digest_and_bytes(tmp_path):
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    one = oci.build_archive(str(first), ["docker.io/library/busybox:testbed"], [_entries(tmp_path)], {"Cmd": ["sh"]})
    two = oci.build_archive(str(second), ["docker.io/library/busybox:testbed"], [_entries(tmp_path)], {"Cmd": ["sh"]})
    assert one == two
    assert first.read_bytes() == second.read_bytes()
    other = oci.build_archive(str(second), ["docker.io/library/busybox:testbed"], [_entries(tmp_path)],
                              {"Cmd": ["sh", "-c", "true"]})
    assert other != one


def test_read_archive_index_lists_every_name(tmp_path):
    path = tmp_path / "x.tar"
    digest = oci.build_archive(str(path), ["registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10.2"],
                               [_entries(tmp_path)], {})
    assert oci.read_archive_index(str(path)) == [("registry.k8s.io/pause:3.10.1", digest),
                                                 ("registry.k8s.io/pause:3.10.2", digest)]


@pytest.mark.parametrize("reference", ["busybox", "registry.k8s.io/pause", "host:5000/image"])
def test_a_reference_needs_a_tag(tmp_path, reference):
    with pytest.raises(ValueError, match="needs a tag"):
        oci.build_archive(str(tmp_path / "x.tar"), [reference], [[]], {})


def test_split_reference_keeps_a_registry_port():
    assert oci.split_reference("host:5000/image:v1") == ("host:5000/image", "v1")
