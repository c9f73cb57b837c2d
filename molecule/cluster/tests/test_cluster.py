# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The cluster install.yml made, checked from the nodes themselves (podman exec), in order.

Each test prints what it saw (``[cluster] ...`` lines): the verify output of the scenario.
"""

import json
import os
import re
import shlex
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "etcd", "tests"))
from etcdtest import MIRROR_VARS, Bed  # noqa: E402

CLUSTER = "mol-cluster"
ADMIN = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
IMAGE = "docker.io/library/busybox:testbed"


def report(text):
    print(f"\n[cluster] {text}")


@pytest.fixture(scope="module")
def bed():
    return Bed(CLUSTER, layout=None)


@pytest.fixture(scope="module")
def hosts(bed):
    return bed.hosts()[0]


@pytest.fixture(scope="module")
def cps(hosts):
    return sorted(h for h in hosts if "-cp" in h)


@pytest.fixture(scope="module")
def workers(hosts):
    return sorted(h for h in hosts if "-w" in h)


def kubectl(bed, node, args, check=True, timeout=120):
    return bed.sh(node, f"{ADMIN} {args}", check=check, timeout=timeout)


def wait(what, probe, timeout=180, interval=2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}; last: {last!r}")


# HTTPS from a node with Python's ssl (the nodes have no curl): prints the status, then the body.
HTTPS_PROBE = """
import ssl, sys, urllib.error, urllib.request
url, ca, cert, key = (sys.argv[1:] + ["", "", ""])[:4]
context = ssl.create_default_context(cafile=ca)
if cert:
    context.load_cert_chain(cert, key)
