# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Optional: the manifest module against a real kube-apiserver (and etcd) on 127.0.0.1.

The binaries are the ones the test bed builds (``hack/testbed build``), found under
``$KUBEFORGE_TESTBED_HOME/go/bin/`` (default /var/tmp/kubeforge-testbed). Without them every test here
is skipped; the stand-in tests in test_module_manifest.py cover the module either way. This checks
what the stand-in can only imitate: that a real API server's dry-run answer equals the stored object
for a no-op re-run (defaults, managedFields), that a CRD's kind is found once Established, and that
its error messages reach the user.

No controller manager runs, so nothing becomes "ready" except what the API server itself marks
(Namespaces, CustomResourceDefinitions).
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from module_runner import run_module  # noqa: E402
from support.kube_api_stand_in import free_port, make_pki, write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.modules import manifest  # noqa: E402

GO_BIN = os.path.join(os.environ.get('KUBEFORGE_TESTBED_HOME') or '/var/tmp/kubeforge-testbed', 'go', 'bin')


def _newest(pattern):
    found = sorted(glob.glob(os.path.join(GO_BIN, pattern)),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split('@')[-1].split('/')[0].split('.')])
    return found[-1] if found else None


APISERVER = _newest('kubernetes@*/kube-apiserver')
ETCD = _newest('etcd@*/etcd')

pytestmark = pytest.mark.skipif(not (APISERVER and ETCD), reason='no kube-apiserver/etcd built under %s' % GO_BIN)


def _wait_port(port, process, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError('%s exited with %s' % (what, process.returncode))
        with socket.socket() as sock:
            if sock.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError('%s did not listen on %d within %d s' % (what, port, timeout))


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    work = tmp_path_factory.mktemp('apiserver')
    pki = make_pki(work / 'pki')
    sa_key = ec.generate_private_key(ec.SECP256R1())
    (work / 'sa.key').write_bytes(sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (work / 'sa.pub').write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    logs = open(str(work / 'log'), 'wb')
    etcd = subprocess.Popen([
        ETCD, '--data-dir', str(work / 'etcd'), '--listen-client-urls', 'http://127.0.0.1:%d' % etcd_port,
        '--advertise-client-urls', 'http://127.0.0.1:%d' % etcd_port,
        '--listen-peer-urls', 'http://127.0.0.1:%d' % peer_port,
        '--initial-advertise-peer-urls', 'http://127.0.0.1:%d' % peer_port,
        '--initial-cluster', 'default=http://127.0.0.1:%d' % peer_port,
    ], stdout=logs, stderr=subprocess.STDOUT)
    apiserver = None
    try:
        _wait_port(etcd_port, etcd, 'etcd')
        apiserver = subprocess.Popen([
            APISERVER, '--etcd-servers', 'http://127.0.0.1:%d' % etcd_port,
            '--bind-address', '127.0.0.1', '--secure-port', str(api_port),
            '--tls-cert-file', pki.files['server_cert'], '--tls-private-key-file', pki.files['server_key'],
            '--client-ca-file', pki.files['ca'], '--authorization-mode', 'RBAC',
            '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
            '--service-account-key-file', str(work / 'sa.pub'),
            '--service-account-signing-key-file', str(work / 'sa.key'),
            '--service-cluster-ip-range', '10.233.0.0/18', '--cert-dir', str(work / 'certs'),
        ], stdout=logs, stderr=subprocess.STDOUT)
        _wait_port(api_port, apiserver, 'kube-apiserver')
        config = write_kubeconfig(work / 'admin.conf', 'https://127.0.0.1:%d' % api_port, pki)
        _wait_ready(config)
        yield config
    finally:
        for process in (apiserver, etcd):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        logs.close()
        shutil.rmtree(str(work / 'etcd'), ignore_errors=True)


def _wait_ready(config):
    # The API server answers before its bootstrap (default namespaces, RBAC roles) is done.
    deadline = time.monotonic() + 120
    probes = [{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'probe', 'namespace': ns}}
              for ns in ('default', 'kube-system')]
    while True:
        result = run(config, definitions=probes, check_mode=True)
        if not result.get('failed'):
            return
        if time.monotonic() > deadline:
            raise RuntimeError('kube-apiserver not ready: %s' % result)
        time.sleep(1)


def run(config, check_mode=False, diff=False, **args):
    args.setdefault('kubeconfig', config)
    args.setdefault('api_timeout', 30)
    return run_module(manifest, args, check_mode=check_mode, diff=diff)


def actions(result):
    assert not result.get('failed'), result
    return [o['action'] for o in result['objects']]


def objects(ns='kf-test'):
    return [
        {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': ns}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings', 'namespace': ns},
         'data': {'a': '1'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'auth', 'namespace': ns},
         'stringData': {'password': 'real-secret-value'}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'dns', 'namespace': ns},
         'spec': {'selector': {'app': 'dns'}, 'ports': [{'name': 'dns', 'port': 53, 'protocol': 'UDP'}]}},
        {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'dns', 'namespace': ns},
         'spec': {'replicas': 2, 'selector': {'matchLabels': {'app': 'dns'}},
                  'template': {'metadata': {'labels': {'app': 'dns'}},
                               'spec': {'containers': [{'name': 'dns', 'image': 'coredns:1.12.0',
                                                        'ports': [{'containerPort': 53, 'protocol': 'UDP'}]}]}}}},
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole', 'metadata': {'name': 'kf-test:dns'},
         'rules': [{'apiGroups': [''], 'resources': ['services'], 'verbs': ['list', 'watch']}]},
    ]


