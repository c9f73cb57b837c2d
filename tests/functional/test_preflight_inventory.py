"""Bad inventories are rejected by the real install playbook before any host is contacted.

Every case runs ``ansible-playbook playbooks/install.yml`` for real. The hosts do not exist, and
SSH is replaced by a program that records any attempt to reach a host, so "no host contacted"
is checked, not assumed. The cases run in parallel, once, in a module-scoped fixture.
"""

import concurrent.futures
import copy
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASE_HOSTS = {
    "cp1": {"ansible_host": "192.0.2.11"},
    "cp2": {"ansible_host": "192.0.2.12"},
    "cp3": {"ansible_host": "192.0.2.13"},
    "worker1": {"ansible_host": "192.0.2.21"},
    "worker2": {"ansible_host": "192.0.2.22"},
}
BASE_GROUPS = {
    "kube_control_plane": ["cp1", "cp2", "cp3"],
    "etcd": ["cp1", "cp2", "cp3"],
    "kube_node": ["worker1", "worker2"],
}


def inventory(cluster_vars=None, hosts=None, groups=None, k8s_children=("kube_control_plane", "kube_node")):
    hosts = copy.deepcopy(BASE_HOSTS if hosts is None else hosts)
    groups = copy.deepcopy(BASE_GROUPS if groups is None else groups)
    children = {g: {"hosts": {h: None for h in members}} for g, members in groups.items()}
    children["k8s_cluster"] = {"children": {c: None for c in k8s_children}}
    return {"all": {"hosts": hosts, "vars": dict(cluster_vars or {}), "children": children}}


def renamed(old, new):
    hosts = copy.deepcopy(BASE_HOSTS)
    hosts[new] = hosts.pop(old)
    groups = {g: [new if h == old else h for h in m] for g, m in BASE_GROUPS.items()}
    return inventory(hosts=hosts, groups=groups)


def same_address():
    hosts = copy.deepcopy(BASE_HOSTS)
    hosts["worker2"]["ansible_host"] = hosts["worker1"]["ansible_host"]
    return inventory(hosts=hosts)


# name -> (inventory, text the failure must contain)
BAD = {
    "no_control_plane": (inventory(groups={"kube_control_plane": [], "etcd": ["worker1"], "kube_node": ["worker1", "worker2"]}),
                         "group kube_control_plane: has no host"),
    "no_etcd": (inventory(groups={**BASE_GROUPS, "etcd": []}), "group etcd: has no host"),
    "even_etcd": (inventory(groups={**BASE_GROUPS, "etcd": ["cp1", "cp2"]}), "group etcd: has 2 members"),
    "invalid_pod_cidr": (inventory({"kubeforge_pod_cidr": "10.233.64.0/40"}), "kubeforge_pod_cidr: '10.233.64.0/40' is not a valid CIDR"),
    "invalid_service_cidr": (inventory({"kubeforge_service_cidr": "not-a-range"}), "kubeforge_service_cidr: 'not-a-range' is not a valid CIDR"),
    "ranges_overlap": (inventory({"kubeforge_pod_cidr": "10.233.0.0/16"}),
                       "kubeforge_pod_cidr: 10.233.0.0/16 overlaps kubeforge_service_cidr 10.233.0.0/18"),
    "pod_range_holds_host": (inventory({"kubeforge_pod_cidr": "192.0.2.0/24", "kubeforge_node_cidr_mask": 28}),
                             "kubeforge_pod_cidr: 192.0.2.0/24 contains the address 192.0.2.11 of host cp1"),
    "pod_range_too_small": (inventory({"kubeforge_pod_cidr": "10.244.0.0/22"}),
                            "kubeforge_pod_cidr: 10.244.0.0/22 holds 4 node ranges of /24, fewer than the 5 hosts in k8s_cluster"),
    "node_mask_too_short": (inventory({"kubeforge_node_cidr_mask": 16}), "kubeforge_node_cidr_mask: /16 is not longer than kubeforge_pod_cidr's /18"),
    "service_range_too_large": (inventory({"kubeforge_service_cidr": "10.0.0.0/8", "kubeforge_pod_cidr": "172.16.0.0/16"}),
                                "kubeforge_service_cidr: 10.0.0.0/8 has 24 host bits; kube-apiserver accepts at most 20"),
    "unsupported_kubernetes": (inventory({"kubeforge_kubernetes_version": "1.29.4"}),
                               "kubeforge_kubernetes_version: 1.29.4 is not supported (minor 1.29)"),
    "host_name_uppercase": (renamed("worker2", "Worker2"), "host Worker2: name is not a lowercase RFC 1123 name"),
    "host_name_underscore": (renamed("worker1", "worker_1"), "host worker_1: name is not a lowercase RFC 1123 name"),
    "same_address": (same_address(), "hosts worker1, worker2: share the address 192.0.2.21"),
    "unknown_runtime": (inventory({"kubeforge_container_runtime": "docker"}),
                        "kubeforge_container_runtime: 'docker' is not supported; expected one of: containerd"),
    "unknown_network_plugin": (inventory({"kubeforge_network_plugin": "weave"}), "kubeforge_network_plugin: 'weave' is not supported"),
    "node_not_in_k8s_cluster": (inventory(k8s_children=("kube_control_plane",)), "host worker1: is in kube_node but not in k8s_cluster"),
    "control_plane_not_in_k8s_cluster": (inventory(k8s_children=("kube_node",)), "host cp1: is in kube_control_plane but not in k8s_cluster"),
    "misspelled_setting": (inventory({"kubeforge_servce_cidr": "10.96.0.0/12"}),
                           "kubeforge_servce_cidr: is not a kubeforge setting (set for cp1 and 4 more); did you mean kubeforge_service_cidr?"),
    "bad_api_endpoint": (inventory({"kubeforge_api_endpoint": "api.example.com"}), "kubeforge_api_endpoint: 'api.example.com' is not host:port"),
    "misspelled_apiserver_flag": (inventory({"control_plane_apiserver_flags": {"profilng": False}}),
                                  "control_plane_apiserver_flags.profilng: is not a flag of kube-apiserver"),
    "unknown_kubelet_config_key": (inventory({"node_kubelet_config": {"readOnlyPrt": 0}}),
                                   "unknown field .readOnlyPrt; did you mean readOnlyPort?"),
    "unknown_kube_proxy_config_key": (inventory({"node_kube_proxy_config": {"conntrack": {"maxPerCor": 0}}}),
                                      "unknown field .conntrack.maxPerCor; did you mean maxPerCore?"),
    "unknown_feature_gate": (inventory({"control_plane_feature_gates": {"NoSuchGate": True}}),
                             "control_plane_feature_gates.NoSuchGate: is not a feature gate of Kubernetes"),
    "misspelled_addon_setting": (inventory({"addons_metrics_server_enable": False}),
                                 "addons_metrics_server_enable (on cp1, cp2, cp3 and 2 more): is not a setting of the "
                                 "addons role; did you mean addons_metrics_server_enabled"),
    "dns_upstream_not_an_address": (inventory({"addons_dns_upstreams": ["dns.example.com"]}),
                                    "'dns.example.com' is not an IP address"),
    "image_override_without_tag_or_digest": (inventory({"kubeforge_images": {"coredns": {"name": "registry.example.com/coredns"}}}),
                                             "kubeforge_images.coredns: gives neither a tag nor a digest"),
    "unknown_image": (inventory({"kubeforge_images": {"kube-dns": {"tag": "1.0"}}}),
                      "kubeforge_images.kube-dns: is not an image the collection deploys; expected one of: coredns,"),
    "admission_undoes_pod_security": (inventory({"control_plane_admission_plugins": ["NodeRestriction", "AlwaysAdmit"]}),
                                      "AlwaysAdmit admits every request"),
    "extra_san_not_a_name": (inventory({"pki_apiserver_extra_sans": ["api example.com"]}),
                             "'api example.com' is neither an IP address nor a lowercase DNS name"),
}

