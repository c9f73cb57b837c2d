# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The component_config module through main(): write, unchanged re-run, check mode, diff, secrets."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module, warning_texts  # noqa: E402
from realistic_configs import CASES, CONTAINERD_1, CONTAINERD_2, ENCRYPTION, ENCRYPTION_KEY, KUBELET  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.modules import certificate, component_config  # noqa: E402


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


@pytest.mark.parametrize('kind, config, extra', CASES, ids=['%s-%s' % (c[0], '-'.join(c[2].values())) for c in CASES])
def test_every_kind_written_then_unchanged(tmp_path, kind, config, extra):
    dest = str(tmp_path / 'conf' / 'file')
    args = dict(kind=kind, dest=dest, config=copy.deepcopy(config), **extra)
    first = run_module(component_config, args)
    assert first['changed'] is True and not first.get('failed'), first
    content = read(dest)
    assert first['checksum'] == hashlib.sha256(content).hexdigest()
    expected_mode = 0o600 if kind == 'EncryptionConfiguration' else 0o644
    assert os.stat(dest).st_mode & 0o777 == expected_mode
    mtime = os.stat(dest).st_mtime_ns
    second = run_module(component_config, args)
    assert second['changed'] is False and second['checksum'] == first['checksum']
    assert os.stat(dest).st_mtime_ns == mtime


def test_check_mode_and_diff(tmp_path):
    dest = str(tmp_path / 'config.yaml')
    args = dict(kind='KubeletConfiguration', dest=dest, config=KUBELET)
    planned = run_module(component_config, args, check_mode=True, diff=True)
    assert planned['changed'] is True and not os.path.exists(dest)
    assert planned['diff']['before'] == '' and 'cgroupDriver: systemd' in planned['diff']['after']
    run_module(component_config, args)
    changed = dict(args, overrides={'maxPods': 250})
    planned = run_module(component_config, changed, check_mode=True, diff=True)
    assert planned['changed'] is True
    assert 'maxPods: 110' in planned['diff']['before'] and 'maxPods: 250' in planned['diff']['after']
    assert b'maxPods: 110' in read(dest)
    assert planned['checksum'] == hashlib.sha256(planned['diff']['after'].encode()).hexdigest()
    assert run_module(component_config, args, check_mode=True)['changed'] is False


def test_validation_failure_lists_every_problem_and_writes_nothing(tmp_path):
    dest = str(tmp_path / 'config.yaml')
    config = dict(KUBELET, cgroupDrivr='systemd', maxPods='many')
    result = run_module(component_config, dict(kind='KubeletConfiguration', dest=dest, config=config))
    assert result['failed'] is True
    assert 'KubeletConfiguration: unknown field .cgroupDrivr; did you mean cgroupDriver?' in result['msg']
    assert "KubeletConfiguration: .maxPods must be an integer, got 'many'" in result['msg']
    assert len(result['errors']) == 2
    assert not os.path.exists(dest)


def test_allow_unknown_passes_with_a_warning(tmp_path):
    dest = str(tmp_path / 'config.yaml')
    config = dict(KUBELET, someFutureField=True)
    result = run_module(component_config, dict(kind='KubeletConfiguration', dest=dest, config=config,
                                               allow_unknown=['someFutureField']))
    assert result['changed'] is True
    assert warning_texts(result) == [
        'KubeletConfiguration: unknown field .someFutureField (passed: allow_unknown lists someFutureField)']
    assert yaml.safe_load(read(dest))['someFutureField'] is True


def test_encryption_secrets_are_masked_and_never_returned(tmp_path):
    dest = str(tmp_path / 'encryption.yaml')
    args = dict(kind='EncryptionConfiguration', dest=dest, config=ENCRYPTION)
    result = run_module(component_config, args, diff=True)
    assert result['changed'] is True
    assert ENCRYPTION_KEY in read(dest).decode()
    dumped = json.dumps(result)
    assert ENCRYPTION_KEY not in dumped
    assert '<masked sha256:' in result['diff']['after']
    rotated = copy.deepcopy(ENCRYPTION)
    rotated['resources'][0]['providers'][0]['aescbc']['keys'].insert(0, {'name': 'key2', 'secret': 'bmV3IGtleSBtYXRlcmlhbA=='})
    result = run_module(component_config, dict(args, config=rotated), diff=True)
    dumped = json.dumps(result)
    assert ENCRYPTION_KEY not in dumped and 'bmV3IGtleSBtYXRlcmlhbA==' not in dumped
    assert result['diff']['before'].count('<masked sha256:') == 1 and result['diff']['after'].count('<masked sha256:') == 2


def test_containerd_requires_its_version(tmp_path):
    result = run_module(component_config, dict(kind='containerd', dest=str(tmp_path / 'config.toml'), config=CONTAINERD_1))
    assert result['failed'] is True and 'containerd_version' in result['msg']


def test_containerd_toml_reads_back(tmp_path):
    dest = str(tmp_path / 'config.toml')
    run_module(component_config, dict(kind='containerd', dest=dest, config=CONTAINERD_1, containerd_version='1.7.24'))
    back = tomllib.loads(read(dest).decode())
    assert back['version'] == 2
    runc = back['plugins']['io.containerd.grpc.v1.cri']['containerd']['runtimes']['runc']
    assert runc['options']['SystemdCgroup'] is True
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]' in read(dest).decode()


