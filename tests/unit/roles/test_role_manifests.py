"""The objects of the addons role and of the network role's flannel, rendered by Ansible from the
roles' own templates and variables, and validated against the Kubernetes OpenAPI schemas of every supported minor (kubernetes-validate,
strict: an unknown field is an error), offline. The rendering is checked with every ansible-core
the unit tests run with; the schemas are in the newest one's virtual environment."""

import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "addons")
NETWORK_ROLE = os.path.join(ROOT, "roles", "network")
with open(os.path.join(ROOT, "versions.yml"), encoding="utf-8") as _handle:
    MINORS = yaml.safe_load(_handle)["__download_supported_kubernetes_minors"]
with open(os.path.join(ROOT, "images.yml"), encoding="utf-8") as _handle:
    IMAGES = yaml.safe_load(_handle)["images"]

BASE = {"kubeforge_service_cidr": "10.233.0.0/18", "kubeforge_cluster_domain": "cluster.local",
        "kubeforge_network_plugin": "bridge", "kubeforge_images": {}}
CASES = {
    "defaults": {},
    "changed": {"addons_dns_upstreams": ["192.0.2.53", "[2001:db8::53]:53"], "addons_coredns_replicas": 3,
                "addons_local_path_default_class": False, "addons_local_path_dir": "/srv/volumes",
                "kubeforge_cluster_domain": "example.internal", "kubeforge_service_cidr": "10.96.0.0/12",
                "kubeforge_images": {"coredns": {"name": "registry.example.com/coredns/coredns", "tag": "v1.14.2"},
                                     "metrics_server": {"tag": "v0.8.1"}}},
    "only_coredns": {"addons_metrics_server_enabled": False, "addons_local_path_enabled": False},
}
ADDONS_EXPRESSION = ("{'definitions': __addons_definitions, 'enabled': __addons_enabled, "
                     "'disabled': __addons_disabled}")
FLANNEL_BASE = {"kubeforge_pod_cidr": "10.233.64.0/18", "kubeforge_images": {}}
FLANNEL_CASES = {
    "defaults": {},
    "changed": {"kubeforge_pod_cidr": "10.244.0.0/16", "network_flannel_vni": 4096, "network_flannel_port": 4789,
                "kubeforge_images": {"flannel": {"name": "registry.example.com/flannel", "tag": "v0.28.4"}}},
}


