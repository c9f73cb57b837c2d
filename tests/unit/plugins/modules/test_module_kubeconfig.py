# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The kubeconfig module through main(), with real certificates: one file (dest), or many (kubeconfigs)."""

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
from ansible_collections.kubeforge.cluster.plugins.module_utils import pki, pki_catalog  # noqa: E402
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
                    client_key_path='/var/lib/kubelet/pki/kubelet-client-current.pem',
                    context_name='default-auth@kubernetes')
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
                client_cert_path=str(tmp_path / 'pki' / 'admin.crt'),
                client_key_path=str(tmp_path / 'pki' / 'admin.key'))
    planned = run_module(kubeconfig, args, check_mode=True, diff=True)
    assert planned['changed'] is True and 'does not exist (yet)' in planned['reason']
    assert planned['diff']['after']['server'] == 'https://192.0.2.10:6443'
    assert not os.listdir(tmp_path)
    failed = run_module(kubeconfig, args)
    assert failed['failed'] is True and failed['msg'] == 'CA certificate %s does not exist' % args['ca_cert_path']


# --------------------------------------------------------------------------- kubeconfigs

@pytest.fixture
def two(creds, tmp_path):
    """creds plus the scheduler's client certificate, and two kubeconfigs: admin.conf and scheduler.conf."""
    pki_dir = tmp_path / 'pki'
    scheduler = dict(path=str(pki_dir / 'scheduler.crt'), key_path=str(pki_dir / 'scheduler.key'),
                     ca_cert_path=creds['ca']['path'], ca_key_path=creds['ca']['key_path'],
                     common_name='system:kube-scheduler', usage='client')
    run_module(certificate, scheduler)
    entries = [dict(dest=creds['dest'], server='https://192.0.2.10:6443', user_name='kubernetes-admin',
                    client_cert_path=creds['admin']['path'], client_key_path=creds['admin']['key_path']),
               dict(dest=str(tmp_path / 'scheduler.conf'), server='https://192.0.2.10:6443', cluster_name='kubeforge',
                    user_name='system:kube-scheduler', client_cert_path=scheduler['path'],
                    client_key_path=scheduler['key_path'])]
    return dict(creds, scheduler=scheduler, entries=entries)


def batch_args(two, *changes, **extra):
    """kubeconfigs args for ``two``; ``changes`` holds one dict of option changes per entry (or none)."""
    entries = [dict(entry, **change) for entry, change in zip(two['entries'], changes + ({},) * len(two['entries']))]
    return dict(extra, ca_cert_path=two['ca']['path'], kubeconfigs=entries)


def key_material(two):
    """Strings of the private keys that must never show in a result."""
    out = ['PRIVATE KEY', 'client-key-data']
    for cert in two['admin'], two['scheduler']:
        key_b64 = base64.b64encode(read(cert['key_path'])).decode()
        out += [key_b64[:24], key_b64[-24:]]
    return out


def test_kubeconfigs_written_0600_then_unchanged(two):
    first = run_module(kubeconfig, batch_args(two))
    assert not first.get('failed'), first
    assert first['changed'] is True
    assert not {'dest', 'context', 'server', 'reason'} & set(first)
    assert [k['dest'] for k in first['kubeconfigs']] == [e['dest'] for e in two['entries']]
    assert [k['context'] for k in first['kubeconfigs']] == ['kubernetes-admin@kubernetes',
                                                            'system:kube-scheduler@kubeforge']
    assert [k['server'] for k in first['kubeconfigs']] == ['https://192.0.2.10:6443'] * 2
    assert all(k['changed'] is True and k['reason'] for k in first['kubeconfigs'])
    for entry, cert in zip(two['entries'], (two['admin'], two['scheduler'])):
        assert os.stat(entry['dest']).st_mode & 0o777 == 0o600
        loaded = yaml.safe_load(read(entry['dest']))
        assert loaded['current-context'] == '%s@%s' % (entry['user_name'], entry.get('cluster_name', 'kubernetes'))
        user = loaded['users'][0]['user']
        assert base64.b64decode(user['client-certificate-data']) == read(cert['path'])
        assert base64.b64decode(user['client-key-data']) == read(cert['key_path'])
        assert base64.b64decode(loaded['clusters'][0]['cluster']['certificate-authority-data']) == \
            read(two['ca']['path'])
    mtimes = [os.stat(e['dest']).st_mtime_ns for e in two['entries']]
    again = run_module(kubeconfig, batch_args(two), diff=True)
    assert again['changed'] is False
    assert [(k['changed'], k['reason']) for k in again['kubeconfigs']] == [(False, ''), (False, '')]
    assert again['diff'] == {'before': {}, 'after': {}}
    assert [os.stat(e['dest']).st_mtime_ns for e in two['entries']] == mtimes


def test_kubeconfigs_first_write_diffs_every_file(two):
    result = run_module(kubeconfig, batch_args(two), diff=True)
    dests = [e['dest'] for e in two['entries']]
    assert sorted(result['diff']['after']) == sorted(dests) and sorted(result['diff']['before']) == sorted(dests)
    assert result['diff']['after'][dests[1]]['server'] == 'https://192.0.2.10:6443'
    dumped = json.dumps(result)
    assert not [text for text in key_material(two) if text in dumped]


