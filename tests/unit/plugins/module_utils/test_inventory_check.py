"""Inventory validation, case by case, on plain data (no Ansible)."""

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import inventory_check as ic

TABLE = {
    "supported_kubernetes_minors": ["1.34", "1.35", "1.36"],
    "default_kubernetes_version": "1.36.4",
    "kubernetes_defaults": {
        m: {"etcd": "3.6.5", "containerd": "2.2.1", "runc": "1.3.3", "cni_plugins": "1.8.0", "crictl": "1.36.0"}
        for m in ("1.34", "1.35", "1.36")
    },
    "components": {
        "kubelet": {"checksums": {"amd64": {"1.36.4": "a" * 64, "1.36.3": "b" * 64, "1.35.8": "c" * 64,
                                            "1.34.11": "d" * 64}}},
        "etcd": {"checksums": {"amd64": {"3.6.5": "e" * 64, "3.5.16": "f" * 64}}},
        "containerd": {"checksums": {"amd64": {"2.2.1": "1" * 64}}},
        "runc": {"checksums": {"amd64": {"1.3.3": "2" * 64}}},
        "cni_plugins": {"checksums": {"amd64": {"1.8.0": "3" * 64}}},
        "crictl": {"checksums": {"amd64": {"1.36.0": "4" * 64}}},
    },
}


def layout(cp=3, workers=2, etcd=None, cluster_vars=None, host_vars=None):
    """A Kubespray-style inventory: control planes cp1..N (etcd on them by default), workers."""
    cps = [f"cp{i}" for i in range(1, cp + 1)]
    wks = [f"worker{i}" for i in range(1, workers + 1)]
    etcd = cps if etcd is None else etcd
    groups = {"kube_control_plane": cps, "kube_node": wks, "etcd": etcd, "k8s_cluster": cps + wks}
    hosts = {}
    for n, name in enumerate(sorted(set(cps + wks + etcd)), start=1):
        hosts[name] = {"ansible_host": f"192.0.2.{n}", **(cluster_vars or {})}
        hosts[name].update((host_vars or {}).get(name, {}))
    return groups, hosts


def check(groups, hosts, table=None):
    errors, _warnings, settings = ic.check_inventory(groups, hosts, TABLE if table is None else table)
    return errors, settings


def test_valid_inventory_resolves_defaults():
    errors, settings = check(*layout())
    assert errors == []
    assert settings["kubeforge_kubernetes_version"] == "1.36.4"
    assert settings["kubeforge_etcd_version"] == "3.6.5"
    assert settings["kubeforge_pod_cidr"] == "10.233.64.0/18"
    assert set(settings) == set(ic.SETTINGS)


def test_tilde_means_default():
    errors, settings = check(*layout(cluster_vars={"kubeforge_pod_cidr": None, "kubeforge_etcd_version": None}))
    assert errors == []
    assert settings["kubeforge_pod_cidr"] == "10.233.64.0/18"
    assert settings["kubeforge_etcd_version"] == "3.6.5"


