# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The lifecycle of the cluster converge made (a control plane and a worker at the previous minor).

In order, each step relying on the ones before: scale a worker and a control plane in with
--limit, upgrade by one minor under live clients, refuse a downgrade not asked for, remove a
stopped worker, stop a downgrade at a PodDisruptionBudget and then downgrade, certificates, and
reset. Each test prints what it measured (``[lifecycle] ...`` lines); the figures also go to
the scenario's report file.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "etcd", "tests"))
from etcdtest import MIRROR_VARS, Bed, Report  # noqa: E402

CLUSTER = "mol-lifecycle"
CP1, W1, CP2, W2 = (f"{CLUSTER}-{name}" for name in ("cp1", "w1", "cp2", "w2"))
ADMIN = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
IMAGE = "docker.io/library/busybox:testbed"
LB_CONFIG = "/etc/kubernetes/apiserver-lb.cfg"

bed = Bed(CLUSTER, layout=None)
report_file = Report("lifecycle", label="cluster lifecycle")
STATE = {"cps": [CP1], "workers": [W1]}


def say(text):
    print(f"\n[lifecycle] {text}")


def mirror():
    with open(MIRROR_VARS, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["vars"]


VERSIONS = mirror()["testbed_mirror_versions"]["kube-apiserver"]
OLD, NEW = VERSIONS[0], VERSIONS[-1]


def settings(version):
    versions = mirror()["testbed_versions"]
    return {"kubeforge_kubernetes_version": version, "kubeforge_etcd_version": versions["etcd"],
            "kubeforge_containerd_version": versions["containerd"], "kubeforge_runc_version": versions["runc"],
            "kubeforge_cni_plugins_version": versions["cni_plugins"], "kubeforge_crictl_version": versions["crictl"],
            "kubeforge_images": mirror()["testbed_kubeforge_images"],
            "container_runtime_image_archives": mirror()["testbed_image_archives"],
            "kubeforge_network_plugin": "flannel", "kubeforge_etcd_allow_even_members": True,
            "addons_metrics_server_enabled": False}


def inventory():
    return bed.inventory({"kube_control_plane": STATE["cps"], "etcd": STATE["cps"], "kube_node": STATE["workers"]},
                         name="-".join(STATE["cps"] + STATE["workers"]).replace(CLUSTER + "-", ""))


def playbook(name, version=OLD, extra=None, **kwargs):
    kwargs.setdefault("skip_tags", ())
    return bed.playbook(name, inventory(), dict(settings(version), **(extra or {})), **kwargs)


def kubectl(args, node=CP1, check=True, timeout=120):
    return bed.sh(node, f"{ADMIN} {args}", check=check, timeout=timeout)


def apply(document):
    bed.sh(CP1, f"{ADMIN} apply -f - <<'EOF'\n{json.dumps(document)}\nEOF")


def wait(what, probe, timeout=180, interval=2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}; last: {last!r}")


def node_versions():
    nodes = json.loads(kubectl("get nodes -o json")[1])["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"].lstrip("v") for n in nodes}


def apiserver_versions():
    out = {}
    for cp in STATE["cps"]:
        text = bed.sh(cp, "kube-apiserver --version")[1]
        out[cp] = text.split()[-1].lstrip("v")
    return out


def recap_hosts(run):
    return sorted(h for h in run.recap if h != "localhost")


# -- the workload and the clients that count ------------------------------------------------------

WEB = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{
                    "name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "mkdir -p /tmp/www && hostname > /tmp/www/index.html && "
                                            "exec httpd -f -p 8080 -h /tmp/www"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    # the endpoint goes before the process: kube-proxy drops it first on every node
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "3"]}}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "runAsNonRoot": True, "runAsUser": 65534,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                }],
            },
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def budget(min_available):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}}