def test_kubeconfigs_a_changed_server_rewrites_and_diffs_only_its_file(two):
    run_module(kubeconfig, batch_args(two))
    admin_dest, scheduler_dest = [e['dest'] for e in two['entries']]
    before = {dest: read(dest) for dest in (admin_dest, scheduler_dest)}
    mtime = os.stat(admin_dest).st_mtime_ns
    moved = batch_args(two, {}, {'server': 'https://192.0.2.20:6443'})

    planned = run_module(kubeconfig, moved, check_mode=True, diff=True)
    assert planned['changed'] is True and [k['changed'] for k in planned['kubeconfigs']] == [False, True]
    assert {dest: read(dest) for dest in before} == before

    for result in planned, run_module(kubeconfig, moved, diff=True):
        admin, scheduler = result['kubeconfigs']
        assert admin['changed'] is False and admin['reason'] == ''
        assert scheduler['changed'] is True and 'server' in scheduler['reason']
        assert scheduler['server'] == 'https://192.0.2.20:6443'
        diff = result['diff']
        assert set(diff) == {'before', 'after'}
        assert list(diff['before']) == [scheduler_dest] and list(diff['after']) == [scheduler_dest]
        assert diff['before'][scheduler_dest]['server'] == 'https://192.0.2.10:6443'
        assert diff['after'][scheduler_dest]['server'] == 'https://192.0.2.20:6443'
        assert diff['after'][scheduler_dest]['client_certificate']['subject'] == 'CN=system:kube-scheduler'
        dumped = json.dumps(diff)
        assert 'PRIVATE KEY' not in dumped and 'client-key-data' not in dumped
        dumped = json.dumps(result)
        assert not [text for text in key_material(two) if text in dumped]
    assert read(admin_dest) == before[admin_dest] and os.stat(admin_dest).st_mtime_ns == mtime
    assert yaml.safe_load(read(scheduler_dest))['clusters'][0]['cluster']['server'] == 'https://192.0.2.20:6443'
    assert run_module(kubeconfig, moved)['changed'] is False


def test_kubeconfigs_file_options_apply_to_all(two):
    result = run_module(kubeconfig, batch_args(two, mode='0640'))
    assert result['changed'] is True
    assert [os.stat(e['dest']).st_mode & 0o777 for e in two['entries']] == [0o640, 0o640]


def test_kubeconfigs_repeated_dest_fails_before_writing(two):
    args = batch_args(two)
    args['kubeconfigs'].append(dict(args['kubeconfigs'][0], server='https://192.0.2.30:6443'))
    result = run_module(kubeconfig, args)
    assert result['failed'] is True and two['dest'] in result['msg'] and 'once' in result['msg']
    assert two['entries'][1]['dest'] not in result['msg']
    assert not any(os.path.exists(e['dest']) for e in two['entries'])


def test_kubeconfigs_error_names_the_dest(two, tmp_path):
    other = tmp_path / 'other.key'
    other.write_bytes(pki.private_key_pem(pki.generate_private_key('ecdsa-p256')))
    result = run_module(kubeconfig, batch_args(two, {}, {'client_key_path': str(other)}))
    assert result['failed'] is True
    assert result['msg'].startswith(two['entries'][1]['dest'] + ': ')
    assert 'does not belong to client certificate' in result['msg']
    assert not os.path.exists(two['entries'][1]['dest'])


def test_dest_without_server_fails_clearly(creds):
    args = args_for(creds)
    del args['server']
    result = run_module(kubeconfig, args)
    assert result['failed'] is True
    assert "required by 'dest'" in result['msg'] and 'server' in result['msg']
    for present in ('user_name', 'client_cert_path', 'client_key_path'):
        assert present not in result['msg']
    assert not os.path.exists(creds['dest'])


@pytest.mark.parametrize('change, words', [
    ('both', ['mutually exclusive', 'dest', 'kubeconfigs']),
    ('neither', ['one of', 'dest', 'kubeconfigs']),
    ('entry without server', ['server', 'kubeconfigs']),
])
def test_kubeconfigs_invalid_combinations_fail(two, change, words):
    args = batch_args(two)
    if change == 'both':
        args.update(dest=two['dest'], server='https://192.0.2.10:6443', user_name='kubernetes-admin',
                    client_cert_path=two['admin']['path'], client_key_path=two['admin']['key_path'])
    elif change == 'neither':
        del args['kubeconfigs']
    else:
        del args['kubeconfigs'][1]['server']
    result = run_module(kubeconfig, args)
    assert result['failed'] is True and all(word in result['msg'] for word in words), result['msg']
    assert not any(os.path.exists(e['dest']) for e in two['entries'])


def test_kubeconfigs_take_the_catalogue_entries_as_they_are(tmp_path):
    """The pki role passes every ``kubeconfig`` entry of pki_host_certificates; here in check mode before the
    credentials exist, under tmp_path."""
    specs = pki_catalog.host_certificates('cp1', '192.0.2.11', ['cp1'], ['w1'], {
        'cluster_name': 'kubeforge', 'service_cidr': '10.233.0.0/18', 'cluster_domain': 'cluster.local',
        'api_endpoint': '', 'apiserver_port': 6443, 'apiserver_extra_sans': [], 'admin_group': ''})
    entries = []
    for spec in specs:
        if spec['kubeconfig']:
            entry = dict(spec['kubeconfig'])
            for name in ('dest', 'client_cert_path', 'client_key_path'):
                entry[name] = str(tmp_path) + entry[name]
            entries.append(entry)
    args = dict(ca_cert_path=str(tmp_path / 'etc' / 'kubernetes' / 'pki' / 'ca.crt'), kubeconfigs=entries)
    result = run_module(kubeconfig, args, check_mode=True, diff=True)
    assert not result.get('failed'), result
    assert [k['dest'] for k in result['kubeconfigs']] == [e['dest'] for e in entries] and len(entries) == 6
    assert all(k['changed'] for k in result['kubeconfigs'])
    assert sorted(result['diff']['after']) == sorted(e['dest'] for e in entries)
    assert not os.listdir(str(tmp_path))