def test_create_rerun_change_and_delete_by_selector(cluster):
    labels = {'app.kubernetes.io/managed-by': 'kubeforge', 'app.kubernetes.io/part-of': 'kf-test'}
    planned = run(cluster, definitions=objects(), labels=labels, check_mode=True)
    assert actions(planned) == ['created'] * 6
    first = run(cluster, definitions=objects(), labels=labels, diff=True)
    assert actions(first) == ['created'] * 6
    assert 'real-secret-value' not in repr(first)
    assert base64.b64encode(b'real-secret-value').decode() not in repr(first)
    again = run(cluster, definitions=objects(), labels=labels)
    assert actions(again) == ['unchanged'] * 6 and again['changed'] is False
    changed = objects()
    changed[4]['spec']['replicas'] = 3
    result = run(cluster, definitions=changed, labels=labels, diff=True)
    assert actions(result) == ['unchanged'] * 4 + ['configured', 'unchanged']
    assert 'replicas: 3' in result['diff'][0]['after']
    namespace_ready = run(cluster, definitions=objects()[:1], labels=labels, wait=True, wait_timeout=30)
    assert actions(namespace_ready) == ['unchanged']

    kinds = [{'apiVersion': 'apps/v1', 'kind': 'Deployment'}, {'apiVersion': 'v1', 'kind': 'Service'},
             {'apiVersion': 'v1', 'kind': 'Secret'}, {'apiVersion': 'v1', 'kind': 'ConfigMap'},
             {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole'}]
    selector = 'app.kubernetes.io/managed-by=kubeforge,app.kubernetes.io/part-of=kf-test'
    removed = run(cluster, state='absent', selector=selector, kinds=kinds, wait=True, wait_timeout=60)
    assert sorted((o['kind'], o['name']) for o in removed['objects']) == [
        ('ClusterRole', 'kf-test:dns'), ('ConfigMap', 'settings'), ('Deployment', 'dns'), ('Secret', 'auth'),
        ('Service', 'dns')]
    assert actions(run(cluster, state='absent', selector=selector, kinds=kinds)) == []


def test_crd_and_custom_resource(cluster):
    crd = {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': 'pools.network.example.com'},
        'spec': {'group': 'network.example.com', 'scope': 'Cluster',
                 'names': {'kind': 'Pool', 'plural': 'pools', 'singular': 'pool', 'listKind': 'PoolList'},
                 'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {
                     'type': 'object',
                     'properties': {'spec': {'type': 'object', 'properties': {'cidr': {'type': 'string'}}}}}}}]},
    }
    pool = {'apiVersion': 'network.example.com/v1', 'kind': 'Pool', 'metadata': {'name': 'default'},
            'spec': {'cidr': '10.233.64.0/18'}}
    planned = run(cluster, definitions=[crd, pool], check_mode=True)
    assert actions(planned) == ['created', 'created']
    assert actions(run(cluster, definitions=[crd, pool])) == ['created', 'created']
    assert actions(run(cluster, definitions=[crd, pool], wait=True, wait_timeout=60)) == ['unchanged', 'unchanged']
    typo = dict(pool, spec={'cidr': '10.0.0.0/8', 'cdir': 'x'})
    result = run(cluster, definitions=[typo])
    assert result['failed'] is True
    # A real API server answers 500 here; the module retries a 500 only a few times.
    assert result['msg'].startswith('Pool default: 500 Internal Server Error: ')
    assert '.spec.cdir: field not declared in schema' in result['msg']
    removed = run(cluster, state='absent', definitions=[pool, crd], wait=True, wait_timeout=60)
    assert actions(removed) == ['deleted', 'deleted']
    assert actions(run(cluster, state='absent', definitions=[pool, crd])) == ['absent', 'absent']


def test_invalid_object_reports_the_api_message(cluster):
    bad = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'bad', 'namespace': 'default'},
           'spec': {'replicas': -1, 'selector': {'matchLabels': {'app': 'x'}},
                    'template': {'metadata': {'labels': {'app': 'x'}},
                                 'spec': {'containers': [{'name': 'x', 'image': 'x:1'}]}}}}
    result = run(cluster, definitions=[bad])
    assert result['failed'] is True
    assert result['msg'].startswith('Deployment default/bad: 422 Unprocessable Entity: ')
    assert 'spec.replicas: Invalid value: -1' in result['msg']


def test_taking_over_fields_of_another_manager_is_one_change(cluster):
    cm = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'adopted', 'namespace': 'default'},
          'data': {'a': '1'}}
    assert actions(run(cluster, definitions=[cm], field_manager='someone-else')) == ['created']
    assert actions(run(cluster, definitions=[cm])) == ['configured']
    assert actions(run(cluster, definitions=[cm])) == ['unchanged']
    assert actions(run(cluster, state='absent', definitions=[cm])) == ['deleted']


def test_wait_timeout_on_a_deployment_no_controller_rolls_out(cluster):
    deployment = objects('default')[4]
    result = run(cluster, definitions=[deployment], wait=True, wait_timeout=2)
    assert result['failed'] is True
    assert result['msg'] == ('Deployment default/dns: the controller has not observed generation 1 yet '
                             '(observed: None) after 2 s')
    assert actions(run(cluster, state='absent', definitions=[deployment])) == ['deleted']