class Clients:
    """From a worker (outside the pods): the Service and the API (through the node's load balancer),
    each asked every 100 ms on a new connection; counts answers and failures."""

    SCRIPT = r"""
import ssl, sys, threading, time, urllib.request
service, stop = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile="/etc/kubernetes/pki/ca.crt")
lock = threading.Lock()
def ask(kind, url, ctx):
    import os
    while not os.path.exists(stop):
        try:
            urllib.request.urlopen(url, context=ctx, timeout=2).read()
            line = kind + " ok"
        except Exception as exc:
            line = kind + " fail " + type(exc).__name__
        with lock:
            print(line, flush=True)
        time.sleep(0.1)
threads = [threading.Thread(target=ask, args=("svc", "http://%s/" % service, None)),
           threading.Thread(target=ask, args=("api", "https://127.0.0.1:6443/livez", context))]
for t in threads: t.start()
for t in threads: t.join()
"""

    def __init__(self, node, service_ip):
        self.node, self.service_ip = node, service_ip
        self.counts = {"svc ok": 0, "svc fail": 0, "api ok": 0, "api fail": 0}
        self.errors = {}
        self.stop_file = "/tmp/lifecycle-clients.stop"
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) >= 2:
                key = " ".join(parts[:2])
                self.counts[key] = self.counts.get(key, 0) + 1
                if parts[1] == "fail":
                    self.errors[" ".join(parts)] = self.errors.get(" ".join(parts), 0) + 1

    def __enter__(self):
        bed.sh(self.node, f"rm -f {self.stop_file}")
        self.proc = subprocess.Popen(["podman", "exec", self.node, "python3", "-c", self.SCRIPT, self.service_ip,
                                      self.stop_file], stdout=subprocess.PIPE, text=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        bed.sh(self.node, f"touch {self.stop_file}")
        self.proc.wait(timeout=30)
        self.thread.join(timeout=10)


# -- scale ----------------------------------------------------------------------------------------


def test_converged_cluster_runs_the_previous_minor():
    assert node_versions() == {CP1: OLD, W1: OLD}
    kubectl("create configmap before-upgrade --from-literal=written=before")
    say(f"converge: {CP1} and {W1} run Kubernetes {OLD}; configmap before-upgrade written")


def test_a_worker_joins_alone_under_limit():
    STATE["fresh"] = fresh_listing(CP2)
    before = bed.read(W1, LB_CONFIG)
    STATE["workers"] = [W1, W2]
    run = playbook("scale.yml", limit=W2)
    report_file.step("scale.yml --limit one new worker", run.seconds, changed=run.changed)
    assert run.rc == 0, run.tail()
    assert recap_hosts(run) == [W2], run.recap
    assert bed.read(W1, LB_CONFIG) == before
    wait(f"{W2} Ready", lambda: node_versions().get(W2) == OLD and ready(W2), timeout=120)
    say(f"scale.yml --limit {W2}: {run.seconds:.1f} s, recap {recap_hosts(run)}; {W1}'s load balancer unchanged")


def ready(node):
    out = kubectl(f"get node {node} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'", check=False)[1]
    return out.strip() == "True"


def test_a_control_plane_joins_and_every_load_balancer_learns_it():
    STATE["cps"] = [CP1, CP2]
    run = playbook("scale.yml", limit=CP2)
    report_file.step("scale.yml --limit one new control plane", run.seconds, changed=run.changed)
    assert run.rc == 0, run.tail()
    assert recap_hosts(run) == [CP2], run.recap
    assert f"updating the API load balancer on {W1}, {W2}" in " ".join(run.text.split()), run.tail()
    for worker in (W1, W2):
        servers = re.findall(r"^\s*server (\S+) ", bed.read(worker, LB_CONFIG), re.M)
        assert servers == [CP1, CP2], (worker, servers)
    members = sorted(m["name"] for m in bed.members(CP1))
    assert members == [CP1, CP2], members
    wait(f"{CP2} Ready", lambda: ready(CP2), timeout=120)
    # the new nodes take pods
    apply(WEB)
    apply(SERVICE)
    kubectl("rollout status deployment/web --timeout=180s", timeout=200)
    placed = {p["spec"]["nodeName"] for p in pods("app=web")}
    assert W2 in placed or len(placed) == 2, placed
    say(f"scale.yml --limit {CP2}: {run.seconds:.1f} s; etcd members {members}; backends on {W1}, {W2}: "
        f"{CP1}, {CP2}; web pods on {sorted(placed)}")


def pods(selector):
    items = json.loads(kubectl(f"get pods -l {selector} -o json")[1])["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


# -- upgrade ---------------------------------------------------------------------------------------


def test_upgrade_by_one_minor_under_live_clients():
    apply(budget(2))
    kubectl("rollout status deployment/web --timeout=180s", timeout=200)
    ip = kubectl("get service web -o jsonpath='{.spec.clusterIP}'")[1].strip()
    with Clients(W1, ip) as clients:
        time.sleep(3)
        run = playbook("upgrade.yml", NEW)
        time.sleep(3)
    counts = clients.counts
    report_file.step("upgrade.yml, 2 control planes + 2 workers", run.seconds, changed=run.changed)
    report_file.figure("upgrade seconds per node", round(run.seconds / 4, 1))
    report_file.figure("upgrade service answers", {"ok": counts["svc ok"], "failed": counts["svc fail"]})
    report_file.figure("upgrade API answers", {"ok": counts["api ok"], "failed": counts["api fail"]})
    say(f"upgrade.yml {OLD} -> {NEW}: {run.seconds:.1f} s ({run.seconds / 4:.1f} s per node); Service "
        f"{counts['svc ok']} ok / {counts['svc fail']} failed; API (/livez via {W1}'s load balancer) "
        f"{counts['api ok']} ok / {counts['api fail']} failed; failures {clients.errors}")
    assert run.rc == 0, run.tail()
    assert node_versions() == {CP1: NEW, CP2: NEW, W1: NEW, W2: NEW}
    assert apiserver_versions() == {CP1: NEW, CP2: NEW}
    assert kubectl("get configmap before-upgrade -o jsonpath='{.data.written}'")[1].strip() == "before"
    assert counts["svc ok"] > 100 and counts["api ok"] > 100, counts
    assert counts["svc fail"] == 0, clients.errors
    assert counts["api fail"] == 0, clients.errors
    assert "etcd-snapshot-" in run.text
    again = playbook("upgrade.yml", NEW)
    assert again.rc == 0 and again.changed == 0, again.tail()
    assert f"every node already runs Kubernetes {NEW}" in again.text


# -- CA rotation ------------------------------------------------------------------------------------


class PodLister:
    """From a worker, outside the pods: lists pods through the node's load balancer every second,
    reading the trust file and the client certificate anew for each request (as kubectl reads its
    kubeconfig), and asks the Service every 100 ms; counts answers and failures."""

    SCRIPT = r"""
import json, ssl, sys, threading, time, urllib.request, os
service, stop, creds = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
def say(line):
    with lock:
        print(line, flush=True)
def pods():
    while not os.path.exists(stop):
        try:
            ctx = ssl.create_default_context(cafile="/etc/kubernetes/pki/ca.crt")
            ctx.load_cert_chain(creds + "/client.crt", creds + "/client.key")
            body = urllib.request.urlopen("https://127.0.0.1:6443/api/v1/namespaces/default/pods?limit=50",
                                          context=ctx, timeout=3).read()
            say("pods ok %d" % len(json.loads(body)["items"]))
        except Exception as exc:
            say("pods fail " + type(exc).__name__ + " " + str(exc).replace(" ", "_")[:80])
        time.sleep(1)
def svc():
    while not os.path.exists(stop):
        try:
            urllib.request.urlopen("http://%s/" % service, timeout=2).read()
            say("svc ok")
        except Exception as exc:
            say("svc fail " + type(exc).__name__)
        time.sleep(0.1)
threads = [threading.Thread(target=pods), threading.Thread(target=svc)]
for t in threads: t.start()
for t in threads: t.join()
"""
    CREDS = "/root/rotation-client"

    def __init__(self, node, service_ip):
        self.node, self.service_ip = node, service_ip
        self.counts = {"pods ok": 0, "pods fail": 0, "svc ok": 0, "svc fail": 0}
        self.errors = {}
        self.stop_file = "/tmp/rotation-client.stop"
        self.thread = threading.Thread(target=self._read, daemon=True)

    def give_admin_credentials(self):
        """What a user does after phase sign: take the re-issued admin certificate (admin.conf's)."""
        for name in ("crt", "key"):
            data = bed.sh(CP1, f"cat /etc/kubernetes/pki/kubeconfig/admin.{name}")[1]
            bed.sh(self.node, f"mkdir -p {self.CREDS} && umask 077 && cat > {self.CREDS}/client.{name}.tmp "
                              f"<<'EOF'\n{data}\nEOF\nmv {self.CREDS}/client.{name}.tmp {self.CREDS}/client.{name}")

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) >= 2:
                key = " ".join(parts[:2])
                self.counts[key] = self.counts.get(key, 0) + 1
                if parts[1] == "fail":
                    self.errors[" ".join(parts)] = self.errors.get(" ".join(parts), 0) + 1

    def __enter__(self):
        self.give_admin_credentials()
        bed.sh(self.node, f"rm -f {self.stop_file}")
        self.proc = subprocess.Popen(["podman", "exec", self.node, "python3", "-c", self.SCRIPT, self.service_ip,
                                      self.stop_file, self.CREDS], stdout=subprocess.PIPE, text=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        bed.sh(self.node, f"touch {self.stop_file}")
        self.proc.wait(timeout=30)
        self.thread.join(timeout=10)


def trust_fingerprints(node, path="/etc/kubernetes/pki/ca.crt"):
    """The SHA-256 fingerprints of the certificates of a trust file on ``node``, in order."""
    data = bed.sh(node, f"cat {path}")[1].encode()
    return [cert.fingerprint(hashes.SHA256()).hex() for cert in x509.load_pem_x509_certificates(data)]


def test_rotating_the_cluster_ca_while_a_client_lists_pods():
    nodes = STATE["cps"] + STATE["workers"]
    old = trust_fingerprints(CP1)
    assert len(old) == 1 and all(trust_fingerprints(n) == old for n in nodes)
    ip = kubectl("get service web -o jsonpath='{.spec.clusterIP}'")[1].strip()
    seconds = {}
    with PodLister(W1, ip) as client:
        time.sleep(3)
        for phase in ("trust", "sign", "finish"):
            extra = {"certs_action": "rotate-ca", "certs_rotate_ca": "ca", "certs_rotate_phase": phase}
            if phase == "sign":
                # the leaves the new CA issues live 14 minutes: the short-lifetime test rides on them
                extra.update(pki_cert_validity_days=0.01, pki_cert_renew_before_days=0.005)
            run = playbook("certs.yml", NEW, extra=extra)
            seconds[phase] = run.seconds
            report_file.step(f"certs.yml rotate-ca ca phase {phase}", run.seconds, changed=run.changed)
            assert run.rc == 0, run.tail()
            trust = trust_fingerprints(CP1)
            assert all(trust_fingerprints(n) == trust for n in nodes), phase
            if phase == "trust":
                assert trust[0] == old[0] and len(trust) == 2
                new = trust[1]
                # the CA host keeps the new CA beside the old one; every control plane holds it
                for cp in STATE["cps"]:
                    assert trust_fingerprints(cp, "/etc/kubernetes/pki/ca-new.crt") == [new]
                    assert bed.sh(cp, "stat -c %a /etc/kubernetes/pki/ca-new.key")[1].strip() == "600"
            elif phase == "sign":
                assert trust == [new, old[0]]
                assert trust_fingerprints(CP1, "/etc/kubernetes/pki/ca-signer.crt") == [new]
                client.give_admin_credentials()
                # minutes left: reported, then renewed by a plain renew run (the default window)
                short = playbook("certs.yml", NEW, extra={"certs_fail_within": "20m"})
                message = short.failure()
                assert short.rc != 0 and "/etc/kubernetes/pki/apiserver.crt" in message, short.tail()
                assert re.search(r"apiserver\.crt \(apiserver\): \d{1,2}m left", message), message
                renew = playbook("certs.yml", NEW, extra={"certs_action": "renew"})
                seconds["renew"] = renew.seconds
                report_file.step("certs.yml renew of 14-minute certificates", renew.seconds)
                assert renew.rc == 0, renew.tail()
                left = bed.sh(CP1, "openssl x509 -noout -checkend 25920000 -in /etc/kubernetes/pki/apiserver.crt",
                              check=False)[0]
                assert left == 0, "apiserver.crt was not renewed for 300 days and more"
                # the user takes the re-issued admin certificate before the old CA goes
                client.give_admin_credentials()
            else:
                assert trust == [new]
        time.sleep(3)
    counts = client.counts
    report_file.figure("CA rotation pod listings", {"ok": counts["pods ok"], "failed": counts["pods fail"]})
    report_file.figure("CA rotation service answers", {"ok": counts["svc ok"], "failed": counts["svc fail"]})
    say(f"CA rotation (trust {seconds['trust']:.1f} s, sign {seconds['sign']:.1f} s, renew of 14-minute "
        f"certificates {seconds['renew']:.1f} s, finish {seconds['finish']:.1f} s): "
        f"pod listings through {W1}'s load balancer {counts['pods ok']} ok / {counts['pods fail']} failed; "
        f"Service {counts['svc ok']} ok / {counts['svc fail']} failed; failures {client.errors}")
    # every certificate of the cluster CA is the new CA's, verified on its host
    for node in nodes:
        for path in ("/var/lib/kubelet/pki/kubelet.crt", "/var/lib/kubelet/pki/kubelet-client.crt"):
            assert bed.sh(node, f"openssl verify -CAfile /etc/kubernetes/pki/ca.crt {path}", check=False)[0] == 0
    for cp in STATE["cps"]:
        assert bed.sh(cp, "openssl verify -CAfile /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/apiserver.crt",
                      check=False)[0] == 0
        assert bed.sh(cp, "test ! -e /etc/kubernetes/pki/ca-new.crt && test ! -e /etc/kubernetes/pki/ca-new.key",
                      check=False)[0] == 0
    assert all(ready(n) for n in nodes)
    assert counts["pods ok"] > 30 and counts["svc ok"] > 100, counts
    assert counts["pods fail"] == 0, client.errors
    assert counts["svc fail"] == 0, client.errors
    table = playbook("certs.yml", NEW)
    assert table.rc == 0 and "not signed by" not in table.text, table.tail()
    again = playbook("certs.yml", NEW, extra={"certs_action": "rotate-ca", "certs_rotate_ca": "ca",
                                              "certs_rotate_phase": "finish"})
    assert again.rc == 0 and again.changed == 0, again.tail()
    out_of_order = playbook("certs.yml", NEW, extra={"certs_action": "rotate-ca", "certs_rotate_ca": "ca",
                                                     "certs_rotate_phase": "sign"})
    assert out_of_order.rc != 0 and "the next phase is trust" in " ".join(out_of_order.failure().split())
    assert out_of_order.changed == 0
    assert trust_fingerprints(CP1) == [new]


def test_rotating_the_etcd_ca_while_a_client_lists_pods():
    """The etcd CA in three phases; kube-apiserver, restarted by certs.yml after each, keeps serving.

    etcd has two members here (both control planes): a member restarting leaves no quorum for the
    seconds it takes, during which a read waits; a listing may take up to 3 s before it counts as failed.
    """
    etcd_ca = "/etc/kubernetes/pki/etcd/ca.crt"
    old = trust_fingerprints(CP1, etcd_ca)
    assert len(old) == 1
    ip = kubectl("get service web -o jsonpath='{.spec.clusterIP}'")[1].strip()
    seconds, held = {}, {}
    with PodLister(W1, ip) as client:
        time.sleep(3)
        for phase in ("trust", "sign", "finish"):
            extra = {"certs_action": "rotate-ca", "certs_rotate_ca": "etcd-ca", "certs_rotate_phase": phase}
            run = playbook("certs.yml", NEW, extra=extra)
            seconds[phase] = run.seconds
            report_file.step(f"certs.yml rotate-ca etcd-ca phase {phase}", run.seconds, changed=run.changed)
            assert run.rc == 0, run.tail()
            held[phase] = trust_fingerprints(CP1, etcd_ca)
            assert all(trust_fingerprints(cp, etcd_ca) == held[phase] for cp in STATE["cps"]), phase
            # kube-apiserver started after the phase changed what it reads of etcd's
            for cp in STATE["cps"]:
                started = int(bed.sh(cp, "date -d \"$(systemctl show -p ActiveEnterTimestamp --value kube-apiserver)\" "
                                         "+%s")[1])
                changed = int(bed.sh(cp, f"stat -c %Z {etcd_ca} /etc/kubernetes/pki/apiserver-etcd-client.crt")[1]
                              .split()[0 if phase != "sign" else 1])
                assert started >= changed, (phase, cp)
        time.sleep(3)
    counts = client.counts
    report_file.figure("etcd CA rotation pod listings", {"ok": counts["pods ok"], "failed": counts["pods fail"]})
    report_file.figure("etcd CA rotation service answers", {"ok": counts["svc ok"], "failed": counts["svc fail"]})
    say(f"etcd CA rotation (trust {seconds['trust']:.1f} s, sign {seconds['sign']:.1f} s, finish "
        f"{seconds['finish']:.1f} s): pod listings through {W1}'s load balancer {counts['pods ok']} ok / "
        f"{counts['pods fail']} failed; Service {counts['svc ok']} ok / {counts['svc fail']} failed; "
        f"failures {client.errors}")
    new = held["trust"][1]
    assert held == {"trust": [old[0], new], "sign": [new, old[0]], "finish": [new]}, held
    for cp in STATE["cps"]:
        for leaf in ("etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt", "apiserver-etcd-client.crt"):
            assert bed.sh(cp, f"openssl verify -CAfile {etcd_ca} /etc/kubernetes/pki/{leaf}", check=False)[0] == 0, leaf
        assert bed.sh(cp, "test ! -e /etc/kubernetes/pki/etcd/ca-new.crt", check=False)[0] == 0
    assert counts["pods ok"] > 30 and counts["svc ok"] > 100, counts
    assert counts["pods fail"] == 0, client.errors
    assert counts["svc fail"] == 0, client.errors
    # the data written before is read after, through the API
    assert kubectl("get deployment web -o jsonpath='{.spec.replicas}'")[1].strip() == "3"
    again = playbook("certs.yml", NEW, extra={"certs_action": "rotate-ca", "certs_rotate_ca": "etcd-ca",
                                              "certs_rotate_phase": "finish"})
    assert again.rc == 0 and again.changed == 0, again.tail()


def test_a_downgrade_not_asked_for_is_refused_before_any_change():
    run = playbook("upgrade.yml", OLD)
    assert run.rc != 0
    message = " ".join(run.failure().split())
    assert "kubeforge_allow_downgrade: true" in message, message
    assert node_versions() == {CP1: NEW, CP2: NEW, W1: NEW, W2: NEW}
    assert run.changed == 0
    say(f"downgrade without the variable: refused ({message[:160]}...)")


# -- remove_node -----------------------------------------------------------------------------------


def test_removing_a_stopped_worker_deletes_its_node_and_names_the_skipped_steps():
    subprocess.run(["podman", "stop", "-t", "1", W2], check=True, stdout=subprocess.DEVNULL)
    run = playbook("remove_node.yml", NEW, extra={"node": W2, "remove_node_confirm": True})
    report_file.step("remove_node.yml, a stopped worker", run.seconds)
    assert run.rc == 0, run.tail()
    text = " ".join(run.text.split())
    assert f"SKIPPED on {W2}, which did not answer" in text, run.tail()
    assert W2 not in node_versions()
    STATE["workers"] = [W1]
    kubectl("rollout status deployment/web --timeout=180s", timeout=200)
    say(f"remove_node.yml {W2} (stopped): {run.seconds:.1f} s; Node object gone; host steps reported as skipped")


def test_removing_a_control_plane_updates_every_load_balancer_and_leaves_nothing_on_it():
    run = playbook("remove_node.yml", NEW, extra={"node": CP2, "remove_node_confirm": True})
    report_file.step("remove_node.yml, a control plane (etcd member), reachable", run.seconds)
    assert run.rc == 0, run.tail()
    text = " ".join(run.text.split())
    assert f"{CP2} was reset" in text and f"updating the API load balancer on {W1}" in text, run.tail()
    assert CP2 not in node_versions()
    assert sorted(m["name"] for m in bed.members(CP1)) == [CP1]
    servers = re.findall(r"^\s*server (\S+) ", bed.read(W1, LB_CONFIG), re.M)
    assert servers == [CP1], servers
    STATE["cps"] = [CP1]
    added = fresh_listing(CP2) - STATE["fresh"]
    left = sorted(line for line in added if OURS.search(line))
    say(f"remove_node.yml {CP2} (control plane, etcd member): {run.seconds:.1f} s; {W1} balances over {servers}; "
        f"on {CP2}, against its listing before it joined: {len(added)} new entries (the os role's packages), "
        f"of ours: {left}")
    assert left == [], left
    kubectl("rollout status deployment/web --timeout=180s", timeout=200)


# -- downgrade -------------------------------------------------------------------------------------


def test_a_drain_blocked_by_a_budget_stops_naming_it_and_deletes_nothing():
    apply(budget(3))
    wait("the budget to allow no disruption", lambda: json.loads(kubectl("get pdb web -o json")[1])
         .get("status", {}).get("disruptionsAllowed") == 0 and json.loads(kubectl("get pdb web -o json")[1])
         .get("status", {}).get("currentHealthy") == 3, timeout=60)
    before = sorted(p["metadata"]["uid"] for p in pods("app=web"))
    run = playbook("upgrade.yml", OLD, extra={"kubeforge_allow_downgrade": True, "node_drain_timeout": 20})
    assert run.rc != 0
    message = " ".join(run.failure().split())
    assert "PodDisruptionBudget default/web" in message and f"drain of node {W1} stopped after 20 s" in message, message
    assert sorted(p["metadata"]["uid"] for p in pods("app=web")) == before
    assert node_versions()[W1] == NEW and apiserver_versions() == {CP1: NEW}
    say(f"downgrade with a budget that allows no disruption: stopped at {W1} ({message[:200]}...); "
        f"the 3 web pods are the same")


def test_downgrade_by_one_minor_when_asked():
    kubectl("delete pdb web")
    run = playbook("upgrade.yml", OLD, extra={"kubeforge_allow_downgrade": True})
    report_file.step("upgrade.yml downgrade, 1 control plane + 1 worker", run.seconds, changed=run.changed)
    assert run.rc == 0, run.tail()
    assert node_versions() == {CP1: OLD, W1: OLD}
    assert apiserver_versions() == {CP1: OLD}
    assert kubectl("get configmap before-upgrade -o jsonpath='{.data.written}'")[1].strip() == "before"
    assert "workers " + W1 + ", then control planes " + CP1 in " ".join(run.text.split())
    kubectl("rollout status deployment/web --timeout=180s", timeout=200)
    say(f"downgrade {NEW} -> {OLD} with kubeforge_allow_downgrade: {run.seconds:.1f} s, workers first")


# -- certificates ----------------------------------------------------------------------------------


def test_certificates_are_reported_and_a_threshold_fails_naming_them():
    run = playbook("certs.yml", OLD)
    assert run.rc == 0, run.tail()
    assert "apiserver-kubelet-client" in run.text and "etcd/server" in run.text and "kubelet.conf" in run.text
    report_file.step("certs.yml report", run.seconds)
    inside = playbook("certs.yml", OLD, extra={"certs_fail_within": "400d"})
    assert inside.rc != 0
    message = inside.failure()
    assert "/etc/kubernetes/pki/apiserver.crt" in message, message
    say(f"certs.yml: the table in {run.seconds:.1f} s; certs_fail_within=400d fails naming the leaves")


def test_renewing_every_leaf_keeps_the_cluster_serving():
    serial = bed.sh(CP1, "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt")[1]
    ip = kubectl("get service web -o jsonpath='{.spec.clusterIP}'")[1].strip()
    with Clients(W1, ip) as clients:
        run = playbook("certs.yml", OLD, extra={"certs_action": "renew", "certs_renew_all": True})
    report_file.step("certs.yml renew every leaf", run.seconds)
    assert run.rc == 0, run.tail()
    assert bed.sh(CP1, "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt")[1] != serial
    assert sorted(node_versions()) == sorted([CP1, W1]) and all(ready(n) for n in (CP1, W1))
    counts = clients.counts
    say(f"certs.yml renew all: {run.seconds:.1f} s; Service {counts['svc ok']} ok / {counts['svc fail']} failed, "
        f"API {counts['api ok']} ok / {counts['api fail']} failed")
    assert counts["svc fail"] == 0, clients.errors
    assert playbook("certs.yml", OLD).rc == 0


# -- reset -----------------------------------------------------------------------------------------

# What a node holds outside the pods: files of the places the collection writes, units, links,
# firewall chains and mounts. Listed on a fresh node before it joins, and again after its reset.
LISTING = r"""
for d in /etc /usr/local /opt /var/lib /run; do find $d -xdev -maxdepth 3 2>/dev/null; done | grep -v -E \
  '^/var/lib/(apt|dpkg|systemd|ucf|polkit|private)|^/run/(systemd|user|udev|log|lock|sshd|utmp|dbus)|^/etc/(ssh/ssh_host|machine-id|ld.so.cache|alternatives)'
echo '--- units'; systemctl list-unit-files --no-legend | awk '{print $1}'
echo '--- links'; ip -o link | awk -F': ' '{print $2}' | cut -d@ -f1
echo '--- chains'; (iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep '^:' | awk '{print $1}'
echo '--- mounts'; findmnt -rn -o TARGET | grep -E '^/var/lib/kubelet/|^/run/netns|^/run/containerd' || true
"""
OURS = re.compile(r"kube|etcd|containerd|cni|flannel|crictl|runc|kubeforge|KUBE-|FLANNEL|CNI-", re.I)


def fresh_listing(node):
    # the test bed's own units and helpers (kubeforge-testbed-*) belong to the node image
    return {line for line in bed.sh(node, LISTING)[1].splitlines() if "kubeforge-testbed" not in line}


def test_reset_refuses_without_the_cluster_name():
    for extra in ({}, {"kubeforge_reset_confirm": "another-cluster"}):
        run = playbook("reset.yml", OLD, extra=extra)
        assert run.rc != 0
        assert "kubeforge_reset_confirm must be the name of the cluster" in " ".join(run.failure().split())
        assert run.changed == 0
    assert ready(CP1)


def test_a_reset_worker_holds_nothing_of_ours_and_joins_again():
    name = bed.hosts()[1].get("kubeforge_cluster_name", "kubeforge")
    run = playbook("reset.yml", OLD, extra={"kubeforge_reset_confirm": name}, limit=W1)
    report_file.step("reset.yml --limit one worker", run.seconds, changed=run.changed)
    assert run.rc == 0, run.tail()
    assert recap_hosts(run) == [W1], run.recap
    left = sorted(line for line in fresh_listing(W1) if OURS.search(line))
    # the mount points of the test bed's own volumes stay (empty), as on a fresh node
    assert [line for line in left if not line.startswith(("/var/lib/containerd", "/var/lib/etcd"))] == [], left
    assert bed.sh(W1, "ls -A /var/lib/containerd")[1].strip() == ""
    assert ready(CP1)
    join = playbook("scale.yml", OLD, limit=W1)
    report_file.step("scale.yml --limit the reset worker", join.seconds)
    assert join.rc == 0, join.tail()
    wait(f"{W1} Ready again", lambda: ready(W1), timeout=120)
    say(f"reset.yml --limit {W1}: {run.seconds:.1f} s, nothing of ours left on it; scale.yml joined it again "
        f"in {join.seconds:.1f} s")


def test_reset_of_the_whole_cluster_twice():
    name = bed.hosts()[1].get("kubeforge_cluster_name", "kubeforge")
    run = playbook("reset.yml", OLD, extra={"kubeforge_reset_confirm": name})
    report_file.step("reset.yml, the whole cluster (2 nodes)", run.seconds, changed=run.changed)
    assert run.rc == 0, run.tail()
    for node in (CP1, W1):
        assert bed.sh(node, "systemctl is-active kubelet kube-apiserver etcd containerd", check=False)[0] != 0
        assert bed.sh(node, "test ! -e /etc/kubernetes && test ! -e /usr/local/bin/kubelet && "
                            "! ip link show flannel.1 && ! iptables-save | grep -q -E 'KUBE-|FLANNEL'",
                      check=False)[0] == 0, node
    again = playbook("reset.yml", OLD, extra={"kubeforge_reset_confirm": name})
    assert again.rc == 0 and again.changed == 0, again.tail()
    say(f"reset.yml of the cluster: {run.seconds:.1f} s; again: changed=0 in {again.seconds:.1f} s")