def render(overrides, out, role=ROLE, expression=ADDONS_EXPRESSION, base=None):
    """What the role would apply: its variables as Ansible resolves them, from the role directory
    (where its template lookups look), written as JSON to ``out``."""
    extra = dict(BASE if base is None else base, role_path=role, render_out=str(out), **overrides)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_LOCALHOST_WARNING="false")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
               "-m", "ansible.builtin.copy",
               "-a", "dest={{ render_out }} content={{ %s | to_json }}" % expression,
               "-e", "@" + os.path.join(role, "defaults", "main.yml"),
               "-e", "@" + os.path.join(role, "vars", "main.yml"),
               "-e", json.dumps(extra)]
    proc = subprocess.run(command, cwd=role, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    work = tmp_path_factory.mktemp("addons")
    return {name: render(overrides, work / f"{name}.json") for name, overrides in CASES.items()}


@pytest.fixture(scope="module")
def flannel(tmp_path_factory):
    work = tmp_path_factory.mktemp("flannel")
    return {name: render(overrides, work / f"{name}.json", role=NETWORK_ROLE, base=FLANNEL_BASE,
                         expression="{'definitions': __network_flannel_definitions}")
            for name, overrides in FLANNEL_CASES.items()}


def _by_kind(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("minor", MINORS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_for_every_supported_minor(rendered, flannel, case, minor):
    # in the newest virtual environment only (requirements/test.txt); the rest runs with both
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = rendered[case]["definitions"] + flannel.get(case, {"definitions": []})["definitions"]
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, f"{minor}.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{case}, Kubernetes {minor}: {obj['kind']} {obj['metadata']['name']}: {exc.message}")


def test_every_object_carries_its_addon_label(rendered):
    objects = rendered["defaults"]["definitions"]
    addons = {o["metadata"]["labels"]["kubeforge.io/addon"] for o in objects}
    assert addons == {"coredns", "metrics-server", "local-path"}
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubeforge" for o in objects)


def test_defaults_pin_every_image_by_digest(rendered):
    images = sorted({c["image"] for o in rendered["defaults"]["definitions"] if o["kind"] == "Deployment"
                     for c in o["spec"]["template"]["spec"]["containers"]})
    wanted = sorted(f"{IMAGES[k]['name']}:{IMAGES[k]['tag']}@{IMAGES[k]['digest']}"
                    for k in ("coredns", "metrics_server", "local_path"))
    assert images == wanted
    config = _by_kind(rendered["defaults"]["definitions"])[("ConfigMap", "local-path-config")]
    helper = IMAGES["local_path_helper"]
    assert f"image: {helper['name']}:{helper['tag']}@{helper['digest']}" in config["data"]["helperPod.yaml"]


def test_coredns_serves_the_dns_address_with_a_disruption_budget(rendered):
    objects = _by_kind(rendered["defaults"]["definitions"])
    assert objects[("Service", "kube-dns")]["spec"]["clusterIP"] == "10.233.0.10"
    assert objects[("Deployment", "coredns")]["spec"]["replicas"] == 2
    assert objects[("PodDisruptionBudget", "coredns")]["spec"]["minAvailable"] == 1
    corefile = objects[("ConfigMap", "coredns")]["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert "forward . /etc/resolv.conf" in corefile


def test_settings_reach_the_objects(rendered):
    objects = _by_kind(rendered["changed"]["definitions"])
    assert objects[("Service", "kube-dns")]["spec"]["clusterIP"] == "10.96.0.10"
    assert objects[("Deployment", "coredns")]["spec"]["replicas"] == 3
    corefile = objects[("ConfigMap", "coredns")]["data"]["Corefile"]
    assert "forward . 192.0.2.53 [2001:db8::53]:53" in corefile
    assert "kubernetes example.internal in-addr.arpa" in corefile
    pod = objects[("Deployment", "coredns")]["spec"]["template"]
    # a new Corefile rolls the pods, so that no pod keeps the old one
    defaults = _by_kind(rendered["defaults"]["definitions"])[("Deployment", "coredns")]["spec"]["template"]
    assert pod["metadata"]["annotations"] != defaults["metadata"]["annotations"]
    # a name without digest drops the table's digest, which belongs to the table's name
    assert pod["spec"]["containers"][0]["image"] == "registry.example.com/coredns/coredns:v1.14.2"
    metrics = objects[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["containers"][0]
    assert metrics["image"] == f"{IMAGES['metrics_server']['name']}:v0.8.1"
    storage = objects[("StorageClass", "local-path")]
    assert storage["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "false"
    config = json.loads(objects[("ConfigMap", "local-path-config")]["data"]["config.json"])
    assert config["nodePathMap"][0]["paths"] == ["/srv/volumes"]


@pytest.mark.parametrize("deployment", ["coredns", "metrics-server", "local-path-provisioner"])
def test_every_addon_runs_on_a_cluster_of_control_planes_only(rendered, deployment):
    pod = _by_kind(rendered["defaults"]["definitions"])[("Deployment", deployment)]["spec"]["template"]["spec"]
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"], pod["tolerations"]


def test_metrics_server_verifies_the_kubelets(rendered):
    deployment = _by_kind(rendered["defaults"]["definitions"])[("Deployment", "metrics-server")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-certificate-authority=/etc/kubernetes/cluster-ca/ca.crt" in args
    assert not any(a.startswith("--kubelet-insecure-tls") for a in args)


def test_only_the_enabled_addons_are_rendered_and_the_others_removed(rendered):
    case = rendered["only_coredns"]
    assert case["enabled"] == ["coredns"] and case["disabled"] == ["metrics-server", "local-path"]
    assert {o["metadata"]["labels"]["kubeforge.io/addon"] for o in case["definitions"]} == {"coredns"}


def test_every_kind_rendered_is_one_the_removal_looks_through(rendered):
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as handle:
        kinds = {(k["apiVersion"], k["kind"]) for k in yaml.safe_load(handle)["__addons_kinds"]}
    assert {(o["apiVersion"], o["kind"]) for o in rendered["defaults"]["definitions"]} <= kinds


def test_flannel_carries_its_network_label_and_pinned_images(flannel):
    objects = flannel["defaults"]["definitions"]
    assert {o["metadata"]["labels"]["kubeforge.io/network"] for o in objects} == {"flannel"}
    with open(os.path.join(NETWORK_ROLE, "vars", "main.yml"), encoding="utf-8") as handle:
        kinds = {(k["apiVersion"], k["kind"]) for k in yaml.safe_load(handle)["__network_flannel_kinds"]}
    assert {(o["apiVersion"], o["kind"]) for o in objects} == kinds
    pod = _by_kind(objects)[("DaemonSet", "kube-flannel")]["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in pod["initContainers"] + pod["containers"]}
    reference = {k: f"{IMAGES[k]['name']}:{IMAGES[k]['tag']}@{IMAGES[k]['digest']}" for k in ("flannel", "flannel_cni_plugin")}
    assert images == {"install-cni-plugin": reference["flannel_cni_plugin"], "install-cni": reference["flannel"],
                      "kube-flannel": reference["flannel"]}
    assert pod["hostNetwork"] is True and pod["tolerations"] == [{"operator": "Exists"}]
    assert "--kube-subnet-mgr" in pod["containers"][0]["args"]


def test_flannel_settings_reach_its_configuration(flannel):
    def net_conf(case):
        config = _by_kind(flannel[case]["definitions"])[("ConfigMap", "kube-flannel-cfg")]["data"]
        cni = json.loads(config["cni-conf.json"])
        assert [p["type"] for p in cni["plugins"]] == ["flannel", "portmap"]
        return json.loads(config["net-conf.json"])

    assert net_conf("defaults") == {"Network": "10.233.64.0/18", "EnableNFTables": False,
                                    "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    assert net_conf("changed") == {"Network": "10.244.0.0/16", "EnableNFTables": False,
                                   "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789}}
    # a changed configuration rolls flanneld on every node
    annotations = [_by_kind(flannel[case]["definitions"])[("DaemonSet", "kube-flannel")]["spec"]["template"]
                   ["metadata"]["annotations"] for case in ("defaults", "changed")]
    assert annotations[0] != annotations[1]
    pod = _by_kind(flannel["changed"]["definitions"])[("DaemonSet", "kube-flannel")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/flannel:v0.28.4"
