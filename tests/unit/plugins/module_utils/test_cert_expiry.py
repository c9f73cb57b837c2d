# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/cert_expiry.py: durations, the threshold decision, the layout read from the
catalogue, and a report over real certificates and kubeconfigs made with ``cryptography`` in a
temporary root (one expired, one expiring in minutes, kubeconfigs with embedded and referenced
client certificates, missing and broken files), plus the services started before their files changed."""

from __future__ import annotations

import base64
import datetime
import os

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.kubeforge.cluster.plugins.module_utils import cert_expiry, pki_catalog

NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)
CPS, NODES, ETCD = ["cp1", "cp2"], ["w1"], ["cp1", "e1"]
SETTINGS = {"cluster_name": "prod", "service_cidr": "10.233.0.0/18", "cluster_domain": "example.internal",
            "api_endpoint": "api.example.internal:6443", "apiserver_port": 6443,
            "apiserver_extra_sans": ["lb.example.internal"], "admin_group": "kubeadm:cluster-admins"}


# -- durations and the decision ---------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("7d", 7 * 86400), ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 90 * 60), ("1d12h", 36 * 3600),
    ("1d12h30m", 36 * 3600 + 1800), ("0.5d", 43200), ("0.01d", 864), ("1D 2H", 26 * 3600), (" 45m ", 2700),
    ("0d", 0), ("0", 0), ("7", 7 * 86400), ("1.5", 1.5 * 86400), (7, 7 * 86400), (0.25, 21600),
])
def test_parse_duration(text, seconds):
    assert cert_expiry.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "7x", "d", "h12", "12h1d", "-1d", "-1", "1w", "nan", "inf", "7 days",
                                  True, None])
def test_parse_duration_refuses_what_is_not_a_duration(text):
    with pytest.raises(cert_expiry.CertExpiryError) as exc:
        cert_expiry.parse_duration(text, "certs_fail_within")
    assert str(exc.value).startswith("certs_fail_within: ")


@pytest.mark.parametrize("seconds, text", [
    (364 * 86400 + 3600, "364d"), (86400, "1d"), (2 * 86400 - 1, "1d"), (5 * 3600 + 12 * 60 + 7, "5h 12m"),
    (3 * 3600, "3h"), (14 * 60 + 59, "14m"), (40, "40s"), (0, "expired"), (-2 * 86400 - 5, "expired 2d ago"),
    (-300, "expired 5m ago"), (None, ""),
])
def test_format_left(seconds, text):
    assert cert_expiry.format_left(seconds) == text


@pytest.mark.parametrize("left, threshold, decision", [
    (100, 3600, True), (7200, 3600, False), (3600, 3600, True), (-5, 0, True), (1, 0, False),
    (None, 0, True), (8 * 86400, 7 * 86400, False), (6 * 86400, 7 * 86400, True),
])
def test_inside_the_threshold(left, threshold, decision):
    assert cert_expiry.inside({"seconds_left": left}, threshold) is decision


# -- the layout -----------------------------------------------------------------------------------

def layout_names(host):
    cas, specs = cert_expiry.host_layout(host, CPS, NODES, ETCD)
    return [entry["name"] for entry in cert_expiry.entries(cas, specs)]


def test_layout_of_each_kind_of_host():
    assert layout_names("cp1") == [
        "ca", "front-proxy-ca", "etcd-ca", "apiserver", "apiserver-kubelet-client", "front-proxy-client",
        "admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet-client",
        "kubelet.conf", "kubelet", "kube-proxy.conf", "etcd/server", "etcd/peer", "etcd/healthcheck-client",
        "apiserver-etcd-client"]
    # not the first control plane: no super-admin.conf; not an etcd member: only the etcd client
    cp2 = layout_names("cp2")
    assert "super-admin.conf" not in cp2 and "etcd/server" not in cp2
    assert cp2[-1] == "apiserver-etcd-client" and "etcd-ca" in cp2
    assert layout_names("w1") == ["ca", "kubelet-client", "kubelet.conf", "kubelet", "kube-proxy.conf"]
    assert layout_names("e1") == ["etcd-ca", "etcd/server", "etcd/peer", "etcd/healthcheck-client"]
    assert layout_names("stranger") == []


@pytest.mark.parametrize("host", ["cp1", "cp2", "w1"])
def test_layout_paths_do_not_depend_on_the_settings(host):
    """The placeholder settings only change names and addresses inside certificates, never a path."""
    _cas, specs = cert_expiry.host_layout(host, CPS, NODES, ETCD)
    real = pki_catalog.host_certificates(host, "192.0.2.10", CPS, NODES, SETTINGS)
    fields = ("name", "ca", "cert_path", "key_path")
    assert [tuple(s[f] for f in fields) for s in specs if s["ca"] != "etcd"] == \
        [tuple(s[f] for f in fields) for s in real]
    assert [(s["kubeconfig"] or {}).get("dest") for s in specs if s["ca"] != "etcd"] == \
        [(s["kubeconfig"] or {}).get("dest") for s in real]


def test_entries_report_an_embedded_client_certificate_in_its_kubeconfig():
    cas, specs = cert_expiry.host_layout("w1", CPS, NODES, ETCD)
    by_name = {e["name"]: e for e in cert_expiry.entries(cas, specs)}
    assert by_name["kube-proxy.conf"]["copy"] == pki_catalog.CLIENT_DIR + "/kube-proxy.crt"
    assert by_name["kubelet.conf"]["copy"] is None  # it references the file, which has its own row
    assert by_name["kubelet-client"]["path"] == pki_catalog.KUBELET_PKI_DIR + "/kubelet-client.crt"
    assert by_name["ca"]["path"] == pki_catalog.PKI_DIR + "/ca.crt"


def test_service_inputs_come_from_the_catalogue():
    _cas, specs = cert_expiry.host_layout("cp1", CPS, NODES, ETCD)
    inputs = cert_expiry.service_inputs(specs)
    assert list(inputs) == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                            "kube-proxy"]
    assert pki_catalog.PKI_DIR + "/apiserver-etcd-client.key" in inputs["kube-apiserver"]
    assert pki_catalog.KUBECONFIG_DIR + "/scheduler.conf" in inputs["kube-scheduler"]
    # the CA files they read: a CA rotation changes them, and a restart follows
    assert {pki_catalog.PKI_DIR + "/ca.crt", pki_catalog.PKI_DIR + "/front-proxy-ca.crt"} <= set(inputs["kube-apiserver"])
    assert pki_catalog.PKI_DIR + "/ca-signer.crt" in inputs["kube-controller-manager"]
    assert pki_catalog.PKI_DIR + "/ca.crt" in inputs["kubelet"]
    assert pki_catalog.PKI_DIR + "/etcd/ca.crt" in inputs["etcd"]
    _cas, specs = cert_expiry.host_layout("e1", CPS, NODES, ETCD)
    assert list(cert_expiry.service_inputs(specs)) == ["etcd"]


# -- real certificates ------------------------------------------------------------------------------

class Tree:
    """Files below a temporary root, at the paths they have on a host."""

    def __init__(self, root):
        self.root = str(root)

    def write(self, path, data):
        full = self.root + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data if isinstance(data, bytes) else data.encode())
        return full


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def sign(common_name, key, issuer=None, left=365 * DAY, ca=False, client=True, organization=None):
    """A certificate for ``key`` valid until NOW + ``left``; ``issuer`` is (cert, key), None for self-signed."""
    attributes = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []) + \
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    subject = x509.Name(attributes)
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - 400 * DAY).not_valid_after(NOW + left)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def kubeconfig(user, cert=None, key=None, cert_path=None, key_path=None):
    credentials = {"client-certificate-data": base64.b64encode(pem(cert)).decode(),
                   "client-key-data": base64.b64encode(key_pem(key)).decode()} if cert is not None else \
        {"client-certificate": cert_path, "client-key": key_path}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx", "preferences": {},
        "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "someone-else", "user": {"token": "x"}}, {"name": user, "user": credentials}],
        "contexts": [{"name": "ctx", "context": {"cluster": "prod", "user": user}}],
    })


@pytest.fixture
def cluster(tmp_path):
    """cp1's files (first control plane, etcd member) below tmp_path; returns (tree, certificates)."""
    tree = Tree(tmp_path)
    pki_dir, kube, kubelet = pki_catalog.PKI_DIR, pki_catalog.KUBECONFIG_DIR, pki_catalog.KUBELET_PKI_DIR
    keys = {name: new_key() for name in ("ca", "fp", "etcd", "other", "leaf")}
    ca = (sign("kubernetes-ca", keys["ca"], left=3000 * DAY, ca=True), keys["ca"])
    fp = (sign("kubernetes-front-proxy-ca", keys["fp"], left=3000 * DAY, ca=True), keys["fp"])
    etcd = (sign("etcd-ca", keys["etcd"], left=3000 * DAY, ca=True), keys["etcd"])
    other = (sign("kubernetes-ca", keys["other"], left=3000 * DAY, ca=True), keys["other"])  # same name, other key
    leaf = keys["leaf"]
    made = {
        "ca": ca[0], "front-proxy-ca": fp[0], "etcd-ca": etcd[0],
        "apiserver": sign("kube-apiserver", leaf, ca, client=False),
        "apiserver-kubelet-client": sign("kube-apiserver-kubelet-client", leaf, ca, left=-2 * DAY - MINUTE),
        "front-proxy-client": sign("front-proxy-client", leaf, fp, left=10 * MINUTE),
        "admin": sign("kubernetes-admin", leaf, ca, left=300 * DAY, organization="kubeadm:cluster-admins"),
        "super-admin": sign("kubernetes-super-admin", leaf, ca, left=200 * DAY, organization="system:masters"),
        "super-admin-copy": sign("kubernetes-super-admin", leaf, ca, left=400 * DAY, organization="system:masters"),
        "kubelet-client": sign("system:node:cp1", leaf, ca, left=5 * HOUR, organization="system:nodes"),
        "kubelet": sign("system:node:cp1", leaf, other, client=False, organization="system:nodes"),
        "kube-proxy": sign("system:kube-proxy", leaf, ca, left=200 * DAY),
        "etcd/server": sign("kube-etcd", leaf, etcd, left=100 * DAY, client=False),
    }
    tree.write(pki_dir + "/ca.crt", pem(ca[0]))
    tree.write(pki_dir + "/front-proxy-ca.crt", pem(fp[0]))
    tree.write(pki_dir + "/etcd/ca.crt", pem(etcd[0]))
    for name in ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "etcd/server"):
        tree.write("%s/%s.crt" % (pki_dir, name), pem(made[name]))
        tree.write("%s/%s.key" % (pki_dir, name), key_pem(leaf))
    tree.write(kube + "/admin.conf", kubeconfig("kubernetes-admin", made["admin"], leaf))
    tree.write(pki_catalog.CLIENT_DIR + "/admin.crt", pem(made["admin"]))
    tree.write(kube + "/super-admin.conf", kubeconfig("kubernetes-super-admin", made["super-admin"], leaf))
    tree.write(pki_catalog.CLIENT_DIR + "/super-admin.crt", pem(made["super-admin-copy"]))
    tree.write(kube + "/controller-manager.conf", "clusters: [unclosed\n")
    # scheduler.conf is missing
    tree.write(kubelet + "/kubelet-client.crt", pem(made["kubelet-client"]))
    tree.write(kube + "/kubelet.conf", kubeconfig("system:node:cp1", cert_path=kubelet + "/kubelet-client.crt",
                                                  key_path=kubelet + "/kubelet-client.key"))
    tree.write(kubelet + "/kubelet.crt", pem(made["kubelet"]))
    tree.write(kube + "/kube-proxy.conf", kubeconfig("system:kube-proxy", made["kube-proxy"], leaf))
    return tree, made


