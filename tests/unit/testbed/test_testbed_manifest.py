# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Manifest, checksum files and the version facts read from Debian packages."""

import hashlib
import json

import pytest

from testbed.manifest import (
    checksum_line,
    load_manifest,
    max_glibc,
    render_manifest,
    sha256_file,
    upstream_version,
    write_manifest,
)

DIGEST = "a" * 64


def artifact(**override):
    record = {
        "component": "etcd",
        "version": "3.4.23",
        "arch": "amd64",
        "path": "github.com/etcd-io/etcd/releases/download/v3.4.23/etcd-v3.4.23-linux-amd64.tar.gz",
        "sha256": DIGEST,
        "size": 123,
        "source": "debian bookworm etcd-server 3.4.23-4+b4, etcd-client 3.4.23-4+b4",
        "glibc": "2.34",
        "runs_on": ["bookworm", "trixie"],
    }
    record.update(override)
    return record


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("3.4.23-4+b4", "3.4.23"),
        ("1.6.20~ds1-1+deb12u3", "1.6.20"),
        ("2.1.9+ds1-5", "2.1.9"),
        ("1.1.1+ds1-3+b17", "1.1.1"),
        ("1.20.5+really1.20.2-1.1+deb12u1", "1.20.2"),
        ("1:1.35.0-4+deb12u1+b1", "1.35.0"),
        ("1.36.4+ds-1", "1.36.4"),
        ("3.5.30", "3.5.30"),
    ],
)
def test_upstream_version(debian, upstream):
    assert upstream_version(debian) == upstream


def test_upstream_version_rejects_nonsense():
    with pytest.raises(ValueError, match="cannot read an upstream version"):
        upstream_version("abc-1")


OBJDUMP = """
/tmp/runc:     file format elf64-x86-64

DYNAMIC SYMBOL TABLE:
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) pthread_attr_init
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.38) __isoc23_strtol
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.4)  __stack_chk_fail
0000000000000000      DF *UND*  0000000000000000  LIBSECCOMP_2.5 seccomp_init
"""


def test_max_glibc_compares_numerically():
    assert max_glibc(OBJDUMP) == "2.38"
    assert max_glibc("(GLIBC_2.9) a\n(GLIBC_2.10) b\n") == "2.10"


def test_max_glibc_of_a_static_binary():
    assert max_glibc("") is None
    assert max_glibc("DYNAMIC SYMBOL TABLE:\n") is None


def test_checksum_line_is_sha256sum_format():
    assert checksum_line(DIGEST, "runc.amd64") == f"{DIGEST}  runc.amd64\n"


@pytest.mark.parametrize(("digest", "name"), [("xyz", "f"), ("A" * 64, "f"), (DIGEST, "dir/f"), (DIGEST, "")])
def test_checksum_line_rejects_bad_input(digest, name):
    with pytest.raises(ValueError):
        checksum_line(digest, name)


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(str(path)) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_manifest_is_sorted_by_component_then_version():
    records = [
        artifact(component="kubectl", version="1.36.4", path="dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubectl"),
        artifact(version="3.5.30", path="e/3.5.30"),
        artifact(version="3.5.4", path="e/3.5.4"),
        artifact(component="runc", version="1.1.15", path="r/1.1.15"),
        artifact(component="image", version="testbed", path="testbed/images/busybox.oci.tar", glibc=None, runs_on=[]),
    ]
    document = json.loads(render_manifest(records, "2026-01-01T00:00:00+00:00"))
    assert [(a["component"], a["version"]) for a in document["artifacts"]] == [
        ("etcd", "3.5.4"),
        ("etcd", "3.5.30"),
        ("runc", "1.1.15"),
        ("kubectl", "1.36.4"),
        ("image", "testbed"),
    ]
    assert document["built"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"component": "helm"}, "unknown component"),
        ({"sha256": "abc"}, "not a hex digest"),
        ({"path": "/abs/path"}, "relative to the mirror root"),
        ({"path": "a/../b"}, "relative to the mirror root"),
        ({"size": -1}, "non-negative"),
        ({"runs_on": "bookworm"}, "must be a list"),
    ],
)
def test_manifest_rejects_bad_records(override, message):
    with pytest.raises(ValueError, match=message):
        render_manifest([artifact(**override)], "t")


