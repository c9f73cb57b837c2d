# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""private_key on the nodes (one key, or a host's whole set with ``keys``), certificate_batch on the CA host,
certificates written back; and keypair."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module, warning_texts  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki, pki_catalog  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import (  # noqa: E402
    certificate,
    certificate_batch,
    keypair,
    private_key,
)

NODES = {'node1': '10.0.0.11', 'node2': '10.0.0.12', 'node3': '10.0.0.13'}


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


@pytest.fixture
def ca(tmp_path):
    args = dict(path=str(tmp_path / 'cp' / 'ca.crt'), key_path=str(tmp_path / 'cp' / 'ca.key'),
                common_name='kubernetes-ca', usage='ca')
    assert run_module(certificate, args)['changed'] is True
    return args


def node_paths(tmp_path, node):
    base = tmp_path / node / 'var' / 'lib' / 'kubelet' / 'pki'
    return str(base / 'kubelet.key'), str(base / 'kubelet.crt')


def request_for(node, key_result, ip=None):
    return {'id': node, 'public_key': key_result['public_key'], 'current_certificate': key_result.get('certificate'),
            'common_name': 'system:node:' + node, 'organizations': ['system:nodes'], 'usage': 'server',
            'dns_names': [node], 'ip_addresses': [ip or NODES[node]]}


def round_trip(tmp_path, ca, check_mode=False, ips=None):
    """One run of the role's flow; returns (key results, batch result)."""
    keys = {}
    for node in NODES:
        key_path, cert_path = node_paths(tmp_path, node)
        keys[node] = run_module(private_key, dict(path=key_path, cert_path=cert_path), check_mode=check_mode)
        assert not keys[node].get('failed'), keys[node]
    requests = [request_for(node, keys[node], (ips or {}).get(node)) for node in NODES]
    batch = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=requests),
                       check_mode=check_mode)
    assert not batch.get('failed'), batch
    if not check_mode:
        for node, issued in batch['certificates'].items():
            _unused, cert_path = node_paths(tmp_path, node)
            with open(cert_path, 'w') as handle:
                handle.write(issued['certificate'])
    return keys, batch