try:
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        status, body = answer.status, answer.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(status)
print(body.decode("utf-8", "replace"))
"""
CA = "/etc/kubernetes/pki/ca.crt"


def https(bed, node, url, cert="", key=""):
    """(status, body) of a GET from ``node``, verifying the server against the cluster CA."""
    args = " ".join(shlex.quote(a) for a in (url, CA, cert, key) if a)
    out = bed.sh(node, f"python3 - {args} <<'EOF'\n{HTTPS_PROBE}\nEOF")[1]
    status, _, body = out.partition("\n")
    return int(status), body


def forget_ssh_connection(bed, node):
    """Close the controller's shared SSH connection to a node that was restarted: the old one is dead,
    and Ansible would try to reuse it until its ControlPersist ran out."""
    import hashlib
    import subprocess

    address = bed.hosts()[0][node]["ip"]
    directory = os.path.expanduser("~/.ansible/cp")
    for port in (None, 22, "22"):
        path = os.path.join(directory, hashlib.sha1(f"{address}-{port}-root".encode()).hexdigest()[:10])
        if os.path.exists(path):
            subprocess.run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", f"root@{address}"], capture_output=True)
            if os.path.exists(path):
                os.unlink(path)


def mirror_vars():
    import yaml

    with open(MIRROR_VARS, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["vars"]


# -- the cluster as installed ---------------------------------------------------------------------


def test_every_node_is_ready_with_the_pinned_version(bed, cps, hosts):
    version = mirror_vars()["testbed_versions"]["kubernetes"]
    nodes = json.loads(kubectl(bed, cps[0], "get nodes -o json")[1])["items"]
    ready = {n["metadata"]["name"]: {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] for n in nodes}
    assert ready == {host: "True" for host in hosts}
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {f"v{version}"}
    for node in nodes:
        labels, taints = node["metadata"].get("labels", {}), node["spec"].get("taints", [])
        control = "-cp" in node["metadata"]["name"]
        assert ("node-role.kubernetes.io/control-plane" in labels) is control
        assert any(t["key"] == "node-role.kubernetes.io/control-plane" and t["effect"] == "NoSchedule"
                   for t in taints) is control
        assert node["spec"]["podCIDR"].startswith("10.233.")
    report("kubectl get nodes -o wide\n" + kubectl(bed, cps[0], "get nodes -o wide")[1])


def test_every_api_server_is_ready(bed, cps, hosts):
    for cp in cps:
        out = kubectl(bed, cp, f"--server https://{hosts[cp]['ip']}:6443 get --raw '/readyz?verbose'")[1]
        assert "readyz check passed" in out and "[+]etcd ok" in out
    report(f"/readyz?verbose passed on {', '.join(cps)}")


def test_controller_manager_and_scheduler_hold_their_leases(bed, cps):
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = kubectl(bed, cps[0], f"-n kube-system get lease {lease} -o jsonpath='{{.spec.holderIdentity}}'")[1]
        assert any(holder.startswith(cp + "_") for cp in cps), holder
        report(f"lease {lease}: {holder}")


# -- a workload on every node ---------------------------------------------------------------------

SPREAD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "spread", "namespace": "default"},
    "spec": {
        "replicas": 5,
        "selector": {"matchLabels": {"app": "spread"}},
        "template": {
            "metadata": {"labels": {"app": "spread"}},
            "spec": {
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "DoNotSchedule",
                                               "labelSelector": {"matchLabels": {"app": "spread"}}}],
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "mkdir -p /tmp/www && hostname > /tmp/www/index.html && "
                                            "echo serving on $(hostname) && exec httpd -f -p 8080 -h /tmp/www"],
                    "ports": [{"containerPort": 8080}],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "runAsNonRoot": True, "runAsUser": 65534,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                }],
            },
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "spread", "namespace": "default"},
           "spec": {"selector": {"app": "spread"}, "ports": [{"port": 80, "targetPort": 8080}]}}


@pytest.fixture(scope="module")
def spread(bed, cps, hosts):
    url = mirror_vars()["kubeforge_files_mirror"] + "/testbed/images/busybox-testbed.oci.tar"
    for host in hosts:
        bed.sh(host, f"python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "
                     f"{shlex.quote(url)} /tmp/busybox.tar && ctr -n k8s.io images import /tmp/busybox.tar >/dev/null")
    # from scratch, so that no pod of an earlier run counts in the spread or in the lists below
    kubectl(bed, cps[0], "delete deployment spread --ignore-not-found --wait=true", timeout=200)
    wait("the pods of an earlier run to be gone",
         lambda: not json.loads(kubectl(bed, cps[0], "get pods -l app=spread -o json")[1])["items"], timeout=120)
    for document in (SPREAD, SERVICE):
        bed.sh(cps[0], f"{ADMIN} apply -f - <<'EOF'\n{json.dumps(document)}\nEOF")
    kubectl(bed, cps[0], "rollout status deployment/spread --timeout=180s", timeout=200)
    pods = json.loads(kubectl(bed, cps[0], "get pods -l app=spread -o json")[1])["items"]
    return {p["spec"]["nodeName"]: {"name": p["metadata"]["name"], "ip": p["status"]["podIP"]}
            for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}


def test_the_workload_runs_on_every_node(spread, hosts, bed, cps):
    assert sorted(spread) == sorted(hosts)
    report("kubectl get pods -l app=spread -o wide\n" + kubectl(bed, cps[0], "get pods -l app=spread -o wide")[1])


def test_pods_reach_each_other_across_nodes(bed, cps, spread):
    nodes = sorted(spread)
    for index, node in enumerate(nodes):
        other = nodes[(index + 1) % len(nodes)]
        target = spread[other]
        out = kubectl(bed, cps[0], f"exec {spread[node]['name']} -- timeout 5 wget -q -O - http://{target['ip']}:8080/")[1]
        assert out.strip() == target["name"], (node, other, out)
    report(f"pod-to-pod: each of {len(nodes)} pods reached the pod on the next node (kubectl exec + wget)")


def test_flannel_carries_pod_traffic_between_nodes_over_vxlan(bed, cps, spread, hosts):
    daemonset = json.loads(kubectl(bed, cps[0], "-n kube-system get daemonset kube-flannel -o json")[1])
    assert daemonset["status"]["numberReady"] == len(hosts), daemonset["status"]
    nodes = sorted(spread)
    for index, node in enumerate(nodes):
        device = bed.sh(node, "ip -d link show flannel.1")[1]
        assert re.search(r"vxlan id 1 .*dstport 8472", device), (node, device)
        other = spread[nodes[(index + 1) % len(nodes)]]["ip"]
        assert " dev flannel.1 " in bed.sh(node, f"ip -4 route get {other}")[1] + " ", node
        assert bed.sh(node, "ip -4 route show proto 77")[1].strip() == "", node  # no bridge routes
        assert bed.sh(node, "ls /etc/cni/net.d")[1].split() == ["10-flannel.conflist"], node
    route = bed.sh(nodes[0], f"ip -4 route get {spread[nodes[1]]['ip']}")[1].strip().splitlines()[0]
    report(f"flannel: kube-flannel ready on {daemonset['status']['numberReady']} nodes, flannel.1 (vxlan id 1, "
           f"port 8472) on each; {nodes[0]}: {route}")


def test_a_cluster_ip_service_is_reached_from_every_node(bed, cps, spread):
    ip = kubectl(bed, cps[0], "get service spread -o jsonpath='{.spec.clusterIP}'")[1].strip()
    answers = set()

    def ask(pod):
        rc, out = bed.sh(cps[0], f"{ADMIN} exec {pod} -- timeout 5 wget -q -O - http://{ip}/", check=False)
        return out.strip() if rc == 0 else ""

    for node, pod in sorted(spread.items()):
        answers.add(wait(f"service {ip} from {node}", lambda: ask(pod["name"]), timeout=60))
    report(f"service spread {ip}: answered by {sorted(answers)} from pods on {len(spread)} nodes")
    assert answers <= {p["name"] for p in spread.values()}


def test_logs_come_through_the_api_server(bed, cps, spread):
    for node, pod in sorted(spread.items()):
        log = kubectl(bed, cps[0], f"logs {pod['name']}")[1].strip()
        assert log == f"serving on {pod['name']}"
    report(f"kubectl logs: {len(spread)} pods, e.g. '{log}'")


# -- addons ------------------------------------------------------------------------------------------


def test_cluster_dns_answers_from_pods_on_every_node(bed, cps, spread):
    kubernetes_ip = kubectl(bed, cps[0], "get service kubernetes -o jsonpath='{.spec.clusterIP}'")[1].strip()

    def ask(pod, command):
        rc, out = bed.sh(cps[0], f"{ADMIN} exec {pod} -- {command}", check=False)
        return out if rc == 0 else ""

    for node, pod in sorted(spread.items()):
        answer = wait(f"cluster DNS from {node}",
                      lambda: ask(pod["name"], "timeout 5 nslookup kubernetes.default.svc.cluster.local"), timeout=90)
        assert kubernetes_ip in answer, answer
        # the short name, through the pod's search path, then the Service behind it
        served = wait(f"http://spread/ from {node}", lambda: ask(pod["name"], "timeout 5 wget -q -O - http://spread/"),
                      timeout=60)
        assert served.strip() in {p["name"] for p in spread.values()}, served
    pods = json.loads(kubectl(bed, cps[0], "-n kube-system get pods -l k8s-app=kube-dns -o json")[1])["items"]
    nodes = sorted(p["spec"]["nodeName"] for p in pods if p["status"].get("phase") == "Running")
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    pdb = json.loads(kubectl(bed, cps[0], "-n kube-system get pdb coredns -o json")[1])
    assert pdb["status"]["disruptionsAllowed"] == 1, pdb["status"]
    report(f"cluster DNS: kubernetes.default.svc.cluster.local = {kubernetes_ip} and http://spread/ answered from pods "
           f"on {len(spread)} nodes; CoreDNS pods on {', '.join(nodes)}, PodDisruptionBudget allows "
           f"{pdb['status']['disruptionsAllowed']} disruption")


RESOLVE_LOOP = ("ok=0; fail=0; end=$(( $(date +%s) + {seconds} )); while [ $(date +%s) -lt $end ]; do "
                "if timeout 3 nslookup kubernetes.default.svc.cluster.local >/dev/null 2>&1; then ok=$((ok+1)); "
                "else fail=$((fail+1)); fi; sleep 0.2; done; echo $ok $fail")


def test_killing_one_coredns_pod_does_not_stop_resolution(bed, cps, spread):
    pod = spread[sorted(spread)[0]]["name"]
    counts = {}

    def resolve():
        command = shlex.quote(RESOLVE_LOOP.format(seconds=30))
        counts["out"] = kubectl(bed, cps[0], f"exec {pod} -- sh -c {command}", timeout=90)[1]

    worker = threading.Thread(target=resolve)
    worker.start()
    time.sleep(5)
    victims = json.loads(kubectl(bed, cps[0], "-n kube-system get pods -l k8s-app=kube-dns -o json")[1])["items"]
    victim = victims[0]["metadata"]["name"]
    kubectl(bed, cps[0], f"-n kube-system delete pod {victim} --wait=false")
    worker.join(timeout=120)
    ok, failed = (int(n) for n in counts["out"].split()[-2:])
    kubectl(bed, cps[0], "-n kube-system rollout status deployment/coredns --timeout=120s", timeout=150)
    report(f"CoreDNS pod {victim} deleted while {pod} resolved kubernetes.default.svc.cluster.local every 200 ms "
           f"for 30 s: {ok} answers, {failed} failures")
    assert ok > 50 and failed == 0, (ok, failed)


def test_metrics_server_reads_every_kubelet_verifying_its_certificate(bed, cps, hosts):
    def nodes_with_metrics():
        rc, out = kubectl(bed, cps[0], "get --raw /apis/metrics.k8s.io/v1beta1/nodes", check=False)
        if rc != 0:
            return None
        items = json.loads(out)["items"]
        return items if sorted(i["metadata"]["name"] for i in items) == sorted(hosts) else None

    items = wait("metrics of every node", nodes_with_metrics, timeout=180, interval=5)
    assert all(i["usage"]["cpu"] and i["usage"]["memory"] for i in items)
    args = json.loads(kubectl(bed, cps[0], "-n kube-system get deployment metrics-server -o json")[1])[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-certificate-authority=/etc/kubernetes/cluster-ca/ca.crt" in args
    assert not any("insecure" in a for a in args), args
    log = kubectl(bed, cps[0], "-n kube-system logs deployment/metrics-server")[1]
    assert "x509" not in log, log[-2000:]
    sample = items[0]
    report(f"metrics.k8s.io: {len(items)} nodes, e.g. {sample['metadata']['name']} cpu {sample['usage']['cpu']} "
           f"memory {sample['usage']['memory']}; kubelet certificates verified with the cluster CA (no insecure flag)")
    top_nodes = kubectl(bed, cps[0], "top nodes --no-headers")[1].strip().splitlines()
    assert sorted(line.split()[0] for line in top_nodes) == sorted(hosts), top_nodes
    assert all(re.match(r"^\S+\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%", line) for line in top_nodes), top_nodes

    def pod_figures():
        rc, out = kubectl(bed, cps[0], "-n kube-system top pods --no-headers", check=False)
        return [line.strip() for line in out.strip().splitlines()] if rc == 0 else None

    top_pods = wait("kubectl top pods", pod_figures, timeout=120, interval=5)
    assert any(line.startswith("coredns-") for line in top_pods), top_pods
    assert all(re.match(r"^\S+\s+\d+m\s+\d+Mi$", line) for line in top_pods), top_pods
    report("kubectl top nodes:\n" + "\n".join(top_nodes) + "\nkubectl -n kube-system top pods:\n" + "\n".join(top_pods))


CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "local-claim", "namespace": "default"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}


def _writer(token):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "local-writer", "namespace": "default"},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "w", "image": IMAGE,
                                     "command": ["sh", "-c", f"echo {token} > /data/token && exec sleep 3600"],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}},
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "local-claim"}}]}}


def test_a_claim_of_the_default_class_gets_a_local_volume_and_gives_it_back(bed, cps):
    token = uuid.uuid4().hex
    kubectl(bed, cps[0], "delete pod local-writer local-reader --ignore-not-found --wait=true", timeout=150)
    kubectl(bed, cps[0], "delete pvc local-claim --ignore-not-found --wait=true", timeout=150)
    for document in (CLAIM, _writer(token)):  # no storageClassName: the default class
        bed.sh(cps[0], f"{ADMIN} apply -f - <<'EOF'\n{json.dumps(document)}\nEOF")
    kubectl(bed, cps[0], "wait --for=condition=Ready pod/local-writer --timeout=150s", timeout=170)
    claim = json.loads(kubectl(bed, cps[0], "get pvc local-claim -o json")[1])
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "local-path", claim["status"]
    volume = json.loads(kubectl(bed, cps[0], f"get pv {claim['spec']['volumeName']} -o json")[1])
    path = volume["spec"]["hostPath"]["path"]
    node = json.loads(kubectl(bed, cps[0], "get pod local-writer -o json")[1])["spec"]["nodeName"]
    assert path.startswith("/opt/local-path-provisioner/"), path
    assert wait("the token on the node", lambda: bed.sh(node, f"cat {path}/token", check=False)[1].strip() == token,
                timeout=30)
    kubectl(bed, cps[0], "delete pod local-writer --wait=true", timeout=150)
    # a new pod on the same claim reads back what the first one wrote
    reader = _writer(token)
    reader["metadata"]["name"] = "local-reader"
    reader["spec"]["containers"][0]["command"] = ["sh", "-c", "cat /data/token && exec sleep 3600"]
    bed.sh(cps[0], f"{ADMIN} apply -f - <<'EOF'\n{json.dumps(reader)}\nEOF")
    kubectl(bed, cps[0], "wait --for=condition=Ready pod/local-reader --timeout=150s", timeout=170)
    read_back = wait("the reader's log", lambda: kubectl(bed, cps[0], "logs local-reader")[1].strip(), timeout=30)
    assert read_back == token, read_back
    kubectl(bed, cps[0], "delete pod local-reader --wait=true", timeout=150)
    kubectl(bed, cps[0], "delete pvc local-claim --wait=true", timeout=150)
    wait(f"{path} removed on {node}", lambda: bed.sh(node, f"test -e {path}", check=False)[0] != 0, timeout=120)
    report(f"local-path: claim bound to {claim['spec']['volumeName']} at {node}:{path}, the pod's token written "
           f"there; the pod deleted, a new pod read the token back ({read_back[:8]}...); claim deleted, the "
           f"directory removed")


def _addon_objects(bed, cp, addon):
    kinds = "deployments,services,configmaps,serviceaccounts,clusterroles,clusterrolebindings,storageclasses,namespaces"
    out = kubectl(bed, cp, f"get {kinds} -A -l kubeforge.io/addon={addon} -o name")[1]
    return sorted(line for line in out.split() if line)


def test_an_addon_turned_off_is_removed_alone_and_comes_back(bed, cps):
    before = {addon: _addon_objects(bed, cps[0], addon) for addon in ("coredns", "metrics-server", "local-path")}
    assert all(before.values()), before
    # the addons alone, as a user changing one would run it (preflight always runs)
    off = bed.playbook("install.yml", _inventory(bed), extra=dict(_settings(), addons_local_path_enabled=False),
                       skip_tags=(), tags=("addons",))
    assert off.rc == 0, off.tail()
    wait("local-path's objects to be gone", lambda: not _addon_objects(bed, cps[0], "local-path"), timeout=180)
    for addon in ("coredns", "metrics-server"):
        assert _addon_objects(bed, cps[0], addon) == before[addon], addon
    again = bed.playbook("install.yml", _inventory(bed), extra=_settings(), skip_tags=(), tags=("addons",))
    assert again.rc == 0, again.tail()
    assert _addon_objects(bed, cps[0], "local-path") == before["local-path"]
    kubectl(bed, cps[0], "-n local-path-storage rollout status deployment/local-path-provisioner --timeout=120s",
            timeout=150)
    report(f"addons_local_path_enabled=false removed {len(before['local-path'])} objects (only local-path's, "
           f"in {off.seconds:.0f} s); turned on again, they are back ({again.seconds:.0f} s)")


def test_switching_the_pod_network_of_the_running_cluster_is_refused_before_any_change(bed, cps, hosts):
    conflist = "/etc/cni/net.d/10-flannel.conflist"
    before = {host: bed.sh(host, f"sha256sum {conflist}")[1] for host in hosts}
    run = bed.playbook("install.yml", _inventory(bed), extra=dict(_settings(), kubeforge_network_plugin="none"),
                       skip_tags=())
    assert run.rc != 0
    output = " ".join(run.output.split())
    for host in hosts:
        assert f"{host} runs the flannel pod network, and kubeforge_network_plugin is none" in output, run.tail()
    assert "set kubeforge_network_switch: true to switch" in output
    assert run.changed == 0, run.recap
    assert {host: bed.sh(host, f"sha256sum {conflist}")[1] for host in hosts} == before
    report(f"kubeforge_network_plugin=none on the running flannel network: refused in {run.seconds:.0f} s, "
           f"naming all {len(hosts)} hosts; nothing changed")


# -- refusals ----------------------------------------------------------------------------------------


def test_kubelet_refuses_anonymous_and_foreign_clients(bed, cps, workers, hosts):
    url = f"https://{hosts[workers[0]]['ip']}:10250/pods"
    anonymous, _ = https(bed, cps[0], url)
    assert anonymous == 401, anonymous
    # a certificate of another CA (etcd's): not a client the kubelet trusts
    foreign, _ = https(bed, cps[0], url, "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                       "/etc/kubernetes/pki/etcd/healthcheck-client.key")
    assert foreign == 401, foreign
    # kube-apiserver's own client certificate is allowed (the bootstrap RBAC)
    allowed, body = https(bed, cps[0], url, "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                          "/etc/kubernetes/pki/apiserver-kubelet-client.key")
    assert allowed == 200 and '"kind":"PodList"' in body, (allowed, body[:200])
    report(f"kubelet {workers[0]}:10250/pods: anonymous {anonymous}, etcd CA client {foreign}, "
           f"apiserver kubelet client {allowed}")


def test_a_kubelet_cannot_read_a_secret_no_pod_of_its_node_uses(bed, cps, workers):
    kubectl(bed, cps[0], "create secret generic unrelated --from-literal=k=v --dry-run=client -o yaml | "
                         f"{ADMIN} apply -f -")
    # the node's own credential, through its local load balancer
    status, body = https(bed, workers[0], "https://127.0.0.1:6443/api/v1/namespaces/default/secrets/unrelated",
                         "/var/lib/kubelet/pki/kubelet-client.crt", "/var/lib/kubelet/pki/kubelet-client.key")
    assert status == 403 and "no relationship found between node" in body, (status, body)
    report(f"{workers[0]}'s kubelet reading secret unrelated: {status} ({json.loads(body)['message'][:120]})")


def test_secrets_are_encrypted_at_rest_and_audited_without_data(bed, cps):
    value = uuid.uuid4().hex
    name = f"encrypted-{value[:8]}"
    kubectl(bed, cps[0], f"create secret generic {name} --from-literal=token={value}")
    # the stored value is binary: read its prefix, and whether the plain value occurs in it, on the node
    out = bed.etcdctl(cps[0], f"get /registry/secrets/default/{name} --print-value-only | python3 -c "
                              f"'import sys; d = sys.stdin.buffer.read(); print(d[:26].decode(\"ascii\", \"replace\")); "
                              f"print(b\"{value}\" in d)'")[1].split()
    raw = out[0]
    assert raw == "k8s:enc:secretbox:v1:key1:", out
    assert out[1] == "False", out
    audit = wait("the audit event of the Secret's creation", lambda: [
        json.loads(line) for cp in cps for line in bed.sh(
            cp, f"grep -h '\"name\":\"{name}\"' /var/log/kubernetes/audit/audit.log || true")[1].splitlines()
        if '"verb":"create"' in line], timeout=30)
    assert all(event["level"] == "Metadata" and "requestObject" not in event for event in audit)
    assert not any(value in json.dumps(event) for event in audit)
    report(f"secret {name}: etcd holds {raw[:26]}... (not the value); audit: {audit[0]['verb']} "
           f"{audit[0]['objectRef']['resource']}/{audit[0]['objectRef']['name']} at level {audit[0]['level']}")


def test_a_privileged_pod_is_refused_by_pod_security(bed, cps):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
           "spec": {"containers": [{"name": "c", "image": IMAGE, "securityContext": {"privileged": True}}]}}
    rc, out = bed.sh(cps[0], f"{ADMIN} apply -f - <<'EOF'\n{json.dumps(pod)}\nEOF", check=False)
    assert rc != 0 and 'violates PodSecurity "baseline:latest"' in out, out
    report(f"privileged pod: {out.strip().splitlines()[-1][:160]}")


# -- faults and changes ------------------------------------------------------------------------------


class Poller:
    """Asks the API through a worker's local load balancer every 100 ms; counts answers.

    It asks /livez, which an API server answers until it stops serving; /readyz already fails
    while one drains before stopping (--shutdown-delay-duration), which is what takes it out of
    the load balancer while it still serves the requests that reach it."""

    def __init__(self, bed, node):
        self.bed, self.node = bed, node
        self.ok = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    SCRIPT = """
