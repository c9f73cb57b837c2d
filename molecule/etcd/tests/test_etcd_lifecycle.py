# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""etcd lifecycle on the scenario's three nodes, after converge and idempotence.

In order (each step relies on the ones before): mutual TLS, certificates, metrics, 1,000 keys,
refusals (a skipped minor version, a stopped member), a rolling upgrade from the oldest to the
newest etcd of the test mirror under a steady stream of writes, a downgrade refusal, a rotation of
the etcd CA under writes, snapshots, a restore refusal, then the nodes are destroyed, created again, and the snapshot restored into them.
"""

import datetime
import os
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etcdtest import PKI, WORK, Bed, Report, mirror_versions, version_key

CLUSTER = "mol-etcd"
LAYOUT = "1:cp+etcd@bookworm,1:cp+etcd@trixie,1:etcd@bookworm"
CP1, CP2, ETCD1 = "mol-etcd-cp1", "mol-etcd-cp2", "mol-etcd-etcd1"
MEMBERS = [CP1, CP2, ETCD1]
GROUPS = {"kube_control_plane": [CP1, CP2], "etcd": MEMBERS}
VERSIONS = mirror_versions("etcd")
# the upgrade moves one minor version at a time: from the oldest release of the mirror to the newest
# release of the next minor (the mirror also holds a newer minor, built from Go modules)
OLD = VERSIONS[0]
NEW = [v for v in VERSIONS if v.split(".")[:2] == ["3", str(int(OLD.split(".")[1]) + 1)]][-1]
OLDER = [v for v in VERSIONS if version_key(v) < version_key(NEW)][-1]  # the release just below NEW
SKIP_TO = "3.6.9"  # in the collection's versions table, two minor versions above the 3.4 start
BACKUPS = os.path.join(WORK, "etcd-backups")

bed = Bed(CLUSTER, LAYOUT)
report = Report("etcd")
state = {}
shutil.rmtree(BACKUPS, ignore_errors=True)  # the work directory outlives a scenario run


@pytest.fixture(scope="module")
def inventory():
    return bed.inventory(GROUPS)


def versions_running():
    return {name: s["version"] for name, s in bed.status(CP1).items()}


def binaries():
    return {node: bed.sh(node, "etcd --version | head -1")[1].split()[-1] for node in MEMBERS}


def test_old_version_is_older_than_new():
    assert OLD.startswith("3.4.") and NEW.startswith("3.5."), VERSIONS


def test_members_healthy_over_mutual_tls():
    items = bed.wait_healthy(CP1, 3)
    assert sorted(i["endpoint"] for i in items) == sorted("https://%s:2379" % bed.address(n) for n in MEMBERS)
    members = bed.members(ETCD1)
    assert sorted(m["name"] for m in members) == sorted(MEMBERS)
    assert all(m["peerURLs"] == ["https://%s:2380" % bed.address(m["name"])] for m in members)
    assert not any(m.get("isLearner") for m in members)
    assert set(versions_running().values()) == {OLD}


def _ca_file():
    path = os.path.join(WORK, "etcd-ca.crt")
    with open(path, "w") as handle:
        handle.write(bed.read(CP1, "/etc/kubernetes/pki/etcd/ca.crt"))
    return path


def _foreign_client(tmp_path):
    """A client certificate from a CA etcd does not trust (same CN as a real one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-ca")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-etcd-healthcheck-client")]))
            .issuer_name(name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "foreign.crt", tmp_path / "foreign.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _https(url, ca, cert=None, key=None):
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    request = urllib.request.Request(url, data=b'{"key": "Zm9v"}', headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.read()


def test_plain_http_and_foreign_certificates_refused(tmp_path):
    ca = _ca_file()
    address = bed.address(CP1)
    # plain HTTP to the client port: etcd closes the connection (or answers only with an error)
    with socket.create_connection((address, 2379), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        answer = sock.recv(4096).decode(errors="replace")
    assert " 200 " not in answer.split("\r\n", 1)[0] and "health" not in answer, answer
    foreign_cert, foreign_key = _foreign_client(tmp_path)
    for port in (2379, 2380):
        # no client certificate, then one from another CA: the TLS handshake fails
        for cert, key in ((None, None), (foreign_cert, foreign_key)):
            with pytest.raises((ssl.SSLError, ConnectionResetError, urllib.error.URLError)):
                _https("https://%s:%d/v3/kv/range" % (address, port), ca, cert, key)
    # the member's own client certificate works (the positive control, from the node)
    rc, out = bed.etcdctl(CP1, "get --prefix / --keys-only --limit 1", endpoints="https://%s:2379" % address)
    assert rc == 0


def test_certificates_follow_kubeadm_names():
    expected = {
        "etcd/server": ("kube-etcd", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        "etcd/peer": ("kube-etcd-peer", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        "etcd/healthcheck-client": ("kube-etcd-healthcheck-client", {ExtendedKeyUsageOID.CLIENT_AUTH}),
    }
    ca = x509.load_pem_x509_certificate(bed.read(CP1, "/etc/kubernetes/pki/etcd/ca.crt").encode())
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "etcd-ca"
    for node in MEMBERS:
        assert bed.read(node, "/etc/kubernetes/pki/etcd/ca.crt").encode() == ca.public_bytes(serialization.Encoding.PEM)
        files = dict(expected)
        if node in GROUPS["kube_control_plane"]:
            files["apiserver-etcd-client"] = ("kube-apiserver-etcd-client", {ExtendedKeyUsageOID.CLIENT_AUTH})
        else:
            assert bed.sh(node, "test ! -e /etc/kubernetes/pki/apiserver-etcd-client.crt", check=False)[0] == 0
        for path, (cn, usages) in files.items():
            cert = x509.load_pem_x509_certificate(bed.read(node, "/etc/kubernetes/pki/%s.crt" % path).encode())
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn, (node, path)
            assert cert.issuer == ca.subject
            assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages, (node, path)
            if path in ("etcd/server", "etcd/peer"):
                sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                assert {node, "localhost"} <= set(sans.get_values_for_type(x509.DNSName)), (node, path)
                assert {bed.address(node), "127.0.0.1", "::1"} <= {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
        modes = bed.sh(node, "stat -c '%n %a %U' /etc/kubernetes/pki/etcd/*.key /var/lib/etcd")[1]
        for line in modes.splitlines():
            path, mode, owner = line.split()
            if path.endswith(".key"):
                assert mode == "600", line
                assert owner == ("etcd" if path.endswith(("/server.key", "/peer.key")) else "root"), line
            else:
                assert (mode, owner) == ("700", "etcd"), line


def test_metrics_on_localhost_only():
    rc, out = bed.sh(ETCD1, "python3 -c \"import urllib.request; print(urllib.request.urlopen("
                            "'http://127.0.0.1:2381/metrics', timeout=5).read().decode())\"")
    assert "etcd_server_has_leader 1" in out
    with pytest.raises(OSError):
        socket.create_connection((bed.address(ETCD1), 2381), timeout=5).close()


def test_write_1000_keys():
    started = time.time()
    result = bed.put_keys(ETCD1, MEMBERS, "/data/", 1000)
    report.step("write 1,000 keys (JSON gateway, one client)", time.time() - started, failed=result["failed"])
    assert len(result["acknowledged"]) == 1000
    assert bed.keys(CP2, "/data/") == {"/data/%d" % i for i in range(1000)}


def test_skipping_a_minor_version_is_refused(inventory):
    run = bed.playbook("upgrade.yml", inventory, {"kubeforge_etcd_version": SKIP_TO})
    report.step("upgrade %s -> %s refused" % (OLD, SKIP_TO), run.seconds, rc=run.rc)
    assert run.rc != 0, run.tail()
    assert "skips minor version 3.5" in run.text and "Nothing was changed" in run.text, run.tail()
    assert set(binaries().values()) == {OLD}
    assert set(versions_running().values()) == {OLD}
    assert bed.sh(CP1, "ls /var/backups/etcd 2>/dev/null | wc -l")[1].strip() == "0"


def test_upgrade_refused_while_a_member_is_stopped(inventory):
    bed.sh(CP2, "systemctl stop etcd")
    try:
        run = bed.playbook("upgrade.yml", inventory, {"kubeforge_etcd_version": NEW,
                                                      "etcd_backup_controller_dir": BACKUPS})
        report.step("upgrade refused, %s stopped" % CP2, run.seconds, rc=run.rc)
        assert run.rc != 0, run.tail()
        message = run.failure()
        assert CP2 in message and "etcd is not running there" in message and "Nothing was changed" in message, message
        # the cluster still serves, and nothing moved
        bed.etcdctl(CP1, "put /refusal/served yes")
        assert bed.keys(ETCD1, "/refusal/") == {"/refusal/served"}
        assert set(binaries().values()) == {OLD}
        assert not os.path.exists(BACKUPS) or not os.listdir(BACKUPS)
    finally:
        bed.sh(CP2, "systemctl start etcd")
    bed.wait_healthy(CP1, 3)


def test_rolling_upgrade_under_writes(inventory):
    leader = [n for n, s in bed.status(CP1).items() if s["leader"]]
    bed.start_writer(ETCD1, MEMBERS, "writer")
    time.sleep(3)
    run = bed.playbook("upgrade.yml", inventory, {"kubeforge_etcd_version": NEW, "etcd_backup_controller_dir": BACKUPS})
    time.sleep(3)
    writes = bed.stop_writer(ETCD1, "writer")
    assert run.rc == 0, run.tail()
    acked = {"/writer/%d" % n for n in writes["acknowledged"]}
    state["acked"] = acked
    present = bed.keys(CP1, "/writer/")
    lost = sorted(acked - present)
    figures = {"acknowledged": len(acked), "failed": writes["failed"], "lost": len(lost),
               "attempted": writes["attempted"], "writer_seconds": writes["seconds"], "errors": writes["errors"]}
    report.figure("writes during the rolling upgrade %s -> %s" % (OLD, NEW), figures)
    report.step("rolling upgrade %s -> %s (snapshot + 3 members)" % (OLD, NEW), run.seconds)
    assert acked and not lost, figures
    assert bed.keys(CP2, "/data/") == {"/data/%d" % i for i in range(1000)}
    assert set(versions_running().values()) == {NEW}
    assert set(binaries().values()) == {NEW}
    moved = re.search(r"moved: ([^']+)'", run.text).group(1).split(", ")
    assert sorted(moved) == sorted(MEMBERS) and moved[-1] == leader[0], (moved, leader)
    snapshots = os.listdir(BACKUPS)
    assert len(snapshots) == 1 and re.match(r"^etcd-snapshot-\d{8}T\d{6}Z-rev\d+\.db$", snapshots[0]), snapshots


def test_upgrade_again_does_nothing(inventory):
    run = bed.playbook("upgrade.yml", inventory, {"kubeforge_etcd_version": NEW, "etcd_backup_controller_dir": BACKUPS})
    assert run.rc == 0 and run.changed == 0, run.tail()
    assert "nothing to do" in run.text


def test_install_after_upgrade_changes_nothing(inventory):
    run = bed.playbook("scale.yml", inventory, {"kubeforge_etcd_version": NEW})
    report.step("preflight + os + etcd after the upgrade (no-op)", run.seconds, changed=run.changed,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0 and run.changed == 0, run.tail()


def test_install_refuses_to_change_the_version(inventory):
    run = bed.playbook("scale.yml", inventory, {"kubeforge_etcd_version": OLDER})
    assert run.rc != 0
    assert "does not change the version of running members" in run.text
    assert "etcd_allow_downgrade=true" in run.text
    assert set(binaries().values()) == {NEW}


def test_downgrade_refused(inventory):
    older = OLDER
    run = bed.playbook("upgrade.yml", inventory, {"kubeforge_etcd_version": older})
    report.step("downgrade %s -> %s refused" % (NEW, older), run.seconds, rc=run.rc)
    assert run.rc != 0
    assert "that is a downgrade; set etcd_allow_downgrade=true" in run.text
    assert set(versions_running().values()) == {NEW}


def _pem_blocks(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)


def _local_copy(node, path, name):
    target = os.path.join(WORK, name)
    with open(target, "w") as handle:
        handle.write(bed.read(node, path))
    return target


def test_rotating_the_etcd_ca_under_writes(inventory):
    """The etcd CA replaced in three phases (certs.yml) while a client writes to every member.

    The client re-reads its CA and client certificate files when they change, as kube-apiserver
    does when certs.yml restarts it. A client certificate of the old CA, kept aside before, is
    accepted until phase finish and refused after it.
    """
    old_ca = _pem_blocks(bed.read(CP1, PKI + "/ca.crt"))
    assert len(old_ca) == 1
    old_client = (_local_copy(CP1, PKI + "/healthcheck-client.crt", "old-client.crt"),
                  _local_copy(CP1, PKI + "/healthcheck-client.key", "old-client.key"))
    bed.start_writer(ETCD1, MEMBERS, "rotation", reload=True)
    time.sleep(3)
    trust, accepted = {}, {}
    address = bed.address(CP2)
    try:
        for phase in ("trust", "sign", "finish"):
            extra = {"kubeforge_etcd_version": NEW, "certs_action": "rotate-ca", "certs_rotate_ca": "etcd-ca",
                     "certs_rotate_phase": phase}
            run = bed.playbook("certs.yml", inventory, extra)
            assert run.rc == 0, run.tail()
            report.step("etcd CA rotation, phase %s (3 members restarted one at a time)" % phase, run.seconds)
            if phase == "finish":
                # a phase already reached changes nothing (ca_rotation's unit tests re-run every phase)
                again = bed.playbook("certs.yml", inventory, extra)
                assert again.rc == 0 and again.changed == 0, again.tail()
            held = {node: _pem_blocks(bed.read(node, PKI + "/ca.crt")) for node in MEMBERS}
            assert len({tuple(blocks) for blocks in held.values()}) == 1, held
            trust[phase] = held[CP1]
            assert bed.wait_healthy(CP1, 3)
            # the client certificate of the old CA, from the controller, against the CA bundle of now
            ca_now = _local_copy(CP1, PKI + "/ca.crt", "ca-%s.crt" % phase)
            try:
                accepted[phase] = _https("https://%s:2379/v3/kv/range" % address, ca_now, *old_client)[0] == 200
            except (ssl.SSLError, ConnectionResetError, urllib.error.URLError):
                accepted[phase] = False
        refused = bed.playbook("certs.yml", inventory, {"kubeforge_etcd_version": NEW, "certs_action": "rotate-ca",
                                                        "certs_rotate_ca": "etcd-ca", "certs_rotate_phase": "sign"})
    finally:
        writes = bed.stop_writer(ETCD1, "rotation")
    acked = {"/rotation/%d" % n for n in writes["acknowledged"]}
    lost = sorted(acked - bed.keys(CP1, "/rotation/"))
    figures = {"acknowledged": len(acked), "failed": writes["failed"], "lost": len(lost),
               "attempted": writes["attempted"], "writer_seconds": writes["seconds"], "reloads": writes["reloads"],
               "errors": writes["errors"]}
    report.figure("writes during the etcd CA rotation (trust, sign, finish)", figures)
    assert acked and not lost, figures
    new_ca = trust["trust"][1]
    assert trust["trust"] == [old_ca[0], new_ca]
    assert trust["sign"] == [new_ca, old_ca[0]]
    assert trust["finish"] == [new_ca]
    assert accepted == {"trust": True, "sign": True, "finish": False}, accepted
    # every member and client certificate is signed by the new CA; the next CA's files are gone
    issuer = x509.load_pem_x509_certificate(new_ca.encode())
    for node in MEMBERS:
        for name in ("server", "peer", "healthcheck-client"):
            leaf = x509.load_pem_x509_certificate(bed.read(node, "%s/%s.crt" % (PKI, name)).encode())
            leaf.verify_directly_issued_by(issuer)
        assert bed.sh(node, "ls %s" % PKI)[1].split().count("ca-new.crt") == 0
    for node in (CP1, CP2):
        leaf = x509.load_pem_x509_certificate(bed.read(node, "/etc/kubernetes/pki/apiserver-etcd-client.crt").encode())
        leaf.verify_directly_issued_by(issuer)
    assert refused.rc != 0 and "the next phase is trust" in refused.text, refused.tail()
    assert bed.keys(CP2, "/data/") == {"/data/%d" % i for i in range(1000)}


def test_backups_named_verified_and_pruned(inventory):
    names = []
    for _ in range(3):
        run = bed.playbook("etcd_backup.yml", inventory, {"kubeforge_etcd_version": NEW, "etcd_backup_keep": 2,
                                                          "etcd_backup_controller_dir": BACKUPS})
        assert run.rc == 0, run.tail()
        names.append(re.search(r"(etcd-snapshot-\S+-rev\d+\.db): revision \d+", run.text).group(1))
        time.sleep(1.1)  # names carry the time to the second
    report.step("etcd_backup.yml (snapshot, verify, fetch, prune)", run.seconds)
    kept = sorted(os.listdir(BACKUPS))
    assert kept == sorted(names[-2:]), (kept, names)
    revision = int(re.search(r"-rev(\d+)\.db$", kept[-1]).group(1))
    assert revision > 1000
    state["snapshot"] = os.path.join(BACKUPS, kept[-1])


def test_restore_refused_while_members_hold_data(inventory):
    run = bed.playbook("etcd_restore.yml", inventory, {"kubeforge_etcd_version": NEW,
                                                       "etcd_restore_snapshot": state["snapshot"]})
    assert run.rc != 0
    assert "refusing to restore" in run.text and CP1 in run.text
    bed.wait_healthy(CP1, 3)
    assert len(bed.keys(CP1, "/data/")) == 1000


def test_restore_into_new_nodes():
    started = time.time()
    bed.testbed("down", "--cluster", CLUSTER)
    bed.testbed("up", "--cluster", CLUSTER, "--layout", LAYOUT)
    report.step("destroy and create the 3 nodes", time.time() - started)
    inventory = bed.inventory(GROUPS, name="restored")
    run = bed.playbook("etcd_restore.yml", inventory, {"kubeforge_etcd_version": NEW,
                                                       "etcd_restore_snapshot": state["snapshot"]})
    report.step("etcd_restore.yml into new nodes (preflight, os, etcd)", run.seconds,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0, run.tail()
    bed.wait_healthy(CP1, 3)
    assert bed.keys(CP2, "/data/") == {"/data/%d" % i for i in range(1000)}
    missing = state["acked"] - bed.keys(ETCD1, "/writer/")
    assert not missing, sorted(missing)[:10]
    assert set(versions_running().values()) == {NEW}
    # the restored cluster is an ordinary one: a converge has nothing to change, writes work
    again = bed.playbook("scale.yml", inventory, {"kubeforge_etcd_version": NEW})
    assert again.rc == 0 and again.changed == 0, again.tail()
    bed.etcdctl(ETCD1, "put /after-restore ok")