def test_nodes_cost_one_batch_and_rerun_is_unchanged(tmp_path, ca):
    keys, batch = round_trip(tmp_path, ca)
    assert all(k['changed'] for k in keys.values())
    assert batch['changed'] is True and sorted(batch['certificates']) == sorted(NODES) and batch['unchanged'] == []
    for node in NODES:
        key_path, cert_path = node_paths(tmp_path, node)
        assert os.stat(key_path).st_mode & 0o777 == 0o600
        proc = subprocess.run(['openssl', 'verify', '-CAfile', ca['path'], cert_path], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        cert = pki.load_certificate(read(cert_path))
        assert pki.same_public_key(cert.public_key(), pki.load_private_key(read(key_path)))
    # Nothing secret went to or came from the CA host.
    assert 'PRIVATE KEY' not in json.dumps(keys) + json.dumps(batch)

    keys, batch = round_trip(tmp_path, ca)
    assert not any(k['changed'] for k in keys.values())
    assert all(k['certificate_matches_key'] for k in keys.values())
    assert batch['changed'] is False and batch['certificates'] == {} and sorted(batch['unchanged']) == sorted(NODES)


def test_only_the_node_whose_address_changed_is_reissued(tmp_path, ca):
    round_trip(tmp_path, ca)
    _unused, batch = round_trip(tmp_path, ca, ips={'node2': '10.0.0.99'})
    assert list(batch['certificates']) == ['node2']
    assert batch['certificates']['node2']['reason'] == 'SANs differ: added IP 10.0.0.99, removed IP 10.0.0.12'
    assert sorted(batch['unchanged']) == ['node1', 'node3']


def test_check_mode_on_fresh_nodes(tmp_path, ca):
    keys, batch = round_trip(tmp_path, ca, check_mode=True)
    assert all(k['changed'] and k['public_key'] is None for k in keys.values())
    assert batch['changed'] is True
    assert all(v['certificate'] is None and v['reason'] == 'no node key yet' for v in batch['certificates'].values())
    for node in NODES:
        assert not os.path.exists(os.path.dirname(node_paths(tmp_path, node)[0]))


def test_key_is_never_regenerated_and_a_lost_key_is_noticed(tmp_path, ca):
    round_trip(tmp_path, ca)
    key_path, cert_path = node_paths(tmp_path, 'node1')
    original = read(key_path)
    again = run_module(private_key, dict(path=key_path, cert_path=cert_path))
    assert again['changed'] is False and read(key_path) == original
    os.unlink(key_path)
    keys, batch = round_trip(tmp_path, ca)
    assert keys['node1']['changed'] is True and keys['node1']['certificate_matches_key'] is False
    assert batch['certificates']['node1']['reason'] == \
        "key mismatch: the certificate's public key is not the private key's"
    assert sorted(batch['unchanged']) == ['node2', 'node3']


def test_corrupted_node_certificate_is_returned_as_null(tmp_path, ca):
    round_trip(tmp_path, ca)
    key_path, cert_path = node_paths(tmp_path, 'node3')
    with open(cert_path, 'w') as handle:
        handle.write('-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n')
    result = run_module(private_key, dict(path=key_path, cert_path=cert_path))
    assert result['certificate'] is None and result['certificate_matches_key'] is False
    assert any('will be re-issued' in w for w in warning_texts(result))


def test_batch_fails_on_invalid_requests_naming_each(tmp_path, ca):
    result = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=[
        {'id': 'a', 'public_key': 'nope', 'common_name': 'a'},
        {'id': 'b', 'public_key': None, 'common_name': 'b'},
    ]))
    assert result['failed'] is True
    assert result['msg'].startswith('2 invalid request(s)')
    assert 'request a: public_key is not a valid PEM public key' in result['msg']
    assert 'request b: public_key is empty' in result['msg']


def test_batch_with_a_missing_ca_key(tmp_path, ca):
    os.unlink(ca['key_path'])
    result = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=[]))
    assert result['failed'] is True and result['msg'] == 'CA key %s does not exist' % ca['key_path']


# --------------------------------------------------------------------------- private_key with keys

def key_entries(tmp_path, names=('apiserver', 'front-proxy-client', 'admin'), with_cert=('apiserver', 'admin')):
    """``keys`` for a control plane's set under tmp_path; the names in ``with_cert`` get a cert_path."""
    base = tmp_path / 'etc' / 'kubernetes' / 'pki'
    entries = []
    for name in names:
        entry = {'path': str(base / (name + '.key'))}
        if name in with_cert:
            entry['cert_path'] = str(base / (name + '.crt'))
        entries.append(entry)
    return entries


def snapshot(directory):
    """{relative path: bytes} of every file under ``directory``."""
    out = {}
    for root, _dirs, files in os.walk(str(directory)):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, str(directory))] = read(path)
    return out


def test_keys_creates_every_key_0600_then_keeps_them(tmp_path):
    entries = key_entries(tmp_path)
    first = run_module(private_key, dict(keys=entries))
    assert not first.get('failed'), first
    assert first['changed'] is True
    # the single-key return values are absent; one entry per key, in the order given
    assert not {'public_key', 'key_type', 'reason', 'certificate', 'certificate_matches_key'} & set(first)
    assert [k['path'] for k in first['private_keys']] == [e['path'] for e in entries]
    for entry, result in zip(entries, first['private_keys']):
        assert result['changed'] is True and result['key_type'] == 'ecdsa-p256'
        assert result['reason'] == 'no private key at %s' % entry['path']
        assert os.stat(entry['path']).st_mode & 0o777 == 0o600
        on_disk = pki.load_private_key(read(entry['path']))
        assert pki.same_public_key(pki.load_public_key(result['public_key']), on_disk)
    assert len({k['public_key'] for k in first['private_keys']}) == len(entries)
    assert 'PRIVATE KEY' not in json.dumps(first)
    files = snapshot(tmp_path)

    again = run_module(private_key, dict(keys=entries))
    assert again['changed'] is False
    assert [k['changed'] for k in again['private_keys']] == [False] * len(entries)
    assert [k['reason'] for k in again['private_keys']] == [''] * len(entries)
    assert [k['public_key'] for k in again['private_keys']] == [k['public_key'] for k in first['private_keys']]
    assert snapshot(tmp_path) == files