@pytest.mark.skipif(shutil.which('containerd') is None, reason='containerd is not installed on this machine')
def test_containerd_itself_reads_the_file(tmp_path):
    dest = str(tmp_path / 'config.toml')
    version = subprocess.run(['containerd', '--version'], capture_output=True, text=True, check=True).stdout.split()[2]
    major2 = version.lstrip('v').startswith('2.')
    config = copy.deepcopy(CONTAINERD_2 if major2 else CONTAINERD_1)
    result = run_module(component_config, dict(kind='containerd', dest=dest, config=config, containerd_version=version))
    assert not result.get('failed'), result
    proc = subprocess.run(['containerd', '--config', dest, 'config', 'dump'], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    dumped = tomllib.loads(proc.stdout)
    if major2:
        runtime = dumped['plugins']['io.containerd.cri.v1.runtime']
        assert runtime['containerd']['runtimes']['runc']['options']['SystemdCgroup'] is True
        assert runtime['cni']['bin_dirs'] == ['/opt/cni/bin']
        assert dumped['plugins']['io.containerd.cri.v1.images']['pinned_images']['sandbox'] == 'registry.k8s.io/pause:3.10'
    else:
        cri = dumped['plugins']['io.containerd.grpc.v1.cri']
        assert cri['containerd']['runtimes']['runc']['options']['SystemdCgroup'] is True
        assert cri['sandbox_image'] == 'registry.k8s.io/pause:3.10'
    assert dumped['oom_score'] == -999 and dumped['root'] == '/var/lib/containerd'


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which('etcd') is None, reason='etcd is not installed on this machine')
def test_etcd_runs_with_the_written_file_and_our_certificates(tmp_path):
    """etcd started with --config-file serves TLS with the issued certificates and demands client certificates."""
    version = subprocess.run(['etcd', '--version'], capture_output=True, text=True, check=True).stdout.split()[2]
    pki_dir = tmp_path / 'pki'
    ca = dict(path=str(pki_dir / 'ca.crt'), key_path=str(pki_dir / 'ca.key'), common_name='etcd-ca', usage='ca')
    run_module(certificate, ca)
    common = dict(ca_cert_path=ca['path'], ca_key_path=ca['key_path'])
    for name, usage, sans in (('server', 'server+client', {'dns_names': ['localhost'], 'ip_addresses': ['127.0.0.1']}),
                              ('peer', 'server+client', {'dns_names': ['localhost'], 'ip_addresses': ['127.0.0.1']}),
                              ('healthcheck-client', 'client', {})):
        result = run_module(certificate, dict(common, path=str(pki_dir / (name + '.crt')),
                                              key_path=str(pki_dir / (name + '.key')), common_name='kube-etcd-' + name,
                                              usage=usage, **sans))
        assert result['changed'] is True
    client_port, peer_port = _free_port(), _free_port()
    config = {
        'name': 'etcd1', 'data-dir': str(tmp_path / 'data'),
        'listen-client-urls': 'https://127.0.0.1:%d' % client_port,
        'advertise-client-urls': 'https://127.0.0.1:%d' % client_port,
        'listen-peer-urls': 'https://127.0.0.1:%d' % peer_port,
        'initial-advertise-peer-urls': 'https://127.0.0.1:%d' % peer_port,
        'initial-cluster': 'etcd1=https://127.0.0.1:%d' % peer_port, 'initial-cluster-state': 'new',
        'initial-cluster-token': 'test', 'heartbeat-interval': 100, 'election-timeout': 1000,
        'grpc-keepalive-timeout': 20000000000, 'auto-compaction-mode': 'periodic', 'auto-compaction-retention': '1',
        'logger': 'zap', 'log-level': 'warn', 'log-outputs': ['stderr'],
        'client-transport-security': {'cert-file': str(pki_dir / 'server.crt'), 'key-file': str(pki_dir / 'server.key'),
                                      'client-cert-auth': True, 'trusted-ca-file': ca['path']},
        'peer-transport-security': {'cert-file': str(pki_dir / 'peer.crt'), 'key-file': str(pki_dir / 'peer.key'),
                                    'client-cert-auth': True, 'trusted-ca-file': ca['path']},
    }
    dest = str(tmp_path / 'etcd.conf.yml')
    result = run_module(component_config, dict(kind='etcd', dest=dest, config=config, etcd_version=version))
    assert result['changed'] is True, result
    log = open(str(tmp_path / 'etcd.log'), 'w')
    proc = subprocess.Popen(['etcd', '--config-file', dest], stdout=log, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=ca['path'])
        context.load_cert_chain(str(pki_dir / 'healthcheck-client.crt'), str(pki_dir / 'healthcheck-client.key'))
        url = 'https://127.0.0.1:%d/health' % client_port
        health = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as response:
                    health = json.loads(response.read())
            except (OSError, ValueError):
                time.sleep(0.2)
        assert health is not None, open(str(tmp_path / 'etcd.log')).read()
        assert health['health'] == 'true'
        anonymous = ssl.create_default_context(cafile=ca['path'])
        with pytest.raises((ssl.SSLError, OSError)):
            with urllib.request.urlopen(url, context=anonymous, timeout=5) as response:
                response.read()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
