# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The Go builder's planning: versions from the table, nearest served patch, the modules it writes."""

import os

import pytest

from testbed import common, gobuild, goartifacts

TABLE = {
    "__download_default_kubernetes_version": "1.36.4",
    "__download_supported_kubernetes_minors": ["1.36", "1.35", "1.34"],
    "__download_kubernetes_defaults": {
        "1.36": {"kubernetes": "1.36.4", "etcd": "3.6.9", "containerd": "2.3.4", "runc": "1.4.3",
                 "cni_plugins": "1.9.1", "crictl": "1.36.0"},
        "1.35": {"kubernetes": "1.35.8", "etcd": "3.6.9", "containerd": "2.2.7", "runc": "1.3.6",
                 "cni_plugins": "1.9.1", "crictl": "1.35.0"},
        "1.34": {"kubernetes": "1.34.11"},
    },
}


def test_pinned_versions_pair_the_default_minor_and_the_one_before():
    pins = gobuild.pinned_versions(TABLE)
    assert pins["default"]["kubernetes"] == "1.36.4"
    assert pins["previous"]["kubernetes"] == "1.35.8"


@pytest.fixture(autouse=True)
def _kubeadm(monkeypatch):
    # CoreDNS goes with the version kubeadm of that Kubernetes names (read from the module source)
    monkeypatch.setattr(gobuild, "kubeadm_constants",
                        lambda version, fetch=False: {"pause": "3.10.2", "coredns": "v1.14.2", "etcd": "3.6.8-0"})


def test_sets_name_what_the_scenarios_need():
    assert gobuild.wanted_units(["cluster"], TABLE) == [
        ("kubernetes", "1.36.4"), ("etcd", "3.6.9"), ("containerd", "2.3.4"), ("runc", "1.4.3"),
        ("crictl", "1.36.0"), ("cni_plugins", "1.9.1")]
    assert gobuild.wanted_units(["upgrade"], TABLE) == [("kubernetes", "1.35.8")]
    assert gobuild.wanted_units(["addons"], TABLE) == [("coredns", "1.14.2"), ("metrics-server", "0.8.0"),
                                                       ("local-path-provisioner", "0.0.30"), ("flannel", "0.28.4"),
                                                       ("flannel-cni-plugin", "1.9.1-flannel1")]
    assert len(gobuild.wanted_units(["all"], TABLE)) == 12
    # named twice, built once
    assert gobuild.wanted_units(["cluster", "cluster"], TABLE) == gobuild.wanted_units(["cluster"], TABLE)


def test_the_table_in_the_repository_names_the_sets_components():
    table = gobuild.load_versions_table()
    for component, version in gobuild.wanted_units(["all"], table):
        assert component in gobuild.RECIPES
        assert len(version.split(".")) == 3


def _fake_proxy(monkeypatch, served, listed):
    """served: {module: {versions whose zip the proxy gives}}; listed: {module: [what -versions lists]}."""
    def module_info(module, version, env):
        return {} if version in served.get(module, set()) else {"Error": f"{module}@{version}: 403 Forbidden"}

    monkeypatch.setattr(gobuild, "module_info", module_info)
    monkeypatch.setattr(gobuild, "served_versions", lambda module, env: listed.get(module, []))


def test_pinned_version_is_taken_when_every_module_is_served(monkeypatch):
    modules = ("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3")
    _fake_proxy(monkeypatch, {m: {"v3.6.9"} for m in modules}, {})
    assert gobuild.choose_version(gobuild.etcd_modules, "3.6.9", {}) == ("3.6.9", None)


def test_nearest_patch_served_for_every_module_replaces_a_missing_one(monkeypatch):
    server, ctl, utl = "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"
    served = {server: {"v3.6.8", "v3.6.9", "v3.6.10"}, ctl: {"v3.6.8", "v3.6.10"}, utl: {"v3.6.8", "v3.6.9", "v3.6.10"}}
    listed = {server: ["v3.5.30", "v3.6.8", "v3.6.10", "v3.7.0"], ctl: ["v3.6.8", "v3.6.10", "v3.7.0-rc.0"],
              utl: ["v3.6.8", "v3.6.10"]}
    _fake_proxy(monkeypatch, served, listed)
    version, reason = gobuild.choose_version(gobuild.etcd_modules, "3.6.9", {})
    # 3.6.8 and 3.6.10 are as near; the older wins
    assert version == "3.6.8"
    assert "go.etcd.io/etcd/etcdctl/v3@v3.6.9 not served" in reason and "3.6.8" in reason


def test_no_other_minor_is_taken(monkeypatch):
    module = "sigs.k8s.io/cri-tools"
    _fake_proxy(monkeypatch, {module: {"v1.34.0", "v1.37.0"}}, {module: ["v1.34.0", "v1.37.0"]})
    with pytest.raises(common.TestbedError, match="no served version of the 1.35 line near 1.35.0"):
        gobuild.choose_version(lambda v: {module: f"v{v}"}, "1.35.0", {})


def test_kubernetes_module_replaces_its_staging_modules(monkeypatch, tmp_path):
    go_mod = tmp_path / "k8s.mod"
    go_mod.write_text("module k8s.io/kubernetes\n\ngo 1.26.0\n\nreplace (\n"
                      "\tk8s.io/api => ./staging/src/k8s.io/api\n"
                      "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n"
                      "\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet\n)\n")
    monkeypatch.setattr(gobuild, "module_info",
                        lambda module, version, env: {"GoMod": str(go_mod), "Time": "2026-08-20T11:51:43Z"})
    recipe = gobuild.kubernetes_recipe("1.36.4", {})
    text = recipe.go_mod("1.26.8")
    assert "require (\n\tk8s.io/kubernetes v1.36.4\n)" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.36.4\n" in text
    assert "\tk8s.io/kubelet => k8s.io/kubelet v0.36.4\n" in text
    assert recipe.programs["kubelet"] == "k8s.io/kubernetes/cmd/kubelet"
    # the version the programs print comes from ldflags
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.4" in recipe.ldflags
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.36.4" in recipe.ldflags
    assert "buildDate=2026-08-20T11:51:43Z" in recipe.ldflags
    assert set(recipe.tags) == {"selinux", "notest", "grpcnotrace"} and not recipe.cgo