# Several errors in one inventory: all of them are reported in one run.
MANY = (inventory({"kubeforge_pod_cidr": "10.233.0.0/16", "kubeforge_network_plugin": "weave",
                   "kubeforge_kubernetes_version": "1.20.1"}, groups={**BASE_GROUPS, "etcd": ["cp1", "cp2"]}),
        ["overlaps kubeforge_service_cidr", "kubeforge_network_plugin: 'weave'",
         "kubeforge_kubernetes_version: 1.20.1 is not supported", "group etcd: has 2 members"])


def run_case(name, data, workdir):
    case = os.path.join(workdir, name)
    inv_dir = os.path.join(case, "inventory")
    os.makedirs(inv_dir)
    marker = os.path.join(case, "contacted")
    fake_ssh = os.path.join(case, "fake-ssh")
    with open(fake_ssh, "w", encoding="utf-8") as handle:
        handle.write(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 255\n")
    os.chmod(fake_ssh, 0o755)
    data = copy.deepcopy(data)
    data["all"]["vars"]["ansible_ssh_executable"] = fake_ssh
    data["all"]["vars"]["ansible_connection"] = "ssh"
    with open(os.path.join(inv_dir, "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCAL_TEMP=os.path.join(case, "tmp"))
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([ansible_playbook, "-i", inv_dir, "playbooks/install.yml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "contacted": os.path.exists(marker)}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("preflight"))
    cases = {name: data for name, (data, _text) in BAD.items()}
    cases["many_errors"] = MANY[0]
    cases["valid_but_unreachable"] = inventory()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_case, name, data, workdir) for name, data in cases.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inventory_rejected_before_any_host(results, name):
    result = results[name]
    expected = BAD[name][1]
    assert result["rc"] != 0, result["out"]
    assert "Inventory check found" in result["out"], result["out"]
    assert expected in result["out"], f"{expected!r} missing:\n{result['out']}"
    assert not result["contacted"], f"{name}: a host was contacted"


def test_all_errors_reported_at_once(results):
    result = results["many_errors"]
    assert "Inventory check found 4 errors" in result["out"], result["out"]
    for text in MANY[1]:
        assert text in result["out"], text
    assert not result["contacted"]


def test_valid_inventory_passes_part_one_and_fails_only_on_connecting(results):
    result = results["valid_but_unreachable"]
    assert "Inventory check found" not in result["out"], result["out"]
    assert "(no host is contacted)] ***\nok: [cp1]" in result["out"], result["out"]
    published = result["out"].split("Publish the resolved cluster settings to every host]", 1)[1].split("TASK [", 1)[0]
    assert all(f"ok: [{host}]" in published for host in BASE_HOSTS), published
    assert result["contacted"], "the host checks should have tried to connect"
    assert "UNREACHABLE" in result["out"], result["out"]
    assert result["rc"] != 0