def test_keys_key_type_applies_to_all(tmp_path):
    entries = key_entries(tmp_path, names=('sa-like', 'other'), with_cert=())
    result = run_module(private_key, dict(keys=entries, key_type='rsa-2048'))
    assert [k['key_type'] for k in result['private_keys']] == ['rsa-2048', 'rsa-2048']
    assert all(pki.key_type_of(pki.load_private_key(read(e['path']))) == 'rsa-2048' for e in entries)


def test_keys_check_mode_writes_nothing(tmp_path):
    entries = key_entries(tmp_path)
    planned = run_module(private_key, dict(keys=entries), check_mode=True)
    assert planned['changed'] is True
    assert all(k['changed'] is True and k['public_key'] is None for k in planned['private_keys'])
    assert os.listdir(str(tmp_path)) == []
    created = run_module(private_key, dict(keys=entries))
    files = snapshot(tmp_path)
    # keys present: check mode reports them unchanged, with their public keys
    planned = run_module(private_key, dict(keys=entries), check_mode=True)
    assert planned['changed'] is False
    assert [k['public_key'] for k in planned['private_keys']] == [k['public_key'] for k in created['private_keys']]
    # one key lost: only its entry would change, and nothing is written
    os.unlink(entries[1]['path'])
    planned = run_module(private_key, dict(keys=entries), check_mode=True)
    assert planned['changed'] is True and [k['changed'] for k in planned['private_keys']] == [False, True, False]
    assert planned['private_keys'][1]['public_key'] is None
    del files[os.path.relpath(entries[1]['path'], str(tmp_path))]
    assert snapshot(tmp_path) == files


def test_keys_return_certificates_only_for_entries_with_cert_path(tmp_path, ca):
    entries = key_entries(tmp_path, names=('apiserver', 'front-proxy-client', 'admin', 'scheduler'),
                          with_cert=('apiserver', 'admin', 'scheduler'))
    first = run_module(private_key, dict(keys=entries))
    # no certificate yet
    for entry, result in zip(entries, first['private_keys']):
        if 'cert_path' in entry:
            assert result['certificate'] is None and result['certificate_matches_key'] is False
        else:
            assert 'certificate' not in result and 'certificate_matches_key' not in result
    batch = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=[
        {'id': 'apiserver', 'public_key': first['private_keys'][0]['public_key'], 'common_name': 'kube-apiserver',
         'usage': 'server', 'dns_names': ['kubernetes']}]))
    issued = batch['certificates']['apiserver']['certificate']
    for entry in entries[0], entries[2]:  # admin's cert_path gets a certificate of another key
        with open(entry['cert_path'], 'w') as handle:
            handle.write(issued)
    with open(entries[3]['cert_path'], 'w') as handle:
        handle.write('-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n')
    result = run_module(private_key, dict(keys=entries))
    assert result['changed'] is False
    apiserver, front_proxy, admin, scheduler = result['private_keys']
    assert apiserver['certificate'] == issued and apiserver['certificate_matches_key'] is True
    assert 'certificate' not in front_proxy and 'certificate_matches_key' not in front_proxy
    assert admin['certificate'] == issued and admin['certificate_matches_key'] is False
    assert scheduler['certificate'] is None and scheduler['certificate_matches_key'] is False
    assert any(entries[3]['cert_path'] in w and 'will be re-issued' in w for w in warning_texts(result))