import ssl, time, urllib.request
context = ssl.create_default_context(cafile="/etc/kubernetes/pki/ca.crt")
while True:
    try:
        urllib.request.urlopen("https://127.0.0.1:6443/livez", context=context, timeout=2).read()
        print("ok", flush=True)
    except Exception:
        print("fail", flush=True)
    time.sleep(0.1)
"""

    def _run(self):
        import subprocess

        self._proc = subprocess.Popen(["podman", "exec", self.node, "python3", "-c", self.SCRIPT],
                                      stdout=subprocess.PIPE, text=True)
        for line in self._proc.stdout:
            if line.strip() == "ok":
                self.ok += 1
            else:
                self.failed += 1
            if self._stop.is_set():
                break

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._proc.terminate()
        self._thread.join(timeout=10)


def _settings():
    """The versions the scenario's inventory sets (.config/molecule/config.yml), for runs of our own."""
    versions = mirror_vars()["testbed_versions"]
    return {"kubeforge_kubernetes_version": versions["kubernetes"], "kubeforge_etcd_version": versions["etcd"],
            "kubeforge_containerd_version": versions["containerd"], "kubeforge_runc_version": versions["runc"],
            "kubeforge_cni_plugins_version": versions["cni_plugins"], "kubeforge_crictl_version": versions["crictl"],
            "kubeforge_images": mirror_vars()["testbed_kubeforge_images"], "kubeforge_network_plugin": "flannel"}