@pytest.mark.parametrize("name, inventory, expected", [
    ("no control plane", layout(cp=0, etcd=["worker1"], workers=1), "group kube_control_plane: has no host"),
    ("no etcd", layout(etcd=[]), "group etcd: has no host"),
    ("even etcd", layout(cp=2), "group etcd: has 2 members"),
    ("bad pod cidr", layout(cluster_vars={"kubeforge_pod_cidr": "10.233.64.0/33"}), "kubeforge_pod_cidr: '10.233.64.0/33' is not a valid CIDR"),
    ("host bits set", layout(cluster_vars={"kubeforge_service_cidr": "10.233.0.1/18"}),
        "kubeforge_service_cidr: '10.233.0.1/18' is not a valid CIDR"),
    ("overlap", layout(cluster_vars={"kubeforge_pod_cidr": "10.233.0.0/16"}),
        "kubeforge_pod_cidr: 10.233.0.0/16 overlaps kubeforge_service_cidr 10.233.0.0/18"),
    ("pod range has host", layout(cluster_vars={"kubeforge_pod_cidr": "192.0.2.0/24", "kubeforge_node_cidr_mask": 28}),
        "kubeforge_pod_cidr: 192.0.2.0/24 contains the address 192.0.2.1 of host cp1"),
    ("service range has host", layout(cluster_vars={"kubeforge_service_cidr": "192.0.2.0/24"}),
        "kubeforge_service_cidr: 192.0.2.0/24 contains the address"),
    ("pod range too small", layout(workers=5, cluster_vars={"kubeforge_pod_cidr": "10.244.0.0/22"}),
        "holds 4 node ranges of /24, fewer than the 8 hosts"),
    ("mask not longer", layout(cluster_vars={"kubeforge_node_cidr_mask": 18}),
        "kubeforge_node_cidr_mask: /18 is not longer than kubeforge_pod_cidr's /18"),
    ("service range too large", layout(cluster_vars={"kubeforge_service_cidr": "10.96.0.0/11", "kubeforge_pod_cidr": "10.244.0.0/16"}),
        "kubeforge_service_cidr: 10.96.0.0/11 has 21 host bits; kube-apiserver accepts at most 20"),
    ("unsupported version", layout(cluster_vars={"kubeforge_kubernetes_version": "1.31.2"}),
        "kubeforge_kubernetes_version: 1.31.2 is not supported (minor 1.31); supported minors: 1.34, 1.35, 1.36"),
    ("version not a version", layout(cluster_vars={"kubeforge_kubernetes_version": "latest"}),
        "kubeforge_kubernetes_version: 'latest' is not a version"),
    ("unknown patch", layout(cluster_vars={"kubeforge_kubernetes_version": "1.36.99"}),
        "1.36.99 has no known checksum; known 1.36 releases: 1.36.3, 1.36.4"),
    ("unknown runtime", layout(cluster_vars={"kubeforge_container_runtime": "docker"}),
        "kubeforge_container_runtime: 'docker' is not supported; expected one of: containerd"),
    ("unknown network", layout(cluster_vars={"kubeforge_network_plugin": "weave"}),
        "kubeforge_network_plugin: 'weave' is not supported; expected one of: bridge, flannel, none"),
    ("bad endpoint", layout(cluster_vars={"kubeforge_api_endpoint": "https://api.example.com"}),
        "kubeforge_api_endpoint: 'https://api.example.com' is not host:port"),
    ("typo in a setting", layout(cluster_vars={"kubeforge_pod_cidrs": "10.0.0.0/16"}),
        "kubeforge_pod_cidrs: is not a kubeforge setting (set for cp1 and 4 more); did you mean kubeforge_pod_cidr?"),
    ("unknown etcd version", layout(cluster_vars={"kubeforge_etcd_version": "3.4.99"}),
        "kubeforge_etcd_version: 3.4.99 is not in the versions table and has no checksum override"),
    ("bad checksum override", layout(cluster_vars={"kubeforge_download_checksums": {"etcd": {"3.4.23": {"amd64": "abc"}}}}),
        "kubeforge_download_checksums.etcd.3.4.23.amd64: 'abc' is not a sha256"),
    ("bad cluster name", layout(cluster_vars={"kubeforge_cluster_name": "My_Cluster"}),
        "kubeforge_cluster_name: 'My_Cluster' is not a lowercase RFC 1123 label"),
    ("bad mirror", layout(cluster_vars={"kubeforge_files_mirror": "ftp://x"}),
        "kubeforge_files_mirror: 'ftp://x' is neither an http(s) URL nor an absolute directory"),
    ("offline images without a bundle", layout(cluster_vars={"kubeforge_offline_images": True}),
        "kubeforge_offline_images: is true, but kubeforge_files_mirror names no bundle to import from"),
    ("offline images without a digest", layout(cluster_vars={
        "kubeforge_offline_images": True, "kubeforge_files_mirror": "/srv/bundle",
        "kubeforge_images": {"coredns": {"tag": "v1.14.3"}}}),
        "kubeforge_images.coredns: has no digest, and kubeforge_offline_images imports images checked by digest"),
])
def test_rejected(name, inventory, expected):
    errors, _settings = check(*inventory)
    assert any(expected in e for e in errors), f"{name}: {expected!r} not in {errors}"


