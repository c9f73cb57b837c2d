# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The kubeconfig module through main(), with real certificates."""

from __future__ import annotations

import base64
import json
import os
import sys
from unittest import mock

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kubeconfig as kubeconfig_utils  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.module_utils import pki  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import certificate, kubeconfig  # noqa: E402


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


@pytest.fixture
def creds(tmp_path):
    pki_dir = tmp_path / 'pki'
    ca = dict(path=str(pki_dir / 'ca.crt'), key_path=str(pki_dir / 'ca.key'), common_name='kubernetes-ca', usage='ca')
    run_module(certificate, ca)
    admin = dict(path=str(pki_dir / 'admin.crt'), key_path=str(pki_dir / 'admin.key'), ca_cert_path=ca['path'],
                 ca_key_path=ca['key_path'], common_name='kubernetes-admin', organizations=['kubeadm:cluster-admins'],
                 usage='client')
    run_module(certificate, admin)
    return {'ca': ca, 'admin': admin, 'dest': str(tmp_path / 'admin.conf')}


def args_for(creds, **extra):
    args = dict(dest=creds['dest'], server='https://192.0.2.10:6443', ca_cert_path=creds['ca']['path'],
                user_name='kubernetes-admin', client_cert_path=creds['admin']['path'],
                client_key_path=creds['admin']['key_path'])
    args.update(extra)
    return args


def test_written_unchanged_and_0600(creds):
    first = run_module(kubeconfig, args_for(creds))
    assert first['changed'] is True and first['context'] == 'kubernetes-admin@kubernetes'
    assert os.stat(creds['dest']).st_mode & 0o777 == 0o600
    loaded = yaml.safe_load(read(creds['dest']))
    assert loaded['apiVersion'] == 'v1' and loaded['kind'] == 'Config'
    assert loaded['current-context'] == 'kubernetes-admin@kubernetes'
    user = loaded['users'][0]['user']
    assert base64.b64decode(user['client-certificate-data']) == read(creds['admin']['path'])
    assert base64.b64decode(user['client-key-data']) == read(creds['admin']['key_path'])
    assert base64.b64decode(loaded['clusters'][0]['cluster']['certificate-authority-data']) == read(creds['ca']['path'])
    mtime = os.stat(creds['dest']).st_mtime_ns
    again = run_module(kubeconfig, args_for(creds))
    assert again['changed'] is False and os.stat(creds['dest']).st_mtime_ns == mtime


def test_reformatted_file_with_the_same_meaning_is_left_alone(creds):
    run_module(kubeconfig, args_for(creds))
    loaded = yaml.safe_load(read(creds['dest']))
    with open(creds['dest'], 'w') as handle:
        yaml.safe_dump(loaded, handle, default_flow_style=False, sort_keys=False, indent=4)
    reformatted = read(creds['dest'])
    result = run_module(kubeconfig, args_for(creds))
    assert result['changed'] is False and read(creds['dest']) == reformatted


def test_meaning_change_is_written_and_diffed_without_key(creds):
    run_module(kubeconfig, args_for(creds))
    planned = run_module(kubeconfig, args_for(creds, server='https://192.0.2.20:6443'), check_mode=True, diff=True)
    assert planned['changed'] is True
    assert planned['diff']['before']['server'] == 'https://192.0.2.10:6443'
    assert planned['diff']['after']['server'] == 'https://192.0.2.20:6443'
    assert planned['diff']['after']['client_certificate']['subject'] == 'CN=kubernetes-admin,O=kubeadm:cluster-admins'
    assert 'https://192.0.2.10:6443' in read(creds['dest']).decode()
    result = run_module(kubeconfig, args_for(creds, server='https://192.0.2.20:6443'), diff=True)
    assert result['changed'] is True and 'server' in result['reason']
    dumped = json.dumps(result)
    key_b64 = base64.b64encode(read(creds['admin']['key_path'])).decode()
    assert 'PRIVATE KEY' not in dumped and key_b64[:24] not in dumped and key_b64[-24:] not in dumped


def test_renewed_client_certificate_is_a_change(creds):
    run_module(kubeconfig, args_for(creds))
    run_module(certificate, dict(creds['admin'], force=True))
    result = run_module(kubeconfig, args_for(creds), diff=True)
    assert result['changed'] is True and result['reason'] == 'user credentials differ'
    assert result['diff']['before']['client_certificate']['fingerprint'] != \
        result['diff']['after']['client_certificate']['fingerprint']


def test_referenced_client_files_kubelet_style(creds):
    args = args_for(creds, user_name='default-auth', embed_client=False,
                    client_cert_path='/var/lib/kubelet/pki/kubelet-client-current.pem',
                    client_key_path='/var/lib/kubelet/pki/kubelet-client-current.pem', context_name='default-auth@kubernetes')
    result = run_module(kubeconfig, args)
    assert result['changed'] is True
    user = yaml.safe_load(read(creds['dest']))['users'][0]['user']
    assert user == {'client-certificate': '/var/lib/kubelet/pki/kubelet-client-current.pem',
                    'client-key': '/var/lib/kubelet/pki/kubelet-client-current.pem'}
    assert run_module(kubeconfig, args)['changed'] is False


def test_mismatched_client_key_fails(creds, tmp_path):
    other = tmp_path / 'other.key'
    other.write_bytes(pki.private_key_pem(pki.generate_private_key('ecdsa-p256')))
    result = run_module(kubeconfig, args_for(creds, client_key_path=str(other)))
    assert result['failed'] is True and 'does not belong to client certificate' in result['msg']
    assert not os.path.exists(creds['dest'])


def test_missing_pyyaml_is_reported(creds):
    # PyYAML is installed here; its absence on a host is simulated.
    with mock.patch.object(kubeconfig_utils, 'HAS_YAML', False):
        result = run_module(kubeconfig, args_for(creds))
    assert result['failed'] is True and 'PyYAML' in result['msg']


def test_check_mode_before_the_credentials_exist(tmp_path):
    args = dict(dest=str(tmp_path / 'admin.conf'), server='https://192.0.2.10:6443',
                ca_cert_path=str(tmp_path / 'pki' / 'ca.crt'), user_name='kubernetes-admin',
                client_cert_path=str(tmp_path / 'pki' / 'admin.crt'), client_key_path=str(tmp_path / 'pki' / 'admin.key'))
    planned = run_module(kubeconfig, args, check_mode=True, diff=True)
    assert planned['changed'] is True and 'does not exist (yet)' in planned['reason']
    assert planned['diff']['after']['server'] == 'https://192.0.2.10:6443'
    assert not os.listdir(tmp_path)
    failed = run_module(kubeconfig, args)
    assert failed['failed'] is True and failed['msg'] == 'CA certificate %s does not exist' % args['ca_cert_path']
