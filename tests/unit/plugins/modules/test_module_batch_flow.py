# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""private_key on the nodes, certificate_batch on the CA host, certificates written back; and keypair."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module, warning_texts  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki  # noqa: E402
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
        proc = subprocess.run(['openssl', 'verify', '-CAfile', ca['path'], cert_path], capture_output=True, text=True, check=False)
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
    assert batch['certificates']['node1']['reason'] == "key mismatch: the certificate's public key is not the private key's"
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