def test_host_name_not_rfc1123():
    groups, hosts = layout(cp=1, workers=1)
    groups = {g: [h.replace("worker1", "Worker_1") for h in m] for g, m in groups.items()}
    hosts["Worker_1"] = hosts.pop("worker1")
    errors, _settings = check(groups, hosts)
    assert errors == ["host Worker_1: name is not a lowercase RFC 1123 name (Kubernetes uses it as the node name); "
                      "use lowercase letters, digits, '-' and '.', e.g. worker-1"]


def test_duplicate_address():
    groups, hosts = layout(cp=1, workers=2)
    hosts["worker2"]["ansible_host"] = hosts["worker1"]["ansible_host"]
    errors, _settings = check(groups, hosts)
    assert errors == [f"hosts worker1, worker2: share the address {hosts['worker1']['ansible_host']}; "
                      "give each host its own ansible_host or ip"]


def test_ip_wins_over_ansible_host_for_duplicates():
    groups, hosts = layout(cp=1, workers=2)
    hosts["worker1"]["ip"] = "10.0.0.5"
    hosts["worker2"]["ip"] = "10.0.0.5"
    errors, _settings = check(groups, hosts)
    assert any("share the address 10.0.0.5" in e for e in errors)


def test_invalid_ip():
    groups, hosts = layout(cp=1, workers=1)
    hosts["worker1"]["ip"] = "10.0.0.300"
    errors, _settings = check(groups, hosts)
    assert errors == ["host worker1: ip '10.0.0.300' is not an IP address; expected e.g. 192.0.2.11"]


def test_host_missing_from_k8s_cluster():
    groups, hosts = layout(cp=1, workers=2)
    groups["k8s_cluster"] = ["cp1", "worker1"]
    errors, _settings = check(groups, hosts)
    assert "host worker2: is in kube_node but not in k8s_cluster; make kube_node a child group of k8s_cluster" in errors


def test_even_etcd_allowed_explicitly():
    errors, _settings = check(*layout(cp=2, cluster_vars={"kubeforge_etcd_allow_even_members": True}))
    assert errors == []


def test_setting_differs_between_hosts():
    errors, _settings = check(*layout(cp=1, workers=1, host_vars={"worker1": {"kubeforge_pod_cidr": "10.1.0.0/16"}}))
    assert len(errors) == 1 and errors[0].startswith("kubeforge_pod_cidr: differs between hosts")


def test_every_error_at_once():
    inventory = layout(cp=2, cluster_vars={
        "kubeforge_pod_cidr": "bad", "kubeforge_network_plugin": "weave", "kubeforge_kubernetes_version": "1.20.0"})
    errors, _settings = check(*inventory)
    assert len(errors) == 4, errors
    for expected in ("kubeforge_pod_cidr: 'bad'", "kubeforge_network_plugin: 'weave'",
                     "kubeforge_kubernetes_version: 1.20.0 is not supported", "group etcd: has 2 members"):
        assert any(e.startswith(expected) for e in errors), expected


def test_checksum_override_makes_version_usable():
    override = {"etcd": {"3.4.23": {"amd64": "sha256:" + "0" * 64}}}
    errors, settings = check(*layout(cluster_vars={"kubeforge_etcd_version": "3.4.23",
                                                   "kubeforge_download_checksums": override}))
    assert errors == []
    assert settings["kubeforge_etcd_version"] == "3.4.23"


def test_ipv6_ranges():
    ipv6 = {"kubeforge_pod_cidr": "fd00:10:244::/56", "kubeforge_node_cidr_mask": 64}
    errors, _settings = check(*layout(cluster_vars=dict(ipv6, kubeforge_service_cidr="fd00:10:96::/108")))
    assert errors == []
    errors, _settings = check(*layout(cluster_vars=dict(ipv6, kubeforge_service_cidr="fd00:10:96::/64")))
    assert any("kubeforge_service_cidr: fd00:10:96::/64 has 64 host bits" in e for e in errors)


@pytest.mark.parametrize("name, ok", [
    ("node-1", True), ("a", True), ("a.b-c.d", True), ("Node1", False), ("node_1", False), ("-node", False),
    ("node-", False), ("a" * 64, False), ("a" * 63, True), ("", False),
])
def test_rfc1123(name, ok):
    assert ic.is_rfc1123_name(name) is ok