def test_keys_a_lost_key_changes_only_its_entry(tmp_path):
    entries = key_entries(tmp_path)
    first = run_module(private_key, dict(keys=entries))
    os.unlink(entries[2]['path'])
    result = run_module(private_key, dict(keys=entries))
    assert result['changed'] is True and [k['changed'] for k in result['private_keys']] == [False, False, True]
    assert [k['public_key'] for k in result['private_keys']][:2] == [k['public_key'] for k in first['private_keys']][:2]
    assert result['private_keys'][2]['public_key'] != first['private_keys'][2]['public_key']
    assert os.stat(entries[2]['path']).st_mode & 0o777 == 0o600


def test_keys_repeated_path_fails_before_writing(tmp_path):
    entries = key_entries(tmp_path)
    entries.append({'path': entries[0]['path'], 'cert_path': str(tmp_path / 'other.crt')})
    result = run_module(private_key, dict(keys=entries))
    assert result['failed'] is True and entries[0]['path'] in result['msg'] and 'once' in result['msg']
    assert entries[1]['path'] not in result['msg']
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('args, words', [
    ({'path': 'KEY', 'keys': [{'path': 'OTHER'}]}, ['mutually exclusive', 'path', 'keys']),
    ({'cert_path': 'CRT', 'keys': [{'path': 'OTHER'}]}, ['mutually exclusive', 'cert_path', 'keys']),
    ({}, ['one of', 'path', 'keys']),
    ({'cert_path': 'CRT'}, ['one of', 'path', 'keys']),
    ({'keys': [{'cert_path': 'CRT'}]}, ['path', 'keys']),
])
def test_keys_invalid_combinations_fail(tmp_path, args, words):
    args = {name: (str(tmp_path / value) if isinstance(value, str) else
                   [{k: str(tmp_path / v) for k, v in e.items()} for e in value]) for name, value in args.items()}
    result = run_module(private_key, args)
    assert result['failed'] is True and all(word in result['msg'] for word in words), result['msg']
    assert os.listdir(str(tmp_path)) == []


def test_keys_error_names_the_path(tmp_path):
    entries = key_entries(tmp_path, with_cert=())
    os.makedirs(entries[1]['path'])
    result = run_module(private_key, dict(keys=entries))
    assert result['failed'] is True and result['msg'] == '%s is a directory, not a file' % entries[1]['path']


def test_keys_empty_list_is_nothing_to_do(tmp_path):
    result = run_module(private_key, dict(keys=[]))
    assert not result.get('failed') and result['changed'] is False and result['private_keys'] == []


@pytest.mark.parametrize('host', ['cp1', 'w1'])
def test_keys_take_the_catalogue_entries_as_they_are(tmp_path, host):
    """The pki role passes every certificate's ``key`` entry of pki_host_certificates; here under tmp_path."""
    specs = pki_catalog.host_certificates(host, '192.0.2.11', ['cp1'], ['w1'], {
        'cluster_name': 'kubeforge', 'service_cidr': '10.233.0.0/18', 'cluster_domain': 'cluster.local',
        'api_endpoint': '', 'apiserver_port': 6443, 'apiserver_extra_sans': [], 'admin_group': ''})
    entries = [{name: str(tmp_path) + value for name, value in spec['key'].items()} for spec in specs]
    result = run_module(private_key, dict(keys=entries))
    assert not result.get('failed'), result
    assert [k['path'] for k in result['private_keys']] == [e['path'] for e in entries]
    assert all(k['certificate'] is None for k in result['private_keys'])
    assert all(os.stat(e['path']).st_mode & 0o777 == 0o600 for e in entries)


# --------------------------------------------------------------------------- keypair

