# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Controller-side resolution: mirror rewriting, version choice, checksum precedence (real table)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))

from support.mirror_manifest import checksums_from_manifest, versions_from_manifest  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import (  # noqa: E402
    TABLE_PATH,
    VersionsError,
    load_table,
    mirror_relative_path,
    normalize_overrides,
    normalize_sha256,
    rewrite_url,
)

ETCD = "https://github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz"


@pytest.fixture(scope="module")
def table():
    return load_table(TABLE_PATH)


# -- mirror rewriting ---------------------------------------------------------------------------

def test_no_mirror_keeps_upstream():
    assert rewrite_url(ETCD, "") == ("url", ETCD)
    assert rewrite_url(ETCD, None) == ("url", ETCD)


@pytest.mark.parametrize("mirror", ["http://10.88.0.1:18080", "http://10.88.0.1:18080/"])
def test_http_mirror_prefixes_upstream_host_and_path(mirror):
    assert rewrite_url(ETCD, mirror) == (
        "url", "http://10.88.0.1:18080/github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz")


def test_https_mirror_with_a_base_path():
    kind, url = rewrite_url("https://dl.k8s.io/release/v1.36.4/bin/linux/arm64/kubelet", "https://m.example/k8s/")
    assert (kind, url) == ("url", "https://m.example/k8s/dl.k8s.io/release/v1.36.4/bin/linux/arm64/kubelet")


@pytest.mark.parametrize("mirror", ["/srv/bundle", "/srv/bundle/", "file:///srv/bundle"])
def test_directory_mirror_is_a_controller_path(mirror):
    assert rewrite_url(ETCD, mirror) == (
        "path", "/srv/bundle/github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz")


@pytest.mark.parametrize("mirror", ["mirror.local", "ftp://x/", "relative/dir"])
def test_bad_mirror_names_the_variable(mirror):
    with pytest.raises(VersionsError, match="kubeforge_files_mirror"):
        rewrite_url(ETCD, mirror)


def test_mirror_relative_path():
    assert mirror_relative_path(ETCD) == "github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz"


# -- checksum precedence ------------------------------------------------------------------------

def test_pinned_checksum_from_table(table):
    digest, source = table.checksum("etcd", "3.6.9", "amd64")
    assert source == "pinned"
    assert digest == table.components["etcd"]["checksums"]["3.6.9"]["amd64"].split(":", 1)[1]


def test_override_beats_pinned(table):
    overrides = normalize_overrides({"etcd": {"3.6.9": {"amd64": "sha256:" + "ab" * 32}}})
    assert table.checksum("etcd", "3.6.9", "amd64", overrides) == ("ab" * 32, "override")
    # Other architectures keep the pinned sum.
    assert table.checksum("etcd", "3.6.9", "arm64", overrides)[1] == "pinned"


def test_published_components_have_no_pinned_sum(table):
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert table.checksum(name, "1.36.4", "amd64") == (None, "published")
    spec = table.resolve("kube-proxy", "1.36.4", "arm64", "http://m:1")
    assert spec["checksum_url"] == "http://m:1/dl.k8s.io/release/v1.36.4/bin/linux/arm64/kube-proxy.sha256"
    local = table.resolve("kube-proxy", "1.36.4", "arm64", "/srv/b")
    assert local["checksum_path"] == "/srv/b/dl.k8s.io/release/v1.36.4/bin/linux/arm64/kube-proxy.sha256"
    assert local["url"] is None and local["path"].startswith("/srv/b/dl.k8s.io/")


def test_override_pins_a_published_component(table):
    overrides = normalize_overrides({"kube-apiserver": {"1.36.4": {"amd64": "cd" * 32}}})
    assert table.checksum("kube-apiserver", "1.36.4", "amd64", overrides) == ("cd" * 32, "override")


def test_unknown_version_needs_an_override(table):
    with pytest.raises(VersionsError) as err:
        table.checksum("etcd", "3.7.0", "amd64")
    assert "kubeforge_download_checksums" in str(err.value)
    assert "3.6.14" in str(err.value)
    overrides = normalize_overrides({"etcd": {"v3.7.0": {"amd64": "sha256:" + "12" * 32}}})
    assert table.checksum("etcd", "3.7.0", "amd64", overrides) == ("12" * 32, "override")
    with pytest.raises(VersionsError):
        table.checksum("kube-apiserver", "1.20.0", "amd64")


@pytest.mark.parametrize("bad", ["sha512:" + "a" * 128, "a" * 63, "sha256:" + "g" * 64, 42])
def test_malformed_override_is_refused(bad):
    with pytest.raises(VersionsError, match="kubeforge_download_checksums.etcd.3.6.9.amd64"):
        normalize_overrides({"etcd": {"3.6.9": {"amd64": bad}}})