def run_report(tree, fail_within="7d", **kwargs):
    return cert_expiry.report("cp1", CPS, NODES, ETCD, fail_within, now=NOW, root=tree.root, **kwargs)


def test_report_rows(cluster):
    tree, _made = cluster
    result = run_report(tree)
    rows = {row["name"]: row for row in result["rows"]}
    assert result["host"] == "cp1" and len(rows) == len(result["rows"]) == 18

    assert rows["ca"]["issuer"] == "self-signed" and rows["ca"]["signed_by_ca"] is True
    assert rows["ca"]["subject"] == "kubernetes-ca" and rows["ca"]["left"] == "3000d"

    apiserver = rows["apiserver"]
    assert apiserver["status"] == "ok" and apiserver["left"] == "365d" and apiserver["inside"] is False
    assert apiserver["issuer"] == "kubernetes-ca" and apiserver["signed_by_ca"] is True
    assert apiserver["path"] == "/etc/kubernetes/pki/apiserver.crt"  # the host's path, not the test's
    assert apiserver["not_after"] == "2031-06-01T12:00:00Z" and apiserver["expires"] == "2031-06-01 12:00"
    assert apiserver["seconds_left"] == 365 * 86400

    expired = rows["apiserver-kubelet-client"]
    assert expired["status"] == "expired" and expired["left"] == "expired 2d ago" and expired["inside"] is True
    assert expired["seconds_left"] == -(2 * 86400 + 60)

    minutes = rows["front-proxy-client"]
    assert minutes["left"] == "10m" and minutes["status"] == "within 7d" and minutes["inside"] is True
    assert minutes["issuer"] == "kubernetes-front-proxy-ca" and minutes["signed_by_ca"] is True

    admin = rows["admin.conf"]
    assert admin["kind"] == "kubeconfig" and admin["client_certificate"] == "embedded"
    assert admin["subject"] == "kubernetes-admin" and admin["left"] == "300d" and admin["problem"] == ""
    assert admin["copy_seconds_left"] == 300 * 86400

    super_admin = rows["super-admin.conf"]
    assert super_admin["left"] == "200d" and super_admin["status"] == "ok"
    assert "the copy at /etc/kubernetes/pki/kubeconfig/super-admin.crt is another certificate" in super_admin["problem"]

    assert rows["controller-manager.conf"]["status"] == "unreadable"
    assert "is not YAML" in rows["controller-manager.conf"]["problem"]
    assert rows["scheduler.conf"]["status"] == "missing" and rows["scheduler.conf"]["problem"] == ""

    referenced = rows["kubelet.conf"]
    assert referenced["client_certificate"] == "/var/lib/kubelet/pki/kubelet-client.crt"
    assert referenced["left"] == rows["kubelet-client"]["left"] == "5h"
    assert referenced["subject"] == "system:node:cp1"

    kubelet = rows["kubelet"]
    assert kubelet["issuer"] == "kubernetes-ca" and kubelet["signed_by_ca"] is False
    assert kubelet["problem"] == "not signed by the CA at /etc/kubernetes/pki/ca.crt"

    assert rows["kube-proxy.conf"]["left"] == "200d" and rows["kube-proxy.conf"]["problem"] == ""  # no copy: fine
    assert rows["etcd/server"]["issuer"] == "etcd-ca" and rows["etcd/server"]["left"] == "100d"
    for name in ("etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"):
        assert rows[name]["status"] == "missing" and rows[name]["seconds_left"] is None


