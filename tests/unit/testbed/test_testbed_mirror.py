# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Mirror planning and repackaging into the upstream release layout (on small stand-in files)."""

import os
import re
import tarfile

import pytest

from testbed import common, goartifacts, manifest, mirror

CANDIDATES = {
    "bookworm": {
        "etcd-server": "3.4.23-4+b4",
        "etcd-client": "3.4.23-4+b4",
        "containerd": "1.6.20~ds1-1+deb12u3",
        "runc": "1.1.5+ds1-1+deb12u1",
        "containernetworking-plugins": "1.1.1+ds1-3+b5",
        "kubernetes-client": "1.20.5+really1.20.2-1.1+deb12u1",
    },
    "trixie": {
        "etcd-server": "3.5.16-4",
        "etcd-client": "3.5.16-4",
        "containerd": "1.7.24~ds1-6+deb13u1",
        "runc": "1.1.15+ds1-2+b4",
        "containernetworking-plugins": "1.1.1+ds1-3+b17",
        "kubernetes-client": "1.32.3+ds-2",
    },
    "sid": {
        "etcd-server": "3.5.30-2",
        "containerd": "2.1.9+ds1-5",
        "containernetworking-plugins": "1.9.1+ds1-1",
        "kubectl": "1.36.4+ds-1",
        "kubernetes-client": "1.36.4+ds-1",
    },
}


def plans_by_key():
    return {(p["component"], p["version"]): p for p in mirror.plan_artifacts(CANDIDATES)}


def test_plan_picks_the_oldest_suite_for_a_shared_version():
    cni = plans_by_key()[("cni_plugins", "1.1.1")]
    assert cni["suite"] == "bookworm"
    assert cni["packages"] == [("containernetworking-plugins", "1.1.1+ds1-3+b5")]
    assert cni["suites"] == ["bookworm", "trixie"]


def test_plan_versions_come_from_the_packages():
    assert sorted(plans_by_key()) == [
        ("cni_plugins", "1.1.1"),
        ("cni_plugins", "1.9.1"),
        ("containerd", "1.6.20"),
        ("containerd", "1.7.24"),
        ("containerd", "2.1.9"),
        ("etcd", "3.4.23"),
        ("etcd", "3.5.16"),
        ("runc", "1.1.15"),
        ("runc", "1.1.5"),
    ]


def test_plan_needs_every_package_of_a_set():
    # sid has etcd-server without etcd-client here: no etcd 3.5.30
    assert ("etcd", "3.5.30") not in plans_by_key()


def test_kubectl_is_not_taken_from_debian():
    # kubectl comes from the Go builds at the version of the cluster, like the other programs
    assert not [key for key in plans_by_key() if key[0] == "kubectl"]


def test_plan_order_is_by_component_then_version():
    order = [(p["component"], p["version"]) for p in mirror.plan_artifacts(CANDIDATES)]
    assert order.index(("runc", "1.1.5")) < order.index(("runc", "1.1.15"))
    assert order.index(("etcd", "3.5.16")) < order.index(("containerd", "1.6.20"))


@pytest.mark.parametrize(
    ("component", "version", "path"),
    [
        ("etcd", "3.4.23", "github.com/etcd-io/etcd/releases/download/v3.4.23/etcd-v3.4.23-linux-amd64.tar.gz"),
        (
            "containerd",
            "1.7.24",
            "github.com/containerd/containerd/releases/download/v1.7.24/containerd-1.7.24-linux-amd64.tar.gz",
        ),
        ("runc", "1.1.15", "github.com/opencontainers/runc/releases/download/v1.1.15/runc.amd64"),
        (
            "cni_plugins",
            "1.1.1",
            "github.com/containernetworking/plugins/releases/download/v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz",
        ),
    ],
)
def test_paths_follow_the_upstream_urls(component, version, path):
    assert mirror.artifact_path(component, version) == path


def test_paths_match_release_urls_document():
    """The URL patterns of the upstream facts (tests/data/upstream), with VERSION and ARCH filled in."""
    facts = os.path.join(os.path.dirname(__file__), "..", "..", "data", "upstream", "release-urls.md")
    with open(facts, encoding="utf-8") as handle:
        text = handle.read()
    patterns = {
        "etcd": r"\| etcd .*?\| https://(\S+) \|",
        "containerd": r"\| containerd .*?\| https://(\S+) \|",
        "runc": r"\| runc \| https://(\S+) \|",
        "cni_plugins": r"\| CNI plugins \| https://(\S+) \|",
    }
    for component, pattern in patterns.items():
        url = re.search(pattern, text).group(1).replace("VERSION", "9.8.7").replace("ARCH", "amd64")
        assert mirror.artifact_path(component, "9.8.7") == url
    k8s = re.search(r"\| kubelet, kubectl.*?\| https://(\S+) \|", text).group(1)
    built = {component: path for component, path, _f, _m in goartifacts.layouts("kubernetes", "1.2.3")}
    for name in manifest.KUBERNETES_COMPONENTS:
        assert built[name] == k8s.replace("VERSION", "1.2.3").replace("ARCH", "amd64").replace("NAME", name)
    crictl = re.search(r"\| crictl \| https://(\S+) \|", text).group(1)
    assert [path for _c, path, _f, _m in goartifacts.layouts("crictl", "9.8.7")] == [
        crictl.replace("VERSION", "9.8.7").replace("ARCH", "amd64")]


