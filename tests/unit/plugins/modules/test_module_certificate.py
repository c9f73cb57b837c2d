# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The certificate module through main(): files on disk, openssl, kubeadm's certificate table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module, warning_texts  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import certificate  # noqa: E402

PKI_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'data', 'upstream',
                         'pki-requirements.json')


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def cert_of(path):
    return x509.load_pem_x509_certificate(read(path))


def snapshot(directory):
    """Every file below ``directory`` with its size, mode and mtime."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[path] = (st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def openssl_verify(ca_file, cert_file):
    proc = subprocess.run(['openssl', 'verify', '-CAfile', ca_file, cert_file], capture_output=True, text=True, check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def pki_dir(tmp_path):
    return tmp_path / 'pki'


def make_ca(directory, name='kubernetes-ca', **extra):
    args = dict(path=str(directory / 'ca.crt'), key_path=str(directory / 'ca.key'), common_name=name, usage='ca')
    args.update(extra)
    result = run_module(certificate, args)
    assert result['changed'] is True and not result.get('failed'), result
    return args


def leaf_args(ca, directory, name, **extra):
    args = dict(path=str(directory / (name + '.crt')), key_path=str(directory / (name + '.key')),
                ca_cert_path=ca['path'], ca_key_path=ca['key_path'], common_name=name, usage='server')
    args.update(extra)
    return args


def test_ca_created_then_unchanged(pki_dir):
    ca = make_ca(pki_dir)
    assert os.stat(ca['key_path']).st_mode & 0o777 == 0o600
    again = run_module(certificate, ca)
    assert again['changed'] is False and again['needs_renewal'] is False and again['reason'] == ''
    assert again['subject'] == 'CN=kubernetes-ca'
    ok, output = openssl_verify(ca['path'], ca['path'])
    assert ok, output


def test_leaf_issue_return_values_and_idempotence(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'apiserver', dns_names=['cp1', 'kubernetes'], ip_addresses=['10.233.0.1'])
    first = run_module(certificate, args)
    assert first['changed'] is True and first['reason'] == 'no certificate at %s' % args['path']
    cert = cert_of(args['path'])
    assert first['fingerprint'] == cert.fingerprint(pki.hashes.SHA256()).hex()
    assert first['serial'] == '%x' % cert.serial_number
    assert first['not_after'] == pki.not_after(cert).strftime('%Y-%m-%dT%H:%M:%SZ')
    assert first['sans'] == ['DNS:cp1', 'DNS:kubernetes', 'IP:10.233.0.1']
    assert first['subject'] == 'CN=apiserver'
    second = run_module(certificate, args)
    assert second['changed'] is False and second['serial'] == first['serial']
    ok, output = openssl_verify(ca['path'], args['path'])
    assert ok, output


def test_check_mode_writes_nothing(pki_dir):
    pki_dir.mkdir()
    before = snapshot(pki_dir)
    planned = run_module(certificate, dict(path=str(pki_dir / 'ca.crt'), key_path=str(pki_dir / 'ca.key'),
                                           common_name='kubernetes-ca', usage='ca'), check_mode=True)
    assert planned['changed'] is True and planned['needs_renewal'] is True
    assert planned['serial'] is None and planned['fingerprint'] is None
    assert snapshot(pki_dir) == before == {}
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'front-proxy-client', usage='client')
    run_module(certificate, args)
    before = snapshot(pki_dir)
    changed_request = dict(args, dns_names=['new.example'])
    planned = run_module(certificate, changed_request, check_mode=True, diff=True)
    assert planned['changed'] is True and planned['reason'] == 'SANs differ: added DNS new.example'
    assert planned['diff']['after']['sans'] == ['DNS:new.example']
    assert snapshot(pki_dir) == before
    assert run_module(certificate, args, check_mode=True)['changed'] is False


def test_diff_never_carries_key_material(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf')
    result = run_module(certificate, args, diff=True)
    dumped = json.dumps(result)
    assert 'PRIVATE KEY' not in dumped
    key_pem = read(args['key_path']).decode()
    body = ''.join(key_pem.splitlines()[1:-1])
    assert body[:40] not in dumped and body[-40:] not in dumped
    assert result['diff']['after']['subject'] == 'CN=leaf'
    assert set(result['diff']['after']) >= {'subject', 'sans', 'usage', 'issuer', 'not_after', 'serial'}


def test_renew_before_keeps_the_key(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'short', validity_days=10, renew_before_days=5)
    run_module(certificate, args)
    key_before = read(args['key_path'])
    public_before = cert_of(args['path']).public_key()
    assert run_module(certificate, args)['changed'] is False
    renewed = run_module(certificate, dict(args, renew_before_days=20, validity_days=365))
    assert renewed['changed'] is True and renewed['reason'] == 'expires in 9 days (renew_before 20)'
    assert read(args['key_path']) == key_before
    assert pki.same_public_key(cert_of(args['path']).public_key(), public_before)


def test_key_mismatch_reissues_for_the_key_on_disk(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf')
    run_module(certificate, args)
    new_key = pki.generate_private_key('ecdsa-p256')
    with open(args['key_path'], 'wb') as handle:
        handle.write(pki.private_key_pem(new_key))
    result = run_module(certificate, args)
    assert result['changed'] is True
    assert result['reason'] == "key mismatch: the certificate's public key is not the private key's"
    assert pki.same_public_key(cert_of(args['path']).public_key(), new_key)
    assert read(args['key_path']) == pki.private_key_pem(new_key)


def test_other_issuer_is_reissued(pki_dir, tmp_path):
    ca = make_ca(pki_dir)
    other = make_ca(tmp_path / 'other', name='etcd-ca')
    args = leaf_args(other, pki_dir, 'leaf')
    run_module(certificate, args)
    result = run_module(certificate, dict(args, ca_cert_path=ca['path'], ca_key_path=ca['key_path']))
    assert result['changed'] is True
    assert result['reason'] == 'issued by another CA (CN=etcd-ca, expected CN=kubernetes-ca)'
    ok, output = openssl_verify(ca['path'], args['path'])
    assert ok, output


def test_changed_sans_are_reissued(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'etcd-server', usage='server+client', dns_names=['etcd1'], ip_addresses=['10.0.0.4'])
    run_module(certificate, args)
    result = run_module(certificate, dict(args, ip_addresses=['10.0.0.4', '10.0.0.5']))
    assert result['changed'] is True and result['reason'] == 'SANs differ: added IP 10.0.0.5'
    assert result['sans'] == ['DNS:etcd1', 'IP:10.0.0.4', 'IP:10.0.0.5']


def test_corrupted_leaf_is_reissued(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf')
    run_module(certificate, args)
    with open(args['path'], 'w') as handle:
        handle.write('-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n')
    result = run_module(certificate, args)
    assert result['changed'] is True
    assert 'certificate %s is not a valid PEM certificate' % args['path'] in result['reason']
    ok, output = openssl_verify(ca['path'], args['path'])
    assert ok, output


@pytest.mark.parametrize('damaged', ['path', 'key_path'])
def test_corrupted_ca_is_an_error_naming_the_file(pki_dir, damaged):
    ca = make_ca(pki_dir)
    with open(ca[damaged], 'w') as handle:
        handle.write('garbage\n')
    before = snapshot(pki_dir)
    result = run_module(certificate, ca)
    assert result['failed'] is True and ca[damaged] in result['msg']
    leaf = run_module(certificate, leaf_args(ca, pki_dir, 'leaf'))
    assert leaf['failed'] is True and ca[damaged] in leaf['msg']
    assert snapshot(pki_dir) == before


def test_existing_ca_is_never_replaced_without_force(pki_dir):
    ca = make_ca(pki_dir, validity_days=40)
    cert_before = read(ca['path'])
    key_before = read(ca['key_path'])
    kept = run_module(certificate, dict(ca, renew_before_days=60, validity_days=3650))
    assert kept['changed'] is False and kept['needs_renewal'] is True
    assert kept['reason'].startswith('expires in 39 days (renew_before 60)')
    assert any('never replaced automatically' in w for w in warning_texts(kept))
    assert read(ca['path']) == cert_before
    forced = run_module(certificate, dict(ca, renew_before_days=60, validity_days=3650, force=True))
    assert forced['changed'] is True and forced['needs_renewal'] is False
    assert read(ca['key_path']) == key_before
    assert read(ca['path']) != cert_before
    assert run_module(certificate, dict(ca, renew_before_days=60, validity_days=3650))['changed'] is False


def test_leaf_signed_before_a_forced_ca_renewal_still_verifies(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf')
    run_module(certificate, args)
    run_module(certificate, dict(ca, force=True))
    ok, output = openssl_verify(ca['path'], args['path'])
    assert ok, output


def test_key_is_0600_whatever_mode_says(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf', mode='0644')
    run_module(certificate, args)
    assert os.stat(args['key_path']).st_mode & 0o777 == 0o600
    assert os.stat(args['path']).st_mode & 0o777 == 0o644
    os.chmod(args['key_path'], 0o644)
    fixed = run_module(certificate, args)
    assert fixed['changed'] is True
    assert os.stat(args['key_path']).st_mode & 0o777 == 0o600


def test_leaf_needs_a_ca(pki_dir):
    result = run_module(certificate, dict(path=str(pki_dir / 'x.crt'), key_path=str(pki_dir / 'x.key'),
                                          common_name='x', usage='server'))
    assert result['failed'] is True and 'ca_cert_path and ca_key_path' in result['msg']


# --------------------------------------------------------------------------- kubeadm's table

def _table():
    with open(PKI_TABLE, encoding='utf-8') as handle:
        return json.load(handle)


def _usage(kinds):
    kinds = set(kinds)
    if kinds == {'server', 'client'}:
        return 'server+client'
    (only,) = kinds
    return only


@pytest.mark.parametrize('key_type', ['rsa-2048', 'ecdsa-p256'])
def test_every_certificate_of_kubeadms_table(tmp_path, key_type):
    table = _table()
    base = tmp_path / 'etc' / 'kubernetes' / 'pki'
    cas = {}
    ca_files = {}
    for entry in table['required_cas']:
        cert_file = next(f for f in entry['files'] if f.endswith('.crt'))
        key_file = next(f for f in entry['files'] if f.endswith('.key'))
        args = dict(path=str(base / cert_file), key_path=str(base / key_file), common_name=entry['default_cn'],
                    usage='ca', key_type=key_type)
        assert run_module(certificate, args)['changed'] is True
        cas[entry['default_cn']] = args
        ca_files[cert_file] = args
    assert set(cas) == {'kubernetes-ca', 'etcd-ca', 'kubernetes-front-proxy-ca'}

    # The paths kubeadm uses for each leaf, from the table's certificate_paths.
    paths = {p['default_cn']: p for p in table['certificate_paths'] if p['key_path'] and p['default_cn'] not in cas}
    hostname, host_ip, advertise_ip = 'cp1', '192.0.2.10', '192.0.2.10'
    substitutions = {'<hostname>': [('dns', hostname)], '<Host_IP>': [('ip', host_ip)],
                     '<advertise_IP>': [('ip', advertise_ip)],
                     '[1]': [('dns', n) for n in table['footnote_1_names']] + [('ip', '10.96.0.1')]}
    issued = []
    for entry in table['required_certificates']:
        dns, ips = [], []
        for san in entry['hosts_san']:
            for kind, value in substitutions.get(san, [('ip' if san[0].isdigit() else 'dns', san)]):
                target = ips if kind == 'ip' else dns
                if value not in target:
                    target.append(value)
        cn = entry['default_cn']
        cert_rel = paths[cn]['cert_path'] if cn in paths else cn + '.crt'
        key_rel = paths[cn]['key_path'] if cn in paths else cn + '.key'
        parent = cas[{'kubernetes-ca': 'kubernetes-ca', 'etcd-ca': 'etcd-ca',
                      'kubernetes-front-proxy-ca': 'kubernetes-front-proxy-ca'}[entry['parent_ca']]]
        args = dict(path=str(base / cert_rel), key_path=str(base / key_rel), ca_cert_path=parent['path'],
                    ca_key_path=parent['key_path'], common_name=cn, usage=_usage(entry['kind']),
                    organizations=[entry['o']] if entry['o'] else [], dns_names=dns, ip_addresses=ips,
                    key_type=key_type)
        result = run_module(certificate, args)
        assert result['changed'] is True, result
        issued.append((entry, args, dns, ips))

    # Kubeconfig client certificates (admin, super-admin, kubelet, controller-manager, scheduler).
    admin_group = table['kubeadm_admin_certificates']['admin.conf']['subject_o']
    for entry in table['kubeconfig_files']:
        cn = entry['default_cn'].replace('<nodeName>', hostname)
        org = {'<admin-group>': admin_group}.get(entry['o'], entry['o'])
        name = entry['filename'][:-len('.conf')]
        args = dict(path=str(tmp_path / 'etc' / 'kubernetes' / (name + '.crt')),
                    key_path=str(tmp_path / 'etc' / 'kubernetes' / (name + '.key')),
                    ca_cert_path=cas['kubernetes-ca']['path'], ca_key_path=cas['kubernetes-ca']['key_path'],
                    common_name=cn, usage='client', organizations=[org] if org else [], key_type=key_type)
        assert run_module(certificate, args)['changed'] is True
        issued.append(({'default_cn': cn, 'o': org, 'kind': ['client'], 'parent_ca': 'kubernetes-ca'}, args, [], []))

    wanted_usage = {'server': ExtendedKeyUsageOID.SERVER_AUTH, 'client': ExtendedKeyUsageOID.CLIENT_AUTH}
    for entry, args, dns, ips in issued:
        cert = cert_of(args['path'])
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == entry['default_cn']
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == ([entry['o']] if entry['o'] else [])
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert eku == {wanted_usage[k] for k in entry['kind']}
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        # "digital signature, key encipherment" per the table; key encipherment applies to RSA keys only.
        assert key_usage.digital_signature
        assert key_usage.key_encipherment is key_type.startswith('rsa')
        cert_dns, cert_ips = pki.cert_sans(cert)
        assert cert_dns == dns and [str(a) for a in cert_ips] == ips
        ok, output = openssl_verify(args['ca_cert_path'], args['path'])
        assert ok, output
        other_cas = [c['path'] for c in cas.values() if c['path'] != args['ca_cert_path']]
        for other in other_cas:
            assert not openssl_verify(other, args['path'])[0]
        assert os.stat(args['key_path']).st_mode & 0o777 == 0o600
        assert run_module(certificate, args)['changed'] is False

    expected_files = {os.path.join(str(tmp_path), p.lstrip('/')) for p in table['all_files_example']
                      if not p.endswith(('sa.key', 'sa.pub'))}
    assert expected_files <= set(snapshot(tmp_path))


def test_corrupted_leaf_key_is_replaced_and_the_certificate_reissued(pki_dir):
    ca = make_ca(pki_dir)
    args = leaf_args(ca, pki_dir, 'leaf')
    run_module(certificate, args)
    with open(args['key_path'], 'w') as handle:
        handle.write('-----BEGIN EC PRIVATE KEY-----\nbroken\n-----END EC PRIVATE KEY-----\n')
    result = run_module(certificate, args)
    assert result['changed'] is True
    assert result['reason'].startswith('private key %s is not a valid unencrypted PEM private key' % args['key_path'])
    assert pki.same_public_key(cert_of(args['path']).public_key(), pki.load_private_key(read(args['key_path'])))


def test_renew_before_must_be_shorter_than_validity(pki_dir):
    ca = make_ca(pki_dir)
    result = run_module(certificate, leaf_args(ca, pki_dir, 'leaf', validity_days=10, renew_before_days=30))
    assert result['failed'] is True
    assert 'renew_before_days (30) must be smaller than validity_days (10)' in result['msg']
