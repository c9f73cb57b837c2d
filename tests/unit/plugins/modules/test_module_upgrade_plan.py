# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The upgrade_plan module through main(): what it asks each API server, and how a plan or a refusal returns.

The kubeconfig is read for real; kube_api.Client is replaced by a fake that answers ``/version`` and
``/api/v1/nodes`` per API server URL (the stand-in API server has no ``/version``). The decisions
themselves are tested in module_utils/test_upgrade_plan.py.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from module_runner import run_module  # noqa: E402
from support.kube_api_stand_in import write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import upgrade_plan  # noqa: E402

CP1 = 'https://10.0.0.11:6443'
CP2 = 'https://10.0.0.12:6443'


def node(name, kubelet, ready='True', message='kubelet is posting ready status', runtime='containerd://2.3.4'):
    conditions = [{'type': 'MemoryPressure', 'status': 'False'}]
    if ready is not None:
        conditions.append({'type': 'Ready', 'status': ready, 'reason': 'KubeletReady', 'message': message})
    return {'metadata': {'name': name},
            'status': {'conditions': conditions,
                       'nodeInfo': {'kubeletVersion': kubelet, 'containerRuntimeVersion': runtime}}}


class FakeServers(object):
    """Per URL: the gitVersion it answers, or an exception every request raises."""

    def __init__(self):
        self.answers = {}
        self.nodes = []
        self.requests = []    # (server, path)
        self.clients = []     # (server, timeout, user_agent)
        self.closed = []

    def client(self, settings, timeout=120, user_agent='kubeforge', **_kwargs):
        self.clients.append((settings.server, timeout, user_agent))
        servers = self

        class Client(object):
            def request(self, method, path, **_kwargs):
                assert method == 'GET'
                servers.requests.append((settings.server, path))
                answer = servers.answers[settings.server]
                if isinstance(answer, Exception):
                    raise answer
                if path == '/version':
                    return {'major': '1', 'gitVersion': answer}
                if path == '/api/v1/nodes':
                    return {'items': servers.nodes}
                raise AssertionError(path)

            def close(self):
                servers.closed.append(settings.server)
        return Client()


@pytest.fixture
def servers(monkeypatch):
    fake = FakeServers()
    monkeypatch.setattr(kube_api, 'Client', fake.client)
    return fake


@pytest.fixture
def kubeconfig(pki, tmp_path):
    return write_kubeconfig(tmp_path / 'admin.conf', 'https://lb.example:6443', pki)


def args(kubeconfig, **extra):
    base = {'target': '1.36.4', 'apiservers': {'cp1': CP1, 'cp2': CP2}, 'nodes': ['cp1', 'cp2', 'w1'],
            'kubeconfig': kubeconfig}
    base.update(extra)
    return base


def a_cluster_at(servers, version):
    servers.answers = {CP1: 'v' + version, CP2: 'v' + version}
    servers.nodes = [node(name, 'v' + version) for name in ('cp1', 'cp2', 'w1')]


@pytest.mark.parametrize('check_mode', [False, True])
def test_an_upgrade_plan_asks_each_api_server_directly(servers, kubeconfig, check_mode):
    a_cluster_at(servers, '1.35.8')
    result = run_module(upgrade_plan, args(kubeconfig), check_mode=check_mode)
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert (result['direction'], result['from'], result['target']) == ('upgrade', '1.35.8', '1.36.4')
    assert result['control_planes'] == ['cp1', 'cp2'] and result['workers'] == ['w1']
    assert result['refusals'] == [] and result['installed'] is True
    assert result['summary'] == 'upgrade from 1.35.8 to 1.36.4: control planes cp1, cp2, then workers w1'
    assert result['versions']['cp1'] == {'kube-apiserver': '1.35.8', 'kubelet': '1.35.8',
                                         'runtime': 'containerd://2.3.4'}
    # each API server's own URL (not the kubeconfig's load balancer); the nodes are read once
    assert servers.clients == [(CP1, 20, 'kubeforge.cluster.upgrade_plan'), (CP2, 20, 'kubeforge.cluster.upgrade_plan')]
    assert servers.requests == [(CP1, '/version'), (CP1, '/api/v1/nodes'), (CP2, '/version')]
    assert servers.closed == [CP1, CP2]


def test_nothing_to_do(servers, kubeconfig):
    a_cluster_at(servers, '1.36.4')
    result = run_module(upgrade_plan, args(kubeconfig, runtime_target='2.3.4'))
    assert not result.get('failed'), result
    assert result['direction'] == 'none' and result['summary'] == \
        'every node already runs Kubernetes 1.36.4; nothing to do'