def test_keypair_created_kept_and_public_file_repaired(tmp_path):
    args = dict(path=str(tmp_path / 'sa.key'), public_path=str(tmp_path / 'sa.pub'))
    planned = run_module(keypair, args, check_mode=True)
    assert planned['changed'] is True and planned['public_key'] is None and not os.listdir(tmp_path)
    first = run_module(keypair, args)
    assert first['changed'] is True and first['key_type'] == 'rsa-2048'
    assert os.stat(args['path']).st_mode & 0o777 == 0o600
    assert os.stat(args['public_path']).st_mode & 0o777 == 0o644
    assert read(args['public_path']).decode() == first['public_key']
    private = read(args['path'])
    assert pki.public_key_fingerprint(pki.load_private_key(private)) == first['fingerprint']
    assert run_module(keypair, args)['changed'] is False
    other = pki.generate_private_key('rsa-2048')
    with open(args['public_path'], 'wb') as handle:
        handle.write(pki.public_key_pem(other))
    repaired = run_module(keypair, args)
    assert repaired['changed'] is True and 'does not match' in repaired['reason']
    assert read(args['public_path']).decode() == first['public_key'] and read(args['path']) == private


def test_keypair_keeps_a_key_of_another_type_with_a_warning(tmp_path):
    args = dict(path=str(tmp_path / 'sa.key'), public_path=str(tmp_path / 'sa.pub'), key_type='ecdsa-p256')
    run_module(keypair, args)
    private = read(args['path'])
    result = run_module(keypair, dict(args, key_type='rsa-2048'))
    assert result['changed'] is False and result['key_type'] == 'ecdsa-p256'
    assert any('it is kept' in w for w in warning_texts(result))
    assert read(args['path']) == private


def test_keypair_with_a_corrupted_private_key_fails(tmp_path):
    args = dict(path=str(tmp_path / 'sa.key'), public_path=str(tmp_path / 'sa.pub'))
    with open(args['path'], 'w') as handle:
        handle.write('-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n')
    result = run_module(keypair, args)
    assert result['failed'] is True and args['path'] in result['msg']


def test_check_mode_on_a_fresh_cluster_before_the_ca_exists(tmp_path):
    """--check on a first install: the CA task would create the CA, so the later tasks plan instead of failing."""
    ca = dict(path=str(tmp_path / 'cp' / 'ca.crt'), key_path=str(tmp_path / 'cp' / 'ca.key'))
    leaf = run_module(certificate, dict(path=str(tmp_path / 'cp' / 'apiserver.crt'),
                                        key_path=str(tmp_path / 'cp' / 'apiserver.key'), ca_cert_path=ca['path'],
                                        ca_key_path=ca['key_path'], common_name='kube-apiserver', usage='server'),
                      check_mode=True)
    assert leaf['changed'] is True and leaf['reason'].startswith('CA certificate %s does not exist' % ca['path'])
    batch = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=[
        {'id': 'node1', 'public_key': None, 'common_name': 'system:node:node1'}]), check_mode=True)
    assert batch['changed'] is True and batch['certificates']['node1']['certificate'] is None
    assert 'does not exist' in batch['certificates']['node1']['reason']
    assert not os.path.exists(str(tmp_path / 'cp'))
    real = run_module(certificate_batch, dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'], requests=[]))
    assert real['failed'] is True


def test_check_mode_on_a_host_without_cryptography_yet(tmp_path):
    # a first install's plan reaches the PKI modules before the os role installed the library
    from unittest import mock
    args = {'keys': [{'path': str(tmp_path / 'a.key')}]}
    with mock.patch.object(pki, 'HAS_CRYPTOGRAPHY', False):
        planned = run_module(private_key, args, check_mode=True)
        real = run_module(private_key, args)
    assert planned['changed'] is True and planned['missing_libraries'] == ['cryptography']
    assert 'failed' not in planned and not os.path.exists(str(tmp_path / 'a.key'))
    assert real['failed'] is True and 'cryptography' in real['msg']