def test_manifest_rejects_missing_keys_and_duplicates():
    record = artifact()
    del record["glibc"]
    with pytest.raises(ValueError, match="missing glibc"):
        render_manifest([record], "t")
    with pytest.raises(ValueError, match="listed twice"):
        render_manifest([artifact(), artifact()], "t")


def test_write_and_load(tmp_path):
    path = tmp_path / "mirror" / "manifest.json"
    extra = artifact(checked_on=["bookworm"], failed_on={})
    write_manifest(str(path), [extra], "t")
    loaded = load_manifest(str(path))
    assert loaded == {extra["path"]: extra}
    assert load_manifest(str(tmp_path / "missing.json")) == {}


def test_mirror_variables_checksums_versions_substitutes_images():
    from testbed.manifest import KUBERNETES_COMPONENTS, mirror_variables

    suites = ("bookworm", "trixie")
    records = [
        artifact(version="3.4.23", path="e/3.4.23", runs_on=["bookworm", "trixie"], sha256="a" * 64),
        artifact(version="3.6.8", path="e/3.6.8", runs_on=["bookworm", "trixie"], sha256="b" * 64,
                 pinned="3.6.9", substitute="go.etcd.io/etcd/etcdctl/v3@v3.6.9 not served"),
        # runs on one suite only: held, not usable by a mixed cluster
        artifact(component="runc", version="1.4.3", path="r/1.4.3", runs_on=["bookworm"], sha256="c" * 64),
        artifact(component="image", version="3.10.2", path="testbed/images/pause-3.10.2.oci.tar", glibc=None,
                 runs_on=[], image="registry.k8s.io/pause:3.10.2", digest="sha256:" + "d" * 64),
    ]
    records += [artifact(component=name, version="1.36.4", path=f"k/{name}", runs_on=list(suites), sha256="e" * 64)
                for name in KUBERNETES_COMPONENTS]
    # an older Kubernetes of which one program is missing does not count as a release
    records += [artifact(component=name, version="1.35.8", path=f"k35/{name}", runs_on=list(suites), sha256="f" * 64)
                for name in KUBERNETES_COMPONENTS if name != "kubelet"]
    variables = mirror_variables(records, "http://10.88.0.1:18080", suites)
    assert variables["kubeforge_files_mirror"] == "http://10.88.0.1:18080"
    assert variables["kubeforge_download_checksums"]["etcd"]["3.6.8"] == {"amd64": "sha256:" + "b" * 64}
    assert variables["testbed_versions"]["etcd"] == "3.6.8"
    assert "runc" not in variables["testbed_versions"]
    assert variables["testbed_mirror_versions"]["runc"] == ["1.4.3"]
    assert variables["testbed_versions"]["kubernetes"] == "1.36.4"
    assert variables["testbed_versions"]["kube-apiserver"] == "1.36.4"
    assert variables["testbed_substitutes"] == {"etcd": {"pinned": "3.6.9", "built": "3.6.8",
                                                         "reason": "go.etcd.io/etcd/etcdctl/v3@v3.6.9 not served"}}
    assert variables["testbed_images"] == {"registry.k8s.io/pause:3.10.2": "sha256:" + "d" * 64}


def test_image_overrides_give_the_mirror_digest_of_each_table_image_it_holds():
    from testbed.manifest import image_overrides

    table = {"coredns": {"name": "registry.k8s.io/coredns/coredns", "tag": "v1.14.2", "digest": "sha256:" + "0" * 64},
             "metrics_server": {"name": "registry.k8s.io/metrics-server/metrics-server", "tag": "v0.8.0",
                                "digest": "sha256:" + "1" * 64}}
    held = {"registry.k8s.io/coredns/coredns:v1.14.2": "sha256:" + "a" * 64,
            "registry.k8s.io/coredns/coredns:v1.13.1": "sha256:" + "b" * 64}
    assert image_overrides(held, table) == {"coredns": {"digest": "sha256:" + "a" * 64}}


def test_the_collection_image_table_is_readable_by_the_test_bed():
    from testbed.gobuild import load_image_table

    table = load_image_table()
    assert {"coredns", "metrics_server", "local_path", "local_path_helper"} <= set(table)