def test_a_downgrade_needs_allow_downgrade(servers, kubeconfig):
    a_cluster_at(servers, '1.36.4')
    refused = run_module(upgrade_plan, args(kubeconfig, target='1.35.9'))
    assert refused['failed'] is True and 'kubeforge_allow_downgrade: true' in refused['msg']
    allowed = run_module(upgrade_plan, args(kubeconfig, target='1.35.9', allow_downgrade=True))
    assert not allowed.get('failed'), allowed
    assert allowed['summary'] == 'downgrade from 1.36.4 to 1.35.9: workers w1, then control planes cp1, cp2'


def test_an_api_server_that_does_not_answer_fails_the_task_with_the_plan(servers, kubeconfig):
    a_cluster_at(servers, '1.35.8')
    servers.answers[CP1] = kube_api.ConnectionFailed('GET https://10.0.0.11:6443: connection refused; gave up '
                                                     'after 7 attempts in 20 s')
    result = run_module(upgrade_plan, args(kubeconfig))
    assert result['failed'] is True
    assert result['refusals'] == ['kube-apiserver on cp1 does not answer (GET https://10.0.0.11:6443: connection '
                                  'refused; gave up after 7 attempts in 20 s): the control planes must all be '
                                  'healthy before an upgrade']
    assert result['msg'] == 'refused: ' + result['refusals'][0] == result['summary']
    # the nodes were read from the API server that answers
    assert (CP2, '/api/v1/nodes') in servers.requests
    assert result['versions']['w1'] == {'kubelet': '1.35.8', 'runtime': 'containerd://2.3.4'}
    assert servers.closed == [CP1, CP2]


def test_an_api_error_counts_as_not_answering(servers, kubeconfig):
    a_cluster_at(servers, '1.35.8')
    servers.answers[CP2] = kube_api.ApiError(503, 'Service Unavailable', 'etcd cluster is unavailable')
    result = run_module(upgrade_plan, args(kubeconfig))
    assert result['failed'] is True
    assert result['refusals'] == ['kube-apiserver on cp2 does not answer (503 Service Unavailable: etcd cluster is '
                                  'unavailable): the control planes must all be healthy before an upgrade']


def test_node_conditions_become_refusals_with_their_message(servers, kubeconfig):
    a_cluster_at(servers, '1.35.8')
    servers.nodes[2] = node('w1', 'v1.35.8', ready='False', message='PLEG is not healthy')
    servers.nodes[1] = node('cp2', 'v1.35.8', ready=None)
    result = run_module(upgrade_plan, args(kubeconfig, nodes=['cp1', 'cp2', 'w1', 'w2']))
    assert result['failed'] is True
    assert result['refusals'] == [
        'node cp2 is not Ready (no Ready condition): every node must be Ready before an upgrade',
        'node w1 is not Ready (PLEG is not healthy): every node must be Ready before an upgrade',
        'w2 is in the inventory but not a node of the cluster: join it with scale.yml first, or take it out of '
        'the inventory']


def test_a_target_that_is_not_a_version_fails(servers, kubeconfig):
    a_cluster_at(servers, '1.35.8')
    result = run_module(upgrade_plan, args(kubeconfig, target='1.36'))
    assert result['failed'] is True and result['msg'] == "'1.36' is not a version (MAJOR.MINOR.PATCH)"


def test_no_kubeconfig_and_nothing_listening_means_not_installed(servers, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(upgrade_plan, '_listening', lambda url: asked.append(url) or False)
    result = run_module(upgrade_plan, args(str(tmp_path / 'nope.conf')))
    assert not result.get('failed'), result
    assert result['installed'] is False and result['direction'] == 'none'
    assert result['control_planes'] == [] and result['workers'] == [] and result['refusals'] == []
    assert result['summary'] == ('Kubernetes is not installed (no %s, no kube-apiserver listening on cp1, cp2): '
                                 'nothing of it moves; install.yml installs it' % (tmp_path / 'nope.conf'))
    assert asked == [CP1, CP2] and servers.requests == []


def test_no_kubeconfig_while_an_api_server_listens_fails_naming_it(servers, tmp_path, monkeypatch):
    monkeypatch.setattr(upgrade_plan, '_listening', lambda url: url == CP2)
    result = run_module(upgrade_plan, args(str(tmp_path / 'nope.conf')))
    assert result['failed'] is True
    assert result['msg'] == ('kubeconfig %s does not exist, but something listens at the kube-apiserver address of '
                             'cp2: restore the kubeconfig (install.yml writes it) before an upgrade'
                             % (tmp_path / 'nope.conf'))
    assert servers.requests == []


def test_listening_is_a_real_tcp_connect():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert upgrade_plan._listening('https://127.0.0.1:%d' % port) is True
    finally:
        listener.close()
    assert upgrade_plan._listening('https://127.0.0.1:%d' % port) is False