def _inventory(bed):
    hosts = bed.hosts()[0]
    return bed.inventory({"kube_control_plane": sorted(h for h in hosts if "-cp" in h),
                          "etcd": sorted(h for h in hosts if "-cp" in h),
                          "kube_node": sorted(h for h in hosts if "-w" in h)})


def test_a_stopped_control_plane_does_not_stop_the_workers(bed, cps, workers):
    import subprocess

    with Poller(bed, workers[0]) as poller:
        time.sleep(3)
        subprocess.run(["podman", "stop", "-t", "5", cps[0]], check=True, capture_output=True)
        time.sleep(15)
        stopped = (poller.ok, poller.failed)
    # the load balancer takes the stopped API server out after its failed health checks; a few
    # requests that were on their way to it fail, none after that
    assert stopped[0] > 50, stopped
    report(f"{cps[0]} stopped: through {workers[0]}'s load balancer {stopped[0]} requests answered, "
           f"{stopped[1]} failed (in the seconds before the health checks took it out)")
    subprocess.run(["podman", "start", cps[0]], check=True, capture_output=True)
    forget_ssh_connection(bed, cps[0])
    wait(f"{cps[0]} to serve again", lambda: kubectl(bed, cps[1], f"get node {cps[0]} -o "
                                                                   "jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
                                                     check=False)[1].strip() == "True", timeout=180)
    run = bed.playbook("install.yml", _inventory(bed), extra=_settings(), skip_tags=())
    assert run.rc == 0, run.tail()
    assert run.changed == 0, {h: v for h, v in run.recap.items() if v["changed"]}
    report(f"{cps[0]} started again (same address): install.yml converged with changed=0 in {run.seconds:.0f} s")