def test_normalize_sha256_accepts_prefix_and_case():
    assert normalize_sha256("SHA256:" + "AB" * 32, "x") == "ab" * 32


# -- versions -----------------------------------------------------------------------------------

def test_version_precedence(table):
    variables = {"kubeforge_etcd_version": "3.6.5", "kubeforge_kubernetes_version": "1.35.2"}
    assert table.version_for("etcd", {"etcd": "3.6.14"}, variables) == "3.6.14"
    assert table.version_for("etcd", {}, variables) == "3.6.5"
    assert table.version_for("etcd", {}, {"kubeforge_kubernetes_version": "1.35.2"}) == \
        table.kubernetes_defaults["1.35"]["etcd"]
    assert table.version_for("containerd", {}, {"kubeforge_kubernetes_version": "1.34.3"}) == \
        table.kubernetes_defaults["1.34"]["containerd"]
    assert table.version_for("kubelet", {}, variables) == "1.35.2"
    assert table.version_for("kube-scheduler", {"kubernetes": "1.34.1"}, variables) == "1.34.1"
    assert table.version_for("kubelet", {"kubelet": "1.36.0", "kubernetes": "1.34.1"}, {}) == "1.36.0"
    assert table.version_for("kubelet", {}, {}) == table.default_kubernetes_version
    assert table.version_for("helm", {}, {}) == table.components["helm"]["default_version"]


def test_groups_select_components(table):
    assert table.components_for_groups(["etcd"]) == ["etcd"]
    assert set(table.components_for_groups(["kube_node", "k8s_cluster"])) == {
        "kubelet", "kube-proxy", "containerd", "runc", "cni_plugins", "crictl"}
    assert set(table.components_for_groups(["kube_control_plane"])) == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}
    assert table.components_for_groups(["other"]) == []
    assert "helm" not in table.cluster_components()


def test_resolve_renders_members(table):
    spec = table.resolve("etcd", "3.6.9", "arm64", "")
    assert [m["src"] for m in spec["members"]] == [
        "etcd-v3.6.9-linux-arm64/etcd", "etcd-v3.6.9-linux-arm64/etcdctl", "etcd-v3.6.9-linux-arm64/etcdutl"]
    assert spec["url"] == spec["upstream_url"]
    runc = table.resolve("runc", table.kubernetes_defaults["1.36"]["runc"], "amd64", "")
    assert runc["members"] == [{"dest": "/usr/local/sbin/runc", "mode": "0755"}]


def test_resolve_many_reports_every_problem(table):
    with pytest.raises(VersionsError) as err:
        table.resolve_many(["etcd", "runc"], "amd64", {"etcd": "9.9.9", "runc": "8.8.8"})
    assert "etcd 9.9.9" in str(err.value) and "runc 8.8.8" in str(err.value)
    with pytest.raises(VersionsError, match="architecture"):
        table.resolve("etcd", "3.6.9", "s390x")
    with pytest.raises(VersionsError, match="unknown component"):
        table.resolve_many(["etcdd"], "amd64")


# -- test bed manifest helper -------------------------------------------------------------------

def test_manifest_to_checksums_variable():
    manifest = {"artifacts": [
        {"component": "etcd", "version": "3.5.30", "arch": "amd64", "path": "github.com/x", "sha256": "A" * 64},
        {"component": "etcd", "version": "3.5.30", "arch": "arm64", "path": "github.com/y", "sha256": "sha256:" + "b" * 64},
        {"component": "runc", "version": "v1.1.15", "arch": "amd64", "path": "github.com/z", "sha256": "c" * 64},
    ]}
    assert checksums_from_manifest(manifest) == {
        "etcd": {"3.5.30": {"amd64": "sha256:" + "a" * 64, "arm64": "sha256:" + "b" * 64}},
        "runc": {"1.1.15": {"amd64": "sha256:" + "c" * 64}},
    }
    assert versions_from_manifest(manifest) == {"etcd": "3.5.30", "runc": "1.1.15"}
    assert list(checksums_from_manifest(manifest, ["runc"])) == ["runc"]
    # The result is accepted as kubeforge_download_checksums.
    assert normalize_overrides(checksums_from_manifest(manifest))["etcd"]["3.5.30"]["amd64"] == "a" * 64
    with pytest.raises(ValueError, match="bad sha256"):
        checksums_from_manifest({"artifacts": [{"component": "etcd", "version": "1", "arch": "amd64",
                                                "sha256": "nope"}]})
