# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/pki.py: real keys, real certificates, checked with openssl, cryptography and TLS."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import ssl
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki

NOW = datetime.datetime.now(datetime.timezone.utc)


class FakeWriter:
    """Stands in for AnsibleModule in write_file: only atomic_move and params are used."""

    check_mode = False
    params = {}

    @staticmethod
    def atomic_move(src, dest, unsafe_writes=False):
        os.rename(src, dest)


def write_plan(plan):
    for path, content in plan.files.items():
        files.write_file(FakeWriter, path, content, secret=path in plan.secret)


def make_ca(directory, name='kubernetes-ca', key_type='ecdsa-p256'):
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = str(directory / 'ca.crt'), str(directory / 'ca.key')
    plan = pki.plan_certificate(cert, key, pki.Request(name, usage='ca'), key_type)
    write_plan(plan)
    return pki.CA(cert, key)


def issue_leaf(ca, directory, name, usage='server', key_type='ecdsa-p256', **request):
    cert, key = str(directory / (name + '.crt')), str(directory / (name + '.key'))
    req = pki.Request(request.pop('common_name', name), usage=usage, **request)
    plan = pki.plan_certificate(cert, key, req, key_type, ca.cert_path, ca.key_path)
    write_plan(plan)
    return cert, key, plan


def load(path):
    with open(path, 'rb') as handle:
        return handle.read()