def test_a_changed_flag_is_planned_exactly_then_rolled_one_control_plane_at_a_time(bed, cps, workers):
    current = int(re.search(r"--audit-log-maxage=(\d+)", bed.sh(cps[0], "cat /etc/kubernetes/kube-apiserver.env")[1]).group(1))
    wanted = 7 if current != 7 else 8
    extra = dict(_settings(), control_plane_apiserver_flags={"audit-log-maxage": wanted})
    plan = bed.playbook("install.yml", _inventory(bed), extra=extra, check=True, diff=True, skip_tags=())
    assert plan.rc == 0, plan.tail()
    assert {h for h, v in plan.recap.items() if v["changed"]} == set(cps), plan.recap
    assert all(plan.recap[cp]["changed"] == 1 for cp in cps), plan.recap
    changed_lines = re.findall(r"^[+-]  --audit-log-maxage=\d+ \\$", plan.output, re.M)
    assert sorted(set(changed_lines)) == [f"+  --audit-log-maxage={wanted} \\", f"-  --audit-log-maxage={current} \\"], \
        changed_lines
    assert "kube-apiserver.env" in plan.output
    report(f"--check --diff: only /etc/kubernetes/kube-apiserver.env changes on {', '.join(cps)}: "
           f"{sorted(set(changed_lines))}")
    with Poller(bed, workers[0]) as poller:
        run = bed.playbook("install.yml", _inventory(bed), extra=extra, skip_tags=())
    assert run.rc == 0, run.tail()
    # each restart is followed by the wait for that API server's /readyz before the next restart
    steps = re.findall(r"TASK \[kubeforge\.cluster\.control_plane : (Restart the changed control-plane services|"
                       r"Wait for /readyz of the kube-apiserver) on (\S+)\]", run.output)
    restarts = [host for step, host in steps if step.startswith("Restart")]
    assert restarts == cps, steps
    assert steps == [(step, cp) for cp in cps for step in ("Restart the changed control-plane services",
                                                           "Wait for /readyz of the kube-apiserver")], steps
    for cp in cps:
        assert f"--audit-log-maxage={wanted}" in bed.sh(cp, "cat /proc/$(pidof kube-apiserver)/cmdline | tr '\\0' ' '")[1]
    assert poller.failed == 0, (poller.ok, poller.failed)
    report(f"real run: kube-apiserver restarted on {', '.join(restarts)} in turn; through the load balancer "
           f"{poller.ok} requests answered, {poller.failed} failed")
    again = bed.playbook("install.yml", _inventory(bed), extra=extra, skip_tags=())
    assert again.rc == 0 and again.changed == 0, again.recap