def fake_tree(root, files):
    for path in files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\x7fELF" + path.encode())
        os.utime(target, (1700000000, 1700000000))
    return str(root)


def members(path):
    with tarfile.open(path) as archive:
        return {m.name: (m.type, m.mode, m.uid) for m in archive.getmembers()}


def test_etcd_archive_layout(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/bin/etcd", "usr/bin/etcdctl", "usr/bin/etcdutl"])
    out = str(tmp_path / "etcd.tar.gz")
    mirror.repackage("etcd", "3.5.16", tree, out)
    assert members(out) == {
        "etcd-v3.5.16-linux-amd64": (tarfile.DIRTYPE, 0o755, 0),
        "etcd-v3.5.16-linux-amd64/etcd": (tarfile.REGTYPE, 0o755, 0),
        "etcd-v3.5.16-linux-amd64/etcdctl": (tarfile.REGTYPE, 0o755, 0),
        "etcd-v3.5.16-linux-amd64/etcdutl": (tarfile.REGTYPE, 0o755, 0),
    }


def test_containerd_archive_layout(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/bin/containerd", "usr/bin/containerd-shim-runc-v2", "usr/bin/ctr"])
    out = str(tmp_path / "c.tar.gz")
    used = mirror.repackage("containerd", "2.1.9", tree, out)
    assert [name for name, _path in used] == ["containerd", "containerd-shim-runc-v2", "ctr"]
    assert sorted(members(out)) == ["bin", "bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]


def test_cni_plugins_sit_at_the_archive_root(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/lib/cni/bridge", "usr/lib/cni/host-local", "usr/lib/cni/loopback"])
    (tmp_path / "t" / "usr/lib/cni/README").write_text("not a program")
    out = str(tmp_path / "cni.tgz")
    mirror.repackage("cni_plugins", "1.1.1", tree, out)
    # "./" reads back as "." through tarfile; GNU tar lists it as "./", as in upstream's archives
    assert sorted(members(out)) == [".", "./bridge", "./host-local", "./loopback"]


def test_single_binaries_are_copied_executable(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/sbin/runc"])
    out = str(tmp_path / "runc.amd64")
    mirror.repackage("runc", "1.1.5", tree, out)
    assert open(out, "rb").read() == b"\x7fELFusr/sbin/runc"
    assert os.stat(out).st_mode & 0o777 == 0o755


def test_archives_are_reproducible(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/bin/etcd", "usr/bin/etcdctl"])
    first, second = str(tmp_path / "1.tar.gz"), str(tmp_path / "2.tar.gz")
    mirror.repackage("etcd", "3.4.23", tree, first)
    mirror.repackage("etcd", "3.4.23", tree, second)
    assert open(first, "rb").read() == open(second, "rb").read()


def test_missing_required_binary_is_an_error(tmp_path):
    tree = fake_tree(tmp_path / "t", ["usr/bin/containerd", "usr/bin/ctr"])
    with pytest.raises(common.TestbedError, match="no containerd-shim-runc-v2 in the Debian package"):
        mirror.repackage("containerd", "1.7.24", tree, str(tmp_path / "c.tar.gz"))


def test_checksums_and_etcd_sha256sums(tmp_path, monkeypatch):
    release = tmp_path / "github.com/etcd-io/etcd/releases/download/v3.4.23"
    release.mkdir(parents=True)
    artifact = release / "etcd-v3.4.23-linux-amd64.tar.gz"
    artifact.write_bytes(b"etcd")
    digest = mirror.write_checksums(str(artifact))
    expected = f"{digest}  etcd-v3.4.23-linux-amd64.tar.gz\n"
    assert (release / "etcd-v3.4.23-linux-amd64.tar.gz.sha256").read_text() == expected
    assert (release / "SHA256SUMS").read_text() == expected
    runc = tmp_path / "github.com/opencontainers/runc/releases/download/v1.1.5/runc.amd64"
    runc.parent.mkdir(parents=True)
    runc.write_bytes(b"runc")
    mirror.write_checksums(str(runc))
    assert not (runc.parent / "SHA256SUMS").exists()


def test_check_script_and_its_output():
    script = mirror._check_script([("0", "etcd", ["etcd", "etcdctl"]), ("1", "cni_plugins", ["bridge"])])
    assert "check 0 etcd '/kf/0/etcd --version'" in script
    assert "check 0 etcdctl '/kf/0/etcdctl version'" in script
    assert "check 1 bridge 'CNI_COMMAND=VERSION /kf/1/bridge'" in script
    output = (
        "@@ 0 etcd 0\n| etcd Version: 3.4.23\n| Git SHA: x\n\n@@ 0 etcdctl 127\n| sh: not found\n\n@@ 1 bridge 0\n\n"
    )
    assert mirror._parse_check_output(output) == {
        "0": {"etcd": [0, "etcd Version: 3.4.23"], "etcdctl": [127, "sh: not found"]},
        "1": {"bridge": [0, ""]},
    }
