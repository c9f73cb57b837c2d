# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The cluster PKI on the scenario's nodes, after converge and idempotence.

First what converge left (every certificate against its CA and the upstream requirements table,
modes, kubeconfigs, a real TLS handshake), then, in order: check mode and diff, a changed SAN,
renewal, adding a worker with --limit, a control plane that lost its CA files, and control planes
holding different CAs. The playbooks are the collection's own, run as a user would.
"""

import base64
import json
import os
import shlex
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "etcd", "tests"))

from etcdtest import Bed, Report  # noqa: E402

CLUSTER = "mol-pki"
CP1, CP2, W1, W2 = "mol-pki-cp1", "mol-pki-cp2", "mol-pki-w1", "mol-pki-w2"
PKI = "/etc/kubernetes/pki"
TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "data", "upstream",
                     "pki-requirements.json")

bed = Bed(CLUSTER, "")
report = Report("pki", label="pki lifecycle")

CONTROL_PLANE_CERTS = {
    # path: (CA file, CN, O)
    PKI + "/apiserver.crt": ("ca.crt", "kube-apiserver", None),
    PKI + "/apiserver-kubelet-client.crt": ("ca.crt", "kube-apiserver-kubelet-client", "kubeadm:cluster-admins"),
    PKI + "/front-proxy-client.crt": ("front-proxy-ca.crt", "front-proxy-client", None),
}
# kubeconfig: (CN, O, embedded client certificate)
CONTROL_PLANE_KUBECONFIGS = {
    "admin.conf": ("kubernetes-admin", "kubeadm:cluster-admins", True),
    "controller-manager.conf": ("system:kube-controller-manager", None, True),
    "scheduler.conf": ("system:kube-scheduler", None, True),
}
NODE_KUBECONFIGS = {
    "kubelet.conf": ("system:node:{node}", "system:nodes", False),
    "kube-proxy.conf": ("system:kube-proxy", None, True),
}
CA_FILES = ["ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"]


def playbook(name, inv, extra=None, **options):
    """A playbook run with the cluster PKI (the Bed's default skips it), without containerd, on the
    etcd release the scenario converged with."""
    extra = dict({"kubeforge_etcd_version": "{{ testbed_versions.etcd }}"}, **(extra or {}))
    return bed.playbook(name, inv, extra, skip_tags=("container_runtime", "kubernetes"), **options)


def inventory(workers=(W1,), name="inventory"):
    return bed.inventory({"kube_control_plane": [CP1, CP2], "kube_node": list(workers), "etcd": [CP1]}, name=name)


def sh(node, command, check=True):
    return bed.sh(node, command, check=check)


def subject(node, path, pem=None):
    """(CN, O) of a certificate file, or of PEM text given on stdin."""
    source = "-in %s" % path if pem is None else ""
    command = "openssl x509 %s -noout -subject -nameopt sep_multiline,utf8" % source
    if pem is not None:
        command = "printf '%%s' %s | %s" % (shlex.quote(pem), command)
    out = sh(node, command)[1]
    fields = dict(line.strip().split("=", 1) for line in out.splitlines()[1:] if "=" in line)
    return fields.get("CN"), fields.get("O")


def fingerprints(node, paths):
    out = sh(node, "sha256sum %s" % " ".join(paths))[1]
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def serials(node, paths):
    return {p: sh(node, "openssl x509 -in %s -noout -serial" % p)[1].strip() for p in paths}


def kubeconfig(node, name):
    return yaml.safe_load(bed.read(node, "/etc/kubernetes/" + name))


def node_leafs(node):
    paths = ["/var/lib/kubelet/pki/kubelet-client.crt", "/var/lib/kubelet/pki/kubelet.crt",
             PKI + "/kubeconfig/kube-proxy.crt"]
    if node in (CP1, CP2):
        paths += list(CONTROL_PLANE_CERTS) + [PKI + "/kubeconfig/%s.crt" % n
                                              for n in ("admin", "controller-manager", "scheduler")]
    if node == CP1:
        paths.append(PKI + "/kubeconfig/super-admin.crt")
    return paths


# -- what converge left ----------------------------------------------------------------------

def test_control_planes_share_one_ca_and_the_worker_holds_only_its_certificate():
    on_cp1 = fingerprints(CP1, ["%s/%s" % (PKI, f) for f in CA_FILES])
    assert fingerprints(CP2, ["%s/%s" % (PKI, f) for f in CA_FILES]) == on_cp1
    assert fingerprints(W1, [PKI + "/ca.crt"]) == {PKI + "/ca.crt": on_cp1[PKI + "/ca.crt"]}
    held = sorted(sh(W1, "cd %s && find . -type f" % PKI)[1].split())
    assert held == ["./ca.crt", "./kubeconfig/kube-proxy.crt", "./kubeconfig/kube-proxy.key"], held
    assert subject(CP1, PKI + "/ca.crt")[0] == "kubernetes-ca"
    assert subject(CP1, PKI + "/front-proxy-ca.crt")[0] == "kubernetes-front-proxy-ca"


@pytest.mark.parametrize("node", [CP1, CP2, W1])
def test_every_certificate_verifies_against_its_ca(node):
    for path in node_leafs(node):
        ca = "front-proxy-ca.crt" if "front-proxy-client" in path else "ca.crt"
        rc, out = sh(node, "openssl verify -CAfile %s/%s %s" % (PKI, ca, path), check=False)
        assert rc == 0 and out.strip().endswith("OK"), out


@pytest.mark.parametrize("node", [CP1, CP2])
def test_control_plane_certificates_match_the_upstream_table(node):
    with open(TABLE) as handle:
        table = json.load(handle)
    wanted = {c["default_cn"]: c for c in table["required_certificates"]}
    for path, (ca, cn, org) in CONTROL_PLANE_CERTS.items():
        assert subject(node, path) == (cn, org), path
        entry = wanted[cn]
        text = sh(node, "openssl x509 -in %s -noout -ext extendedKeyUsage" % path)[1]
        for kind in entry["kind"]:
            assert ("TLS Web %s Authentication" % kind.capitalize()) in text, (path, text)
    sans = sh(node, "openssl x509 -in %s/apiserver.crt -noout -ext subjectAltName" % PKI)[1]
    for name in ("DNS:%s" % node, "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                 "DNS:kubernetes.default.svc.cluster.local", "IP Address:%s" % bed.address(node),
                 "IP Address:10.233.0.1", "IP Address:127.0.0.1"):
        assert name in sans, (name, sans)


@pytest.mark.parametrize("node", [CP1, CP2, W1])
def test_kubeconfigs_carry_the_table_subjects_and_the_right_server(node):
    configs = dict(NODE_KUBECONFIGS)
    if node != W1:
        configs.update(CONTROL_PLANE_KUBECONFIGS)
    if node == CP1:
        configs["super-admin.conf"] = ("kubernetes-super-admin", "system:masters", True)
    present = sh(node, "ls /etc/kubernetes/*.conf")[1].split()
    assert sorted(os.path.basename(p) for p in present) == sorted(configs)
    own = "https://%s:6443" % bed.address(node)
    for name, (cn, org, embedded) in configs.items():
        assert sh(node, "stat -c %a /etc/kubernetes/" + name)[1].strip() == "600", name
        config = kubeconfig(node, name)
        user = config["users"][0]["user"]
        if embedded:
            pem = base64.b64decode(user["client-certificate-data"]).decode()
            assert "client-key-data" in user
        else:
            assert user["client-certificate"] == "/var/lib/kubelet/pki/kubelet-client.crt"
            pem = bed.read(node, user["client-certificate"])
        assert subject(node, None, pem) == (cn.format(node=node), org), name
        server = config["clusters"][0]["cluster"]["server"]
        if node == W1:
            assert server == "https://127.0.0.1:6443", name  # the local load balancer
        else:
            assert server == own, name


@pytest.mark.parametrize("node", [CP1, CP2, W1])
def test_private_keys_are_0600_and_owned_by_root(node):
    out = sh(node, "find /etc/kubernetes /var/lib/kubelet/pki -path /etc/kubernetes/pki/etcd -prune -o "
                   "-name '*.key' -printf '%m %u %p\\n'")[1]
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(line.startswith("600 root ") for line in lines), out


def test_tls_handshake_with_issued_certificates():
    """kube-apiserver's certificate on cp2 serves; a worker's kube-proxy certificate is accepted as client."""
    sh(CP2, "systemd-run --unit pki-tls-probe --collect openssl s_server -quiet -accept 16443 -www "
            "-cert %s/apiserver.crt -key %s/apiserver.key -CAfile %s/ca.crt -Verify 1" % (PKI, PKI, PKI))
    try:
        sh(CP2, "for i in $(seq 50); do ss -ltn | grep -q ':16443 ' && exit 0; sleep 0.1; done; exit 1")
        probe = ("import ssl, socket, sys; c = ssl.create_default_context(cafile='%s/ca.crt'); "
                 "c.load_cert_chain('%s/kubeconfig/kube-proxy.crt', '%s/kubeconfig/kube-proxy.key'); "
                 "s = c.wrap_socket(socket.create_connection(('%s', 16443), timeout=10), server_hostname=sys.argv[1]); "
                 "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100).decode().split()[1])"
                 % (PKI, PKI, PKI, bed.address(CP2)))
        rc, out = sh(W1, "python3 -c \"%s\" kubernetes.default.svc" % probe, check=False)
        assert rc == 0 and out.strip() == "200", out
        rc, out = sh(W1, "python3 -c \"%s\" other.example.com" % probe, check=False)
        assert rc != 0 and "CERTIFICATE_VERIFY_FAILED" in out, out
    finally:
        sh(CP2, "systemctl stop pki-tls-probe", check=False)


# -- lifecycle -------------------------------------------------------------------------------

def test_check_mode_with_a_new_san_reports_and_changes_nothing():
    before = fingerprints(CP1, node_leafs(CP1))
    run = playbook("install.yml", inventory(), {"pki_apiserver_extra_sans": ["api.example.com"]},
                       check=True, diff=True)
    report.step("install.yml --check --diff with a new apiserver SAN", run.seconds)
    assert run.rc == 0, run.tail()
    assert run.recap[CP1]["changed"] > 0 and run.recap[W1]["changed"] == 0, run.recap
    assert "PRIVATE KEY" not in run.output and "client-key-data" not in run.output
    assert fingerprints(CP1, node_leafs(CP1)) == before


def test_new_san_reissues_only_the_apiserver_certificates():
    keys = fingerprints(CP1, [PKI + "/apiserver.key", PKI + "/ca.key"])
    others = {n: fingerprints(n, [p for p in node_leafs(n) if not p.endswith("/apiserver.crt")]) for n in (CP1, CP2, W1)}
    run = playbook("install.yml", inventory(), {"pki_apiserver_extra_sans": ["api.example.com", "192.0.2.7"]})
    report.step("install.yml with a new apiserver SAN", run.seconds)
    assert run.rc == 0, run.tail()
    for node in (CP1, CP2):
        sans = sh(node, "openssl x509 -in %s/apiserver.crt -noout -ext subjectAltName" % PKI)[1]
        assert "DNS:api.example.com" in sans and "IP Address:192.0.2.7" in sans, sans
    assert {n: fingerprints(n, [p for p in node_leafs(n) if not p.endswith("/apiserver.crt")])
            for n in (CP1, CP2, W1)} == others
    assert fingerprints(CP1, [PKI + "/apiserver.key", PKI + "/ca.key"]) == keys
    assert run.recap[W1]["changed"] == 0


def test_renewal_reissues_every_leaf_and_keeps_keys_and_cas():
    extra = {"pki_apiserver_extra_sans": ["api.example.com", "192.0.2.7"]}
    before = {n: serials(n, node_leafs(n)) for n in (CP1, CP2, W1)}
    keys = {n: fingerprints(n, [p[:-4] + ".key" for p in node_leafs(n)]) for n in (CP1, CP2, W1)}
    cas = fingerprints(CP1, ["%s/%s" % (PKI, f) for f in CA_FILES])
    run = playbook("install.yml", inventory(), dict(extra, pki_cert_renew_before_days=400))
    assert run.rc != 0 and "pki_cert_renew_before_days (400) must be at least 0 and smaller than" in run.failure()
    assert {n: serials(n, node_leafs(n)) for n in (CP1, CP2, W1)} == before
    run = playbook("install.yml", inventory(), dict(extra, pki_cert_validity_days=366, pki_cert_renew_before_days=365))
    report.step("install.yml renewing every leaf certificate (renew_before 365 days)", run.seconds)
    assert run.rc == 0, run.tail()
    after = {n: serials(n, node_leafs(n)) for n in (CP1, CP2, W1)}
    for node in (CP1, CP2, W1):
        assert all(after[node][p] != before[node][p] for p in before[node]), (node, before[node], after[node])
    assert {n: fingerprints(n, [p[:-4] + ".key" for p in node_leafs(n)]) for n in (CP1, CP2, W1)} == keys
    assert fingerprints(CP1, ["%s/%s" % (PKI, f) for f in CA_FILES]) == cas
    run = playbook("install.yml", inventory(), extra)
    report.step("install.yml no-op after the renewal", run.seconds, changed=run.changed,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0 and run.changed == 0, run.tail()


def test_scale_with_limit_adds_a_worker_signed_by_the_ca_host():
    inv = inventory(workers=(W1, W2), name="two-workers")
    before = {n: fingerprints(n, node_leafs(n)) for n in (CP1, CP2, W1)}
    run = playbook("scale.yml", inv, {"pki_apiserver_extra_sans": ["api.example.com", "192.0.2.7"]}, limit=W2)
    report.step("scale.yml --limit one new worker (preflight, os, pki)", run.seconds,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0, run.tail()
    assert set(run.recap) == {W2}, run.recap
    for path in node_leafs(W2):
        assert sh(W2, "openssl verify -CAfile %s/ca.crt %s" % (PKI, path))[1].strip().endswith("OK")
    assert fingerprints(W2, [PKI + "/ca.crt"])[PKI + "/ca.crt"] == fingerprints(CP1, [PKI + "/ca.crt"])[PKI + "/ca.crt"]
    assert subject(W2, "/var/lib/kubelet/pki/kubelet-client.crt") == ("system:node:" + W2, "system:nodes")
    assert {n: fingerprints(n, node_leafs(n)) for n in (CP1, CP2, W1)} == before


def test_control_plane_that_lost_its_ca_gets_the_same_ca_back():
    """cp1 loses every CA file: cp2 becomes the source and nothing is regenerated."""
    extra = {"pki_apiserver_extra_sans": ["api.example.com", "192.0.2.7"]}
    cas = fingerprints(CP2, ["%s/%s" % (PKI, f) for f in CA_FILES])
    sh(CP1, "cd %s && rm -f %s" % (PKI, " ".join(CA_FILES)))
    run = playbook("install.yml", inventory(workers=(W1, W2), name="two-workers"), extra)
    report.step("install.yml restoring the CA files of a control plane from another", run.seconds)
    assert run.rc == 0, run.tail()
    assert fingerprints(CP1, ["%s/%s" % (PKI, f) for f in CA_FILES]) == {
        p.replace(CP2, CP1): v for p, v in cas.items()}
    assert sh(CP1, "stat -c %a " + PKI + "/ca.key")[1].strip() == "600"
    assert run.recap[W1]["changed"] == 0 and run.recap[W2]["changed"] == 0, run.recap


def test_control_planes_with_different_cas_are_refused_before_any_change():
    extra = {"pki_apiserver_extra_sans": ["api.example.com", "192.0.2.7"]}
    sh(CP2, "cp -a %s/ca.crt /var/tmp/ca.crt.kept && cp -a %s/ca.key /var/tmp/ca.key.kept && "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other-ca -days 2 "
            "-keyout %s/ca.key -out %s/ca.crt 2>/dev/null" % (PKI, PKI, PKI, PKI))
    try:
        before = {n: fingerprints(n, node_leafs(n)) for n in (CP1, CP2, W1)}
        run = playbook("install.yml", inventory(workers=(W1, W2), name="two-workers"), extra)
        report.step("install.yml refusing control planes with different CAs", run.seconds)
        assert run.rc != 0
        message = run.failure()
        assert "ca.crt differs between control planes" in message and CP1 in message and CP2 in message, message
        assert "ca.key differs" in message, message
        assert {n: fingerprints(n, node_leafs(n)) for n in (CP1, CP2, W1)} == before
        assert subject(CP2, PKI + "/ca.crt")[0] == "other-ca"
    finally:
        sh(CP2, "mv /var/tmp/ca.crt.kept %s/ca.crt && mv /var/tmp/ca.key.kept %s/ca.key" % (PKI, PKI))
    run = playbook("install.yml", inventory(workers=(W1, W2), name="two-workers"), extra)
    report.step("install.yml no-op with two workers", run.seconds, changed=run.changed,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0 and run.changed == 0, run.tail()
