# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""versions.yml (the versions table): structure, agreement with the upstream facts, regeneration."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TABLE = os.path.join(ROOT, "versions.yml")
SCRIPT = os.path.join(ROOT, "hack", "update-versions")
UPSTREAM = os.path.join(ROOT, "tests", "data", "upstream")
CHECKSUMS = os.path.join(UPSTREAM, "release-checksums.yml")
URLS = os.path.join(UPSTREAM, "release-urls.md")
HEX = re.compile(r"^sha256:[0-9a-f]{64}$")
ARCHES = ("amd64", "arm64")

# Component -> key in release-checksums.yml.
DATA_KEYS = {
    "kubelet": "kubelet_checksums", "kubectl": "kubectl_checksums", "etcd": "etcd_binary_checksums",
    "containerd": "containerd_archive_checksums", "runc": "runc_checksums", "cni_plugins": "cni_binary_checksums",
    "crictl": "crictl_checksums", "nerdctl": "nerdctl_archive_checksums", "helm": "helm_archive_checksums",
    "gateway_api_crds": "gateway_api_standard_crds_checksums",
}
needs_upstream = pytest.mark.skipif(not os.path.exists(CHECKSUMS),
                                    reason=f"upstream facts not on this machine ({CHECKSUMS})")


@pytest.fixture(scope="module")
def table():
    with open(TABLE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def upstream():
    with open(CHECKSUMS, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def vkey(version):
    return tuple(int(p) for p in version.split("."))


def test_every_key_has_the_role_prefix(table):
    assert all(key.startswith("__download_") for key in table)


def test_every_component_has_url_members_groups_and_checksums(table):
    components = table["__download_components"]
    for name in ("kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kube-proxy", "etcd", "containerd", "runc", "cni_plugins", "crictl"):
        assert name in components, name
    for name, comp in components.items():
        assert comp["url"].startswith("https://") and "{version}" in comp["url"], name
        if not comp.get("arch_independent"):
            assert "{arch}" in comp["url"], name
        assert comp["format"] in ("binary", "tar.gz", "file"), name
        assert comp["members"], name
        for member in comp["members"]:
            assert member.get("dest", member.get("dest_dir", "")).startswith("/"), (name, member)
            assert re.match(r"^0[0-7]{3}$", member["mode"]), (name, member)
            if comp["format"] == "tar.gz":
                assert "src" in member or "glob" in member, (name, member)
        assert isinstance(comp["groups"], list), name
        assert re.match(r"^kubeforge_[a-z_]+_version$", comp["version_var"]), name
        assert comp["checksum"] in ("pinned", "published"), name
        if comp["checksum"] == "pinned":
            assert comp["checksums"], name
            for version, per_arch in comp["checksums"].items():
                assert re.match(r"^\d+\.\d+\.\d+$", version), (name, version)
                wanted = {"noarch"} if comp.get("arch_independent") else set(ARCHES)
                assert set(per_arch) == wanted, (name, version)
                for arch, value in per_arch.items():
                    assert HEX.match(value), (name, version, arch, value)
        else:
            assert comp["versions"], name
        known = comp["checksums"] if comp["checksum"] == "pinned" else comp["versions"]
        assert comp["default_version"] in known, name


def test_destinations_and_groups(table):
    components = table["__download_components"]
    assert components["runc"]["members"][0]["dest"] == "/usr/local/sbin/runc"
    assert components["cni_plugins"]["members"][0]["dest_dir"] == "/opt/cni/bin"
    for name in ("etcd", "containerd", "crictl", "kubelet", "kube-apiserver"):
        assert all(m["dest"].startswith("/usr/local/bin/") for m in components[name]["members"]), name
    assert [m["dest"] for m in components["etcd"]["members"]] == [
        "/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/usr/local/bin/etcdutl"]
    assert [m["dest"] for m in components["containerd"]["members"]] == [
        "/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/ctr"]
    groups = {name: comp["groups"] for name, comp in components.items()}
    assert groups["etcd"] == ["etcd"]
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        assert groups[name] == ["kube_control_plane"], name
    for name in ("kubelet", "kube-proxy", "containerd", "runc", "cni_plugins", "crictl"):
        assert groups[name] == ["k8s_cluster"], name


def test_published_components_are_exactly_the_unpinned_kubernetes_binaries(table):
    components = table["__download_components"]
    published = sorted(n for n, c in components.items() if c["checksum"] == "published")
    assert published == ["kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler"]
    kubelet_versions = sorted(components["kubelet"]["checksums"], key=vkey, reverse=True)
    for name in published:
        assert components[name]["versions"] == kubelet_versions, name


def test_supported_minors_and_their_defaults(table):
    components = table["__download_components"]
    minors_in_table = sorted({".".join(v.split(".")[:2]) for v in components["kubelet"]["checksums"]},
                             key=vkey, reverse=True)
    supported = table["__download_supported_kubernetes_minors"]
    assert supported == minors_in_table[:3]
    defaults = table["__download_kubernetes_defaults"]
    assert list(defaults) == supported
    for minor, pairing in defaults.items():
        assert set(pairing) == {"kubernetes", "etcd", "containerd", "runc", "cni_plugins", "crictl"}, minor
        assert pairing["kubernetes"].startswith(minor + ".")
        newest_patch = max((v for v in components["kubelet"]["checksums"] if v.startswith(minor + ".")), key=vkey)
        assert pairing["kubernetes"] == newest_patch, minor
        for component, version in pairing.items():
            name = "kubelet" if component == "kubernetes" else component
            sums = components[name]["checksums"].get(version)
            assert sums and set(sums) >= set(ARCHES), (minor, component, version)
            if component == "kubernetes":
                for published in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
                    assert version in components[published]["versions"]
                assert version in components["kubectl"]["checksums"]
        assert pairing["containerd"].startswith("2."), minor
        assert pairing["crictl"].startswith(minor + "."), minor
    assert table["__download_default_kubernetes_version"] == defaults[supported[0]]["kubernetes"]


@needs_upstream
def test_default_kubernetes_is_the_newest_136_patch_in_the_data(table, upstream):
    newest = max((str(v) for v in upstream["kubelet_checksums"]["amd64"] if str(v).startswith("1.36.")), key=vkey)
    assert table["__download_default_kubernetes_version"] == newest


@needs_upstream
def test_table_agrees_with_release_checksums(table, upstream):
    """A sample read from the upstream file: first, middle and last version of every component."""
    components = table["__download_components"]
    checked = 0
    for name, key in DATA_KEYS.items():
        arches = ("no_arch",) if components[name].get("arch_independent") else ARCHES
        for arch in arches:
            versions = [str(v) for v in upstream[key][arch]]
            for version in sorted({versions[0], versions[len(versions) // 2], versions[-1]}):
                table_arch = "noarch" if arch == "no_arch" else arch
                assert components[name]["checksums"][version][table_arch] == upstream[key][arch][version], \
                    (name, version, arch)
                checked += 1
    assert checked >= 40
    # And the other way round: every pinned entry of the table is in the upstream file.
    for name, key in DATA_KEYS.items():
        for version, per_arch in components[name]["checksums"].items():
            for arch, value in per_arch.items():
                assert upstream[key]["no_arch" if arch == "noarch" else arch][version] == value, (name, version, arch)


@needs_upstream
def test_url_templates_are_the_documented_upstream_urls(table):
    with open(URLS, encoding="utf-8") as handle:
        rows = [line for line in handle if line.startswith("| ") and "http" in line]
    documented = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        documented[cells[0]] = cells[1].replace("VERSION", "{version}").replace("ARCH", "{arch}")
    components = table["__download_components"]
    kube = documented["kubelet, kubectl, kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy"]
    for name in ("kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert components[name]["url"] == kube.replace("NAME", name), name
    pairs = {"etcd": "etcd (etcd, etcdctl, etcdutl in `etcd-vVERSION-linux-ARCH/`)",
             "containerd": "containerd (bin/containerd, bin/containerd-shim-runc-v2, bin/ctr)",
             "runc": "runc", "cni_plugins": "CNI plugins", "crictl": "crictl", "nerdctl": "nerdctl",
             "helm": "helm", "gateway_api_crds": "gateway API CRDs"}
    for name, row in pairs.items():
        assert components[name]["url"] == documented[row], name


def _load_script():
    loader = importlib.machinery.SourceFileLoader("update_versions", SCRIPT)
    spec = importlib.util.spec_from_loader("update_versions", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@needs_upstream
def test_update_versions_reproduces_the_committed_table_byte_for_byte():
    text, _model = _load_script().render(CHECKSUMS)
    with open(TABLE, encoding="utf-8") as handle:
        assert handle.read() == text
    check = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


@needs_upstream
def test_update_versions_picks_up_a_new_patch(tmp_path, upstream):
    """Adding a release is one command: a newer 1.36 patch becomes the default."""
    data = dict(upstream)
    for key in ("kubelet_checksums", "kubectl_checksums"):
        data[key] = {arch: dict(per) for arch, per in upstream[key].items()}
        for arch in ARCHES:
            data[key][arch] = {"1.36.99": "sha256:" + "7" * 64, **data[key][arch]}
    source = tmp_path / "checksums.yml"
    source.write_text(yaml.safe_dump(data))
    out = tmp_path / "versions.yml"
    run = subprocess.run([sys.executable, SCRIPT, "--source", str(source), "--output", str(out)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    generated = yaml.safe_load(out.read_text())
    assert generated["__download_default_kubernetes_version"] == "1.36.99"
    assert "1.36.99" in generated["__download_components"]["kube-apiserver"]["versions"]
    stale = subprocess.run([sys.executable, SCRIPT, "--source", str(source), "--check"],
                           capture_output=True, text=True, check=False)
    assert stale.returncode == 1