def test_report_threshold_and_order(cluster):
    tree, _made = cluster
    week = run_report(tree, "7d")
    assert [row["name"] for row in week["failing"]] == [
        "apiserver-kubelet-client", "front-proxy-client", "controller-manager.conf", "scheduler.conf",
        "kubelet-client", "kubelet.conf", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"]
    assert week["threshold_seconds"] == 7 * 86400
    hour = run_report(tree, "1h")
    assert {row["name"] for row in hour["failing"]} == {
        "apiserver-kubelet-client", "front-proxy-client", "controller-manager.conf", "scheduler.conf", "etcd/peer",
        "etcd/healthcheck-client", "apiserver-etcd-client"}
    assert {row["name"]: row["status"] for row in hour["rows"]}["kubelet-client"] == "ok"
    year = run_report(tree, "400d")
    assert {row["name"] for row in year["rows"] if not row["inside"]} == {"ca", "front-proxy-ca", "etcd-ca"}

    ordered = [row["name"] for row in sorted(week["rows"], key=lambda row: row["order"])]
    # what cannot be read first (in the catalogue's order), then by time left
    assert ordered[:5] == ["controller-manager.conf", "scheduler.conf", "etcd/peer", "etcd/healthcheck-client",
                           "apiserver-etcd-client"]
    assert ordered[5:8] == ["apiserver-kubelet-client", "front-proxy-client", "kubelet-client"]
    assert ordered[-3:] == ["ca", "front-proxy-ca", "etcd-ca"]


def test_report_longest_left_covers_the_copies(cluster):
    tree, _made = cluster
    longest = run_report(tree)["longest_left"]
    # the copy beside super-admin.conf (400 days) is what the pki role compares: it counts
    assert longest == {"kubernetes": 400 * 86400, "front-proxy": 600, "etcd": 100 * 86400}


def test_report_refuses_a_bad_threshold(cluster):
    tree, _made = cluster
    with pytest.raises(cert_expiry.CertExpiryError, match="fail_within: '30 days' is not a duration"):
        run_report(tree, "30 days")


def test_a_missing_kubeconfig_still_counts_its_copy(cluster):
    tree, _made = cluster
    os.unlink(tree.root + "/etc/kubernetes/super-admin.conf")
    result = run_report(tree)
    row = {row["name"]: row for row in result["rows"]}["super-admin.conf"]
    assert row["status"] == "missing" and row["copy_seconds_left"] == 400 * 86400
    assert result["longest_left"]["kubernetes"] == 400 * 86400


def test_unreadable_certificate_and_kubeconfig_without_certificate(tmp_path):
    tree = Tree(tmp_path)
    tree.write(pki_catalog.PKI_DIR + "/ca.crt", b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    tree.write(pki_catalog.KUBECONFIG_DIR + "/kube-proxy.conf", yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"user": "u"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}]}))
    tree.write(pki_catalog.KUBECONFIG_DIR + "/kubelet.conf", yaml.safe_dump({
        "users": [{"name": "u", "user": {"client-certificate": "pki/missing.crt"}}]}))
    rows = {row["name"]: row for row in
            cert_expiry.report("w1", CPS, NODES, ETCD, now=NOW, root=str(tmp_path))["rows"]}
    assert rows["ca"]["status"] == "unreadable" and "is not a valid PEM certificate" in rows["ca"]["problem"]
    assert rows["kube-proxy.conf"]["status"] == "unreadable"
    assert "has no client certificate" in rows["kube-proxy.conf"]["problem"]
    # the only user, and a path relative to the kubeconfig
    assert rows["kubelet.conf"]["problem"] == \
        "/etc/kubernetes/kubelet.conf references /etc/kubernetes/pki/missing.crt, which is missing"