def extension(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture
def ca(tmp_path):
    return make_ca(tmp_path / 'ca')


# --------------------------------------------------------------------------- extensions

@pytest.mark.parametrize('key_type', pki.KEY_TYPES)
def test_ca_has_the_extensions_kubeadm_gives_a_ca(tmp_path, key_type):
    ca = make_ca(tmp_path, key_type=key_type)
    cert = ca.cert
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is True
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    assert not usage.value.key_encipherment
    assert extension(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert cert.issuer == cert.subject
    assert pki.key_type_of(ca.key) == key_type
    assert pki.signed_by(cert, cert.public_key())


@pytest.mark.parametrize('usage, purposes', [
    ('server', {ExtendedKeyUsageOID.SERVER_AUTH}),
    ('client', {ExtendedKeyUsageOID.CLIENT_AUTH}),
    ('server+client', {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
])
@pytest.mark.parametrize('key_type', ['ecdsa-p256', 'rsa-2048'])
def test_leaf_extensions(tmp_path, ca, usage, purposes, key_type):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf', usage=usage, key_type=key_type,
                                              dns_names=['node1', 'node1.example.org'], ip_addresses=['192.0.2.7', '2001:db8::7'])
    cert = pki.load_certificate(load(cert_path))
    assert set(extension(cert, x509.ExtendedKeyUsage).value) == purposes
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage_ext = extension(cert, x509.KeyUsage)
    assert usage_ext.critical and usage_ext.value.digital_signature
    assert usage_ext.value.key_encipherment is (key_type.startswith('rsa'))
    assert not usage_ext.value.key_cert_sign
    ca_ski = extension(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert extension(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    dns, ips = pki.cert_sans(cert)
    assert dns == ['node1', 'node1.example.org']
    assert [str(a) for a in ips] == ['192.0.2.7', '2001:db8::7']
    assert pki.key_type_of(cert.public_key()) == key_type


def test_private_keys_are_in_kubeadms_pem_forms(tmp_path, ca):
    _unused, ec_key, _unused = issue_leaf(ca, tmp_path, 'ec', key_type='ecdsa-p256')
    _unused, rsa_key, _unused = issue_leaf(ca, tmp_path, 'rsa', key_type='rsa-2048')
    assert load(ec_key).startswith(b'-----BEGIN EC PRIVATE KEY-----')
    assert load(rsa_key).startswith(b'-----BEGIN RSA PRIVATE KEY-----')
    assert os.stat(ec_key).st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- chains

def test_chain_verifies_with_openssl_and_cryptography(tmp_path, ca):
    cert_path, _unused, _unused = issue_leaf(ca, tmp_path, 'apiserver', dns_names=['localhost'], ip_addresses=['127.0.0.1'])
    proc = subprocess.run(['openssl', 'verify', '-CAfile', ca.cert_path, cert_path], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(': OK')
    cert = pki.load_certificate(load(cert_path))
    assert pki.signed_by(cert, ca.cert.public_key())
    verification = pytest.importorskip('cryptography.x509.verification')
    store = verification.Store([ca.cert])
    verifier = verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName('localhost'))
    chain = verifier.verify(cert, [])
    assert chain[-1] == ca.cert


def test_openssl_rejects_a_leaf_of_another_ca(tmp_path, ca):
    other = make_ca(tmp_path / 'other', name='kubernetes-ca')
    cert_path, _unused, _unused = issue_leaf(other, tmp_path, 'intruder')
    proc = subprocess.run(['openssl', 'verify', '-CAfile', ca.cert_path, cert_path], capture_output=True, text=True, check=False)
    assert proc.returncode != 0


# --------------------------------------------------------------------------- comparison

def test_matching_certificate_has_no_reasons(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf', dns_names=['a'], ip_addresses=['10.0.0.1'])
    cert = pki.load_certificate(load(cert_path))
    key = pki.load_private_key(load(key_path))
    request = pki.Request('leaf', usage='server', dns_names=['A'], ip_addresses=['10.0.0.1'])
    assert pki.compare(cert, request, key.public_key(), ca.cert) == []


def test_reasons_name_each_difference(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf', dns_names=['old.example'], ip_addresses=['10.0.0.1'],
                                              organizations=['system:nodes'])
    cert = pki.load_certificate(load(cert_path))
    key = pki.load_private_key(load(key_path))
    request = pki.Request('renamed', usage='server+client', dns_names=['new.example'],
                          ip_addresses=['10.0.0.1', '10.0.0.5'], organizations=['system:masters'])
    reasons = pki.compare(cert, request, key.public_key(), ca.cert)
    assert "subject CN differs: 'leaf' -> 'renamed'" in reasons
    assert 'subject O differs: [system:nodes] -> [system:masters]' in reasons
    assert 'SANs differ: added DNS new.example, added IP 10.0.0.5, removed DNS old.example' in reasons
    assert 'usages differ: server -> server+client' in reasons


def test_san_reason_for_an_added_address(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf', dns_names=['node1'])
    request = pki.Request('leaf', usage='server', dns_names=['node1'], ip_addresses=['10.0.0.5'])
    reasons = pki.compare(pki.load_certificate(load(cert_path)), request,
                          pki.load_private_key(load(key_path)).public_key(), ca.cert)
    assert reasons == ['SANs differ: added IP 10.0.0.5']


def test_key_mismatch_and_other_issuer(tmp_path, ca):
    cert_path, _unused, _unused = issue_leaf(ca, tmp_path, 'leaf')
    cert = pki.load_certificate(load(cert_path))
    stranger = pki.generate_private_key('ecdsa-p256')
    request = pki.Request('leaf', usage='server')
    assert pki.compare(cert, request, stranger.public_key(), ca.cert) == [
        "key mismatch: the certificate's public key is not the private key's"]
    same_name = make_ca(tmp_path / 'same-name', name='kubernetes-ca')
    reasons = pki.compare(cert, request, cert.public_key(), same_name.cert)
    assert len(reasons) == 1 and reasons[0].startswith('issued by another CA (same issuer name')
    other_name = make_ca(tmp_path / 'other-name', name='etcd-ca')
    reasons = pki.compare(cert, request, cert.public_key(), other_name.cert)
    assert reasons == ['issued by another CA (CN=kubernetes-ca, expected CN=etcd-ca)']


def test_renew_before_window(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'short', validity_days=10, renew_before_days=5)
    cert = pki.load_certificate(load(cert_path))
    public = pki.load_private_key(load(key_path)).public_key()
    assert pki.compare(cert, pki.Request('short', usage='server', renew_before_days=5), public, ca.cert) == []
    reasons = pki.compare(cert, pki.Request('short', usage='server', renew_before_days=20), public, ca.cert)
    assert reasons == ['expires in 9 days (renew_before 20)']
    later = NOW + datetime.timedelta(days=11)
    reasons = pki.compare(cert, pki.Request('short', usage='server'), public, ca.cert, now=later)
    assert len(reasons) == 1 and re.match(r'expired [01] days ago \(\d{4}-\d\d-\d\dT', reasons[0]), reasons


def test_request_errors_are_reported_together():
    with pytest.raises(pki.PKIError) as err:
        pki.Request('x', usage='server', ip_addresses=['10.0.0.300'], dns_names=['10.0.0.1'],
                    validity_days=10, renew_before_days=10)
    text = str(err.value)
    assert "'10.0.0.300', which is not an IP address" in text
    assert 'dns_names holds the IP address 10.0.0.1' in text
    assert 'renew_before_days (10) must be smaller than validity_days (10)' in text


# --------------------------------------------------------------------------- plans

def test_leaf_plan_keeps_a_valid_key_when_renewing(tmp_path, ca):
    cert_path, key_path, first = issue_leaf(ca, tmp_path, 'leaf', validity_days=10, renew_before_days=5)
    key_before = load(key_path)
    plan = pki.plan_certificate(cert_path, key_path, pki.Request('leaf', usage='server', renew_before_days=20),
                                'ecdsa-p256', ca.cert_path, ca.key_path)
    assert plan.reason == 'expires in 9 days (renew_before 20)'
    assert list(plan.files) == [cert_path]
    write_plan(plan)
    assert load(key_path) == key_before
    renewed = pki.load_certificate(load(cert_path))
    assert pki.same_public_key(renewed.public_key(), pki.load_private_key(key_before))
    assert renewed.serial_number != pki.load_certificate(first.files[cert_path]).serial_number


def test_leaf_plan_replaces_a_key_of_another_type(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf', key_type='ecdsa-p256')
    plan = pki.plan_certificate(cert_path, key_path, pki.Request('leaf', usage='server'), 'rsa-2048',
                                ca.cert_path, ca.key_path)
    assert plan.reasons[0] == 'key type differs: ecdsa-p256 -> rsa-2048'
    assert set(plan.files) == {cert_path, key_path}


def test_corrupted_leaf_is_reissued_and_corrupted_ca_is_an_error(tmp_path, ca):
    cert_path, key_path, _unused = issue_leaf(ca, tmp_path, 'leaf')
    with open(cert_path, 'w') as handle:
        handle.write('-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n')
    plan = pki.plan_certificate(cert_path, key_path, pki.Request('leaf', usage='server'), 'ecdsa-p256',
                                ca.cert_path, ca.key_path)
    assert 'is not a valid PEM certificate' in plan.reason and 're-issuing' in plan.reason
    assert list(plan.files) == [cert_path]
    with open(ca.cert_path, 'w') as handle:
        handle.write('not a certificate\n')
    with pytest.raises(pki.PKIError, match='CA certificate %s is not a valid PEM certificate' % ca.cert_path):
        pki.plan_certificate(cert_path, key_path, pki.Request('leaf', usage='server'), 'ecdsa-p256',
                             ca.cert_path, ca.key_path)


def test_plan_private_key(tmp_path):
    path = str(tmp_path / 'node.key')
    plan, key = pki.plan_private_key(path, 'ecdsa-p256', check_mode=True)
    assert plan.changed and key is None and plan.result['public_key'] is None
    plan, key = pki.plan_private_key(path, 'ecdsa-p256')
    write_plan(plan)
    again, same = pki.plan_private_key(path, 'ecdsa-p256')
    assert not again.changed and pki.same_public_key(same, key)
    assert again.result['public_key'] == pki.public_key_pem(key).decode()
    with open(path, 'w') as handle:
        handle.write('-----BEGIN EC PRIVATE KEY-----\nbroken\n-----END EC PRIVATE KEY-----\n')
    repaired, new_key = pki.plan_private_key(path, 'ecdsa-p256')
    assert repaired.changed and 'is not a valid unencrypted PEM private key' in repaired.reason


def test_plan_keypair_refuses_a_corrupted_private_key(tmp_path):
    path, public = str(tmp_path / 'sa.key'), str(tmp_path / 'sa.pub')
    with open(path, 'w') as handle:
        handle.write('garbage')
    with pytest.raises(pki.PKIError, match='private key %s' % path):
        pki.plan_keypair(path, public, 'rsa-2048')


# --------------------------------------------------------------------------- batch

def _batch_entry(ident, key, current=None, **extra):
    entry = {'id': ident, 'public_key': pki.public_key_pem(key).decode(), 'current_certificate': current,
             'common_name': 'system:node:' + ident, 'organizations': ['system:nodes'], 'usage': 'server',
             'dns_names': [ident], 'ip_addresses': ['10.0.0.%d' % (len(ident) + 1)]}
    entry.update(extra)
    return entry


def test_batch_issues_only_what_changed(ca):
    keys = {name: pki.generate_private_key('ecdsa-p256') for name in ('n1', 'n2', 'n3')}
    entries = [_batch_entry(name, key) for name, key in keys.items()]
    issued, unchanged, errors = pki.issue_batch(ca, entries)
    assert errors == [] and unchanged == [] and sorted(issued) == ['n1', 'n2', 'n3']
    assert all(item['reason'] == 'no current certificate' for item in issued.values())
    for entry in entries:
        entry['current_certificate'] = issued[entry['id']]['certificate']
        cert = pki.load_certificate(entry['current_certificate'])
        assert pki.same_public_key(cert.public_key(), keys[entry['id']])
        assert pki.signed_by(cert, ca.cert.public_key())
    entries[1]['ip_addresses'] = ['10.0.0.3', '10.0.0.9']
    again, unchanged, errors = pki.issue_batch(ca, entries)
    assert list(again) == ['n2'] and again['n2']['reason'] == 'SANs differ: added IP 10.0.0.9'
    assert unchanged == ['n1', 'n3']
    dumped = json.dumps([again, unchanged])
    assert 'PRIVATE KEY' not in dumped


def test_batch_check_mode_and_missing_keys(ca):
    key = pki.generate_private_key('ecdsa-p256')
    entries = [_batch_entry('n1', key), dict(_batch_entry('n2', key), public_key=None)]
    planned, unchanged, errors = pki.issue_batch(ca, entries, check_mode=True)
    assert errors == [] and unchanged == []
    assert planned['n1']['certificate'] is None and planned['n1']['reason'] == 'no current certificate'
    assert planned['n2']['reason'] == 'no node key yet'
    _unused, _unused, errors = pki.issue_batch(ca, entries)
    assert errors == ['request n2: public_key is empty (the node key does not exist yet)']


def test_batch_reports_every_invalid_request(ca):
    key = pki.generate_private_key('ecdsa-p256')
    entries = [_batch_entry('n1', key, public_key='not a key'), _batch_entry('n2', key),
               _batch_entry('n2', key), _batch_entry('n3', key, ip_addresses=['300.1.1.1'])]
    issued, unchanged, errors = pki.issue_batch(ca, entries)
    assert issued == {} and unchanged == []
    assert len(errors) == 3
    assert errors[0].startswith('requests[0]: request n1: public_key is not a valid PEM public key')
    assert errors[1] == 'requests[2]: id n2 is used twice'
    assert "requests[3]: request n3: ip_addresses holds '300.1.1.1'" in errors[2]


def test_batch_reissues_a_certificate_from_another_ca(tmp_path, ca):
    other = make_ca(tmp_path / 'other', name='kubernetes-ca')
    key = pki.generate_private_key('ecdsa-p256')
    foreign = other.issue(pki.Request('system:node:n1', organizations=['system:nodes'], usage='server',
                                      dns_names=['n1'], ip_addresses=['10.0.0.3']), key.public_key())
    entry = _batch_entry('n1', key, current=pki.certificate_pem(foreign).decode())
    issued, _unused, _unused = pki.issue_batch(ca, [entry])
    assert issued['n1']['reason'].startswith('issued by another CA')


# --------------------------------------------------------------------------- TLS on loopback

class TLSServer:
    """A one-connection TLS server on 127.0.0.1 that requires a client certificate."""

    def __init__(self, cert, key, ca_file):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(ca_file)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.error = None
        self.peer_cn = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(10)
        try:
            conn, _unused = self.sock.accept()
        except OSError as exc:
            self.error = exc
            return
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                self.peer_cn = dict(item[0] for item in peer['subject'])['commonName']
                tls.sendall(b'hello ' + self.peer_cn.encode())
        except (ssl.SSLError, OSError) as exc:
            self.error = exc
        finally:
            self.sock.close()

    def join(self):
        self.thread.join(10)


def tls_client(port, ca_file, cert, key, server_name='localhost'):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.load_cert_chain(cert, key)
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.recv(100)


@pytest.fixture
def tls_pki(tmp_path, ca):
    server_cert, server_key, _unused = issue_leaf(ca, tmp_path, 'server', usage='server', dns_names=['localhost'],
                                                  ip_addresses=['127.0.0.1'])
    client_cert, client_key, _unused = issue_leaf(ca, tmp_path, 'client', usage='client', common_name='kubernetes-admin',
                                                  organizations=['kubeadm:cluster-admins'])
    return {'ca': ca, 'server': (server_cert, server_key), 'client': (client_cert, client_key), 'dir': tmp_path}


@pytest.mark.parametrize('key_type', ['ecdsa-p256', 'rsa-2048'])
def test_tls_handshake_with_issued_certificates(tmp_path, key_type):
    ca = make_ca(tmp_path / 'ca', key_type=key_type)
    server_cert, server_key, _unused = issue_leaf(ca, tmp_path, 'server', key_type=key_type, dns_names=['localhost'],
                                                  ip_addresses=['127.0.0.1'])
    client_cert, client_key, _unused = issue_leaf(ca, tmp_path, 'client', usage='client', key_type=key_type,
                                                  common_name='kubernetes-admin')
    server = TLSServer(server_cert, server_key, ca.cert_path)
    assert tls_client(server.port, ca.cert_path, client_cert, client_key) == b'hello kubernetes-admin'
    server.join()
    assert server.error is None and server.peer_cn == 'kubernetes-admin'


def test_tls_hostname_verification_rejects_a_certificate_for_another_name(tls_pki):
    ca = tls_pki['ca']
    other_cert, other_key, _unused = issue_leaf(ca, tls_pki['dir'], 'other', dns_names=['other.example'])
    server = TLSServer(other_cert, other_key, ca.cert_path)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|doesn't match"):
        tls_client(server.port, ca.cert_path, *tls_pki['client'])
    server.join()


def test_tls_server_rejects_a_client_certificate_from_another_ca(tls_pki):
    ca = tls_pki['ca']
    other = make_ca(tls_pki['dir'] / 'other', name='kubernetes-ca')
    rogue_cert, rogue_key, _unused = issue_leaf(other, tls_pki['dir'], 'rogue', usage='client', common_name='kubernetes-admin')
    server = TLSServer(*tls_pki['server'], ca.cert_path)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        # TLS 1.3 delivers the server's rejection on the first read.
        tls_client(server.port, ca.cert_path, rogue_cert, rogue_key)
    server.join()
    assert isinstance(server.error, ssl.SSLError)
    assert server.peer_cn is None


# --------------------------------------------------------------------------- CA specifics

def test_intermediate_ca_signed_by_a_root(tmp_path, ca):
    cert = str(tmp_path / 'intermediate.crt')
    key = str(tmp_path / 'intermediate.key')
    plan = pki.plan_certificate(cert, key, pki.Request('etcd-ca', usage='ca'), 'ecdsa-p256', ca.cert_path, ca.key_path)
    write_plan(plan)
    intermediate = pki.CA(cert, key)
    assert intermediate.cert.issuer == ca.cert.subject and pki.signed_by(intermediate.cert, ca.cert.public_key())
    aki = extension(intermediate.cert, x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == extension(ca.cert, x509.SubjectKeyIdentifier).value.digest
    leaf_cert, _unused_key, _unused_plan = issue_leaf(intermediate, tmp_path, 'leaf')
    proc = subprocess.run(['openssl', 'verify', '-CAfile', ca.cert_path, '-untrusted', cert, leaf_cert],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ca_certificate_without_its_key_is_an_error(tmp_path, ca):
    os.unlink(ca.key_path)
    with pytest.raises(pki.PKIError, match='exists but its key %s does not' % ca.key_path):
        pki.plan_certificate(ca.cert_path, ca.key_path, pki.Request('kubernetes-ca', usage='ca'), 'ecdsa-p256')
    plan = pki.plan_certificate(ca.cert_path, ca.key_path, pki.Request('kubernetes-ca', usage='ca'), 'ecdsa-p256',
                                force=True)
    assert set(plan.files) == {ca.cert_path, ca.key_path}


def test_existing_ca_plan_keeps_everything_and_warns(tmp_path, ca):
    plan = pki.plan_certificate(ca.cert_path, ca.key_path, pki.Request('renamed-ca', usage='ca'), 'ecdsa-p256')
    assert plan.files == {} and plan.needs_renewal and not plan.changed
    assert plan.reason == "subject CN differs: 'kubernetes-ca' -> 'renamed-ca'"
    assert 'never replaced automatically' in plan.warnings[0]