def test_control_planes_holding_different_encryption_keys_are_refused_before_any_change(bed, cps):
    path = "/etc/kubernetes/encryption.yaml"
    bed.sh(cps[2], f"cp -p {path} /root/encryption.yaml.kept && python3 - <<'EOF'\n"
                   "import base64, os, yaml\n"
                   f"doc = yaml.safe_load(open('{path}'))\n"
                   "doc['resources'][0]['providers'][0]['secretbox']['keys'][0]['secret'] = "
                   "base64.b64encode(os.urandom(32)).decode()\n"
                   f"open('{path}', 'w').write(yaml.safe_dump(doc))\nEOF")
    try:
        run = bed.playbook("install.yml", _inventory(bed), extra=_settings(), skip_tags=())
    finally:
        bed.sh(cps[2], f"mv /root/encryption.yaml.kept {path}")
    assert run.rc != 0
    output = " ".join(run.output.split())  # the message is folded over lines in the output
    assert re.search(rf"{cps[0]}, {cps[1]} hold secretbox key key1 \(sha256:[0-9a-f]{{16}}\); "
                     rf"{cps[2]} holds secretbox key key1 \(sha256:[0-9a-f]{{16}}\)", output), run.tail()
    assert "Refuse control planes that hold different encryption keys" in run.output
    assert run.changed == 0, run.recap
    assert "TASK [kubeforge.cluster.os" not in run.output
    report(f"{cps[2]} given another key: install.yml refused in preflight, nothing changed: "
           + re.search(r"control planes hold different encryption keys: [^.]*", output).group(0))