# -- services ---------------------------------------------------------------------------------------

def fake_proc(root, pids):
    """A /proc tree where each pid started at the given time (seconds since the epoch)."""
    ticks = os.sysconf("SC_CLK_TCK")
    btime = int(min(pids.values())) - 86400
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "stat"), "w") as handle:
        handle.write("cpu  1 2 3\nbtime %d\n" % btime)
    for pid, started in pids.items():
        os.makedirs(os.path.join(root, str(pid)))
        fields = ["S"] + ["0"] * 18 + [str(int(round((started - btime) * ticks)))] + ["0"] * 30
        with open(os.path.join(root, str(pid), "stat"), "w") as handle:
            handle.write("%d (prog) %s\n" % (pid, " ".join(fields)))
    return root


def test_services_started_before_their_certificates_changed(cluster, tmp_path):
    tree, _made = cluster
    changed = os.stat(tree.root + "/etc/kubernetes/pki/apiserver.crt").st_ctime
    pids = {"kube-apiserver": 101, "kubelet": 102, "etcd": 103}
    proc = fake_proc(str(tmp_path / "proc"), {101: changed - 60, 102: changed + 3600, 103: changed - 60})

    def run(argv, _timeout):
        assert argv[:2] == ["systemctl", "show"]
        unit = argv[2]
        if unit in pids:
            return 0, "ActiveState=active\nSubState=running\nMainPID=%d\nLoadState=loaded\n" % pids[unit], ""
        return 0, "ActiveState=inactive\nSubState=dead\nMainPID=0\nLoadState=not-found\n", ""

    result = run_report(tree, run=run, proc=proc)
    services = {s["name"]: s for s in result["services"]}
    assert set(services) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                             "kube-proxy"}
    assert "/etc/kubernetes/pki/apiserver.crt" in services["kube-apiserver"]["stale"]
    assert "/etc/kubernetes/pki/etcd/server.crt" in services["etcd"]["stale"]
    assert services["kubelet"]["stale"] == [] and services["kubelet"]["active"] is True
    assert services["kube-proxy"] == {"name": "kube-proxy", "active": False, "state": "inactive/dead", "stale": []}
    assert result["restart"] == ["etcd", "kube-apiserver"]
    assert run_report(tree)["services"] == [] and run_report(tree)["restart"] == []