def test_runc_is_built_with_cgo_and_seccomp():
    recipe = gobuild.runc_recipe("1.4.3", {})
    assert recipe.cgo and "seccomp" in recipe.tags


def test_a_stamp_counts_only_for_the_same_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBEFORGE_TESTBED_HOME", str(tmp_path))
    recipe = gobuild.crictl_recipe("1.36.0", {})
    out = tmp_path / "go" / "bin" / recipe.key
    out.mkdir(parents=True)
    (out / "crictl").write_bytes(b"x")
    common.atomic_write(str(out / ".stamp.json"),
                        '{"recipe": "%s"}' % gobuild._digest(recipe.text() + "go1.26.8"))
    assert gobuild.built(recipe, "go1.26.8")
    assert not gobuild.built(recipe, "go1.26.9")
    changed = gobuild.crictl_recipe("1.36.0", {})
    changed.ldflags += " -X main.extra=1"
    assert not gobuild.built(changed, "go1.26.8")
    os.unlink(out / "crictl")
    assert not gobuild.built(recipe, "go1.26.8")


def test_kubeadm_constants_are_read_from_the_module_source(monkeypatch, tmp_path):
    monkeypatch.undo()
    monkeypatch.setenv("KUBEFORGE_TESTBED_HOME", str(tmp_path))
    constants = tmp_path / "go/mod/k8s.io/kubernetes@v1.36.4/cmd/kubeadm/app/constants/constants.go"
    constants.parent.mkdir(parents=True)
    constants.write_text('const (\n\tDefaultEtcdVersion = "3.6.8-0"\n\tCoreDNSVersion = "v1.14.2"\n'
                         '\tPauseVersion = "3.10.2"\n)\n')
    assert gobuild.kubeadm_constants("1.36.4") == {"pause": "3.10.2", "coredns": "v1.14.2", "etcd": "3.6.8-0"}
    with pytest.raises(common.TestbedError, match="kubeadm constants of Kubernetes 1.35.8"):
        gobuild.kubeadm_constants("1.35.8")


@pytest.mark.parametrize("component, version, expected", [
    ("kubernetes", "1.36.4", "dl.k8s.io/release/v1.36.4/bin/linux/amd64/kube-apiserver"),
    ("etcd", "3.6.8", "github.com/etcd-io/etcd/releases/download/v3.6.8/etcd-v3.6.8-linux-amd64.tar.gz"),
    ("containerd", "2.3.4",
     "github.com/containerd/containerd/releases/download/v2.3.4/containerd-2.3.4-linux-amd64.tar.gz"),
    ("runc", "1.4.3", "github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64"),
    ("crictl", "1.36.0",
     "github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz"),
    ("cni_plugins", "1.9.1",
     "github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz"),
])
def test_release_files_sit_at_the_upstream_paths(component, version, expected):
    paths = [path for _c, path, _f, _m in goartifacts.layouts(component, version)]
    assert expected in paths


def test_packaged_archives_have_the_upstream_members(tmp_path):
    import tarfile

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("etcd", "etcdctl", "etcdutl"):
        (bindir / name).write_bytes(name.encode())
    stamp = {"component": "etcd", "version": "3.6.8", "pinned": "3.6.9", "substitute": "not served",
             "modules": {"go.etcd.io/etcd/server/v3": "v3.6.8"}, "go": "go1.26.8", "recipe": "ab" * 32,
             "released": "2026-02-13T18:39:11Z", "dir": str(bindir)}
    records, changed = goartifacts.package([stamp], str(tmp_path / "mirror"), {})
    assert changed
    (record,) = records
    assert record["pinned"] == "3.6.9" and record["version"] == "3.6.8" and record["built"]
    with tarfile.open(tmp_path / "mirror" / record["path"]) as archive:
        names = archive.getnames()
        assert names == ["etcd-v3.6.8-linux-amd64", "etcd-v3.6.8-linux-amd64/etcd",
                         "etcd-v3.6.8-linux-amd64/etcdctl", "etcd-v3.6.8-linux-amd64/etcdutl"]
        assert all(member.mtime == 1771007951 for member in archive.getmembers())
    assert (tmp_path / "mirror" / (record["path"] + ".sha256")).read_text().startswith(record["sha256"])
    # a second run with the same stamp writes nothing
    again, changed = goartifacts.package([stamp], str(tmp_path / "mirror"), {record["path"]: record})
    assert not changed and again == [record]


def test_the_flannel_cni_plugin_is_built_from_the_plugin_it_grew_out_of_and_says_so():
    recipe = gobuild.flannel_cni_recipe("1.9.1-flannel1", {})
    assert recipe.modules == {"github.com/containernetworking/plugins": "v0.9.1"}
    assert recipe.programs == {"flannel-cni-plugin": "github.com/containernetworking/plugins/plugins/meta/flannel"}
    assert "github.com/flannel-io/cni-plugin v1.9.1-flannel1 is not served" in recipe.substitute
    name, entrypoint, _user, base = gobuild.IMAGES["flannel-cni-plugin"]
    assert (name, entrypoint, base) == ("ghcr.io/flannel-io/flannel-cni-plugin", ["/flannel"], "busybox")
    assert gobuild.IMAGES["flannel"][3] == "iptables"