# Last: it switches the pod network of the running cluster, and back.
def _switch(bed, network):
    run = bed.playbook("install.yml", _inventory(bed),
                       extra=dict(_settings(), kubeforge_network_switch=True, kubeforge_network_plugin=network),
                       skip_tags=(), tags=("network",))
    assert run.rc == 0, run.tail()
    return run


def _recreate_pods(bed, cp):
    """What docs/cluster.md asks after a switch: every pod not on the host network, recreated."""
    pods = json.loads(kubectl(bed, cp, "get pods -A -o json")[1])["items"]
    for pod in pods:
        if not pod["spec"].get("hostNetwork"):
            kubectl(bed, cp, f"-n {pod['metadata']['namespace']} delete pod {pod['metadata']['name']} --wait=false")
    for namespace, deployment in (("default", "spread"), ("kube-system", "coredns")):
        kubectl(bed, cp, f"-n {namespace} rollout status deployment/{deployment} --timeout=180s", timeout=200)
    wait("the old pods to be gone", lambda: not [
        p for p in json.loads(kubectl(bed, cp, "get pods -A -o json")[1])["items"]
        if p["metadata"].get("deletionTimestamp")], timeout=120)


def _pods_reach_across_nodes(bed, cp):
    pods = [p for p in json.loads(kubectl(bed, cp, "get pods -l app=spread -o json")[1])["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    nodes = sorted(by_node)
    for index, node in enumerate(nodes):
        target = by_node[nodes[(index + 1) % len(nodes)]]
        out = wait(f"{node} to reach {target['metadata']['name']}", lambda: bed.sh(
            cp, f"{ADMIN} exec {by_node[node]['metadata']['name']} -- timeout 5 wget -q -O - "
                f"http://{target['status']['podIP']}:8080/", check=False)[1].strip(), timeout=60)
        assert out == target["metadata"]["name"], (node, out)
    return len(nodes)


def _not_ready_everywhere(bed, cp):
    return all(c["status"] != "True" for n in json.loads(kubectl(bed, cp, "get nodes -o json")[1])["items"]
               for c in n["status"]["conditions"] if c["type"] == "Ready")


def test_a_switch_asked_for_replaces_the_network_and_a_switch_back_restores_it(bed, cps, hosts):
    bridge_files = "/etc/cni/net.d/10-kubeforge-bridge.conflist /usr/local/sbin/kubeforge-pod-network"
    flannel_left = ("ls /etc/cni/net.d/10-flannel.conflist /opt/cni/bin/flannel /run/flannel 2>/dev/null; "
                    "ip link show flannel.1 2>/dev/null; iptables -w -S | grep FLANNEL; "
                    "iptables -w -t nat -S | grep FLANNEL || true")
    to_bridge = _switch(bed, "bridge")
    assert kubectl(bed, cps[0], "-n kube-system get daemonset,configmap -l kubeforge.io/network=flannel -o name")[1] == ""
    for host in hosts:
        assert bed.sh(host, flannel_left)[1].strip() == "", host
    kubectl(bed, cps[0], "wait --for=condition=Ready nodes --all --timeout=120s", timeout=150)
    _recreate_pods(bed, cps[0])
    reached = _pods_reach_across_nodes(bed, cps[0])
    routes = bed.sh(cps[0], "ip -4 route show proto 77 | wc -l")[1].strip()
    assert int(routes) == len(hosts) - 1, routes
    report(f"kubeforge_network_switch: flannel -> bridge removed flannel's objects, files, device and chains on "
           f"{len(hosts)} nodes ({to_bridge.seconds:.0f} s); pods recreated reach each other across {reached} nodes, "
           f"{routes} bridge routes on {cps[0]}")

    to_none = _switch(bed, "none")
    for host in hosts:
        left = bed.sh(host, f"ls {bridge_files} 2>/dev/null; ip -4 route show proto 77; "
                            "iptables -w -t nat -S POSTROUTING | grep kubeforge-pod || true")[1]
        assert left.strip() == "", (host, left)
    wait("every node NotReady without a network", lambda: _not_ready_everywhere(bed, cps[0]), timeout=120, interval=5)

    to_flannel = _switch(bed, "flannel")
    kubectl(bed, cps[0], "wait --for=condition=Ready nodes --all --timeout=120s", timeout=150)
    _recreate_pods(bed, cps[0])
    reached = _pods_reach_across_nodes(bed, cps[0])
    again = bed.playbook("install.yml", _inventory(bed), extra=_settings(), skip_tags=(), tags=("network",))
    assert again.rc == 0 and again.changed == 0, again.recap
    report(f"bridge -> none removed the configuration, routes and masquerade rule ({to_none.seconds:.0f} s), nodes "
           f"NotReady; none -> flannel: Ready again ({to_flannel.seconds:.0f} s), pods recreated reach each other "
           f"across {reached} nodes; the network re-run changed nothing ({again.seconds:.0f} s)")
