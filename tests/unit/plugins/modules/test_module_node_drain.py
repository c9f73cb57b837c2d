# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The node_drain module through main(): arguments, results, changed, failures and check mode.

The kubeconfig is read for real; kube_api.Client is replaced by ``FakeApi``, which keeps nodes, pods
and budgets in dicts (the stand-in API server speaks neither merge patches nor evictions). Evicted
pods go at once. The drain logic itself is tested in module_utils/test_kube_drain.py.
"""

from __future__ import annotations

import copy
import functools
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from module_runner import run_module  # noqa: E402
from support.kube_api_stand_in import write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, kube_drain  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import node_drain  # noqa: E402

WRITES = ('PATCH', 'POST', 'DELETE')


class FakeApi(object):
    def __init__(self):
        self.nodes = {}
        self.pods = {}        # (namespace, name) -> pod
        self.pdbs = []
        self.blocked = set()  # pods whose eviction a budget refuses
        self.calls = []
        self.clients = []     # (server, timeout, user_agent) of each Client made
        self.closed = 0
        self.error = None     # an ApiError every request raises

    def client(self, settings, timeout=120, user_agent='kubeforge', **_kwargs):
        self.clients.append((settings.server, timeout, user_agent))
        return self

    def close(self):
        self.closed += 1

    def writes(self):
        return [call for call in self.calls if call[0] in WRITES]

    def add_node(self, name, ready=True, unschedulable=False):
        self.nodes[name] = {'metadata': {'name': name, 'annotations': {}},
                            'spec': {'unschedulable': True} if unschedulable else {},
                            'status': {'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'Unknown'}]}}

    def add_pod(self, name, owner_kind=None, node='w1', namespace='default', labels=None):
        meta = {'name': name, 'namespace': namespace, 'uid': 'uid-' + name, 'labels': labels or {}}
        if owner_kind:
            meta['ownerReferences'] = [{'kind': owner_kind, 'name': name.rsplit('-', 1)[0], 'controller': True}]
        self.pods[(namespace, name)] = {'metadata': meta, 'spec': {'nodeName': node}, 'status': {'phase': 'Running'}}

    def request(self, method, path, query=None, body=None, content_type='application/json', no_retry=()):
        self.calls.append((method, path, copy.deepcopy(body)))
        if self.error is not None:
            raise self.error
        parts = path.strip('/').split('/')
        if parts[:3] == ['api', 'v1', 'nodes']:
            name = parts[3]
            if name not in self.nodes:
                raise kube_api.ApiError(404, 'Not Found', 'nodes "%s" not found' % name)
            if method == 'PATCH':
                assert content_type == 'application/merge-patch+json'
                for section in ('metadata', 'spec'):
                    for key, value in (body.get(section) or {}).items():
                        if section == 'metadata':
                            for ann, text in value.items():
                                if text is None:
                                    self.nodes[name]['metadata']['annotations'].pop(ann, None)
                                else:
                                    self.nodes[name]['metadata']['annotations'][ann] = text
                        elif value is None:
                            self.nodes[name]['spec'].pop(key, None)
                        else:
                            self.nodes[name]['spec'][key] = value
            elif method == 'DELETE':
                del self.nodes[name]
                return {}
            return copy.deepcopy(self.nodes[name])
        if parts == ['api', 'v1', 'pods']:
            node = query['fieldSelector'].split('=', 1)[1]
            return {'items': [copy.deepcopy(p) for p in self.pods.values() if p['spec']['nodeName'] == node]}
        if parts[:3] == ['api', 'v1', 'namespaces'] and parts[4] == 'pods':
            key = (parts[3], parts[5])
            if key not in self.pods:
                raise kube_api.ApiError(404, 'Not Found', 'pods "%s" not found' % key[1])
            if method == 'POST':
                assert 429 in no_retry
                if key in self.blocked:
                    raise kube_api.ApiError(429, 'Too Many Requests',
                                            "Cannot evict pod as it would violate the pod's disruption budget.")
                del self.pods[key]
                return {}
            if method == 'DELETE':
                del self.pods[key]
                return {}
            return copy.deepcopy(self.pods[key])
        if parts[:3] == ['apis', 'policy', 'v1']:
            return {'items': copy.deepcopy(self.pdbs)}
        raise AssertionError('unexpected request %s %s' % (method, path))


@pytest.fixture
def fake(monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(kube_api, 'Client', api.client)
    return api


@pytest.fixture
def clock(monkeypatch):
    """The drain's sleeps and clock, fake (a drain held by a budget waits out its timeout)."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    monkeypatch.setattr(kube_drain, 'Drainer',
                        functools.partial(kube_drain.Drainer, sleep=sleep, clock=lambda: now[0]))
    return now


@pytest.fixture
def kubeconfig(pki, tmp_path):
    return write_kubeconfig(tmp_path / 'admin.conf', 'https://192.0.2.10:6443', pki)


def a_worker(fake):
    fake.add_node('w1')
    fake.add_pod('web-5d9c-abcde', 'ReplicaSet', labels={'app': 'web'})
    fake.add_pod('flannel-x1', 'DaemonSet', namespace='kube-system')


def test_drained_cordons_and_evicts_then_changes_nothing(fake, kubeconfig):
    a_worker(fake)
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'reason': 'upgrade',
                                     'server': 'https://10.0.0.11:6443'})
    assert not result.get('failed'), result
    assert result['changed'] is True and result['cordoned'] is True
    assert result['evicted'] == ['default/web-5d9c-abcde']
    assert result['left'] == [{'pod': 'kube-system/flannel-x1', 'reason': 'DaemonSet flannel'}]
    assert result['skipped'] == ''
    assert fake.nodes['w1']['spec'] == {'unschedulable': True}
    assert fake.nodes['w1']['metadata']['annotations'] == {kube_drain.CORDON_ANNOTATION: 'upgrade'}
    assert list(fake.pods) == [('kube-system', 'flannel-x1')]
    assert fake.clients == [('https://10.0.0.11:6443', 120, 'kubeforge.cluster.node_drain')]
    assert fake.closed == 1

    again = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig})
    assert not again.get('failed'), again
    assert again['changed'] is False and again['cordoned'] is False and again['evicted'] == []
    assert fake.clients[1][0] == 'https://192.0.2.10:6443'


def test_check_mode_reports_what_would_change_and_writes_nothing(fake, kubeconfig):
    a_worker(fake)
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig}, check_mode=True)
    assert not result.get('failed'), result
    assert result['changed'] is True and result['cordoned'] is True
    assert result['evicted'] == ['default/web-5d9c-abcde']
    assert fake.writes() == [] and 'unschedulable' not in fake.nodes['w1']['spec']


def test_a_drain_held_by_a_budget_fails_naming_pod_and_budget(fake, kubeconfig, clock):
    a_worker(fake)
    fake.blocked.add(('default', 'web-5d9c-abcde'))
    fake.pdbs.append({'metadata': {'name': 'web', 'namespace': 'default'},
                      'spec': {'maxUnavailable': 0, 'selector': {'matchLabels': {'app': 'web'}}},
                      'status': {'currentHealthy': 1, 'expectedPods': 1, 'disruptionsAllowed': 0}})
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'timeout': 20})
    assert result['failed'] is True
    assert result['msg'].startswith(
        'drain of node w1 stopped after 20 s; it stays cordoned and no pod was deleted past its budget: '
        'pod default/web-5d9c-abcde is held by PodDisruptionBudget default/web (maxUnavailable 0; 1 of 1 pods '
        'healthy, 0 disruptions allowed)')
    assert clock[0] >= 20
    assert ('default', 'web-5d9c-abcde') in fake.pods
    assert not [call for call in fake.calls if call[0] == 'DELETE']
    assert fake.nodes['w1']['spec'] == {'unschedulable': True}
    assert fake.closed == 1


def test_a_bare_pod_fails_the_task_and_changes_nothing(fake, kubeconfig):
    a_worker(fake)
    fake.add_pod('scratch')
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig})
    assert result['failed'] is True
    assert result['msg'].startswith('node w1 was not drained, nothing changed: default/scratch: no controller')
    assert fake.writes() == []
    forced = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'force': True})
    assert not forced.get('failed'), forced
    assert 'default/scratch' in forced['evicted']


def test_skip_unready(fake, kubeconfig):
    fake.add_node('w1', ready=False)
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'skip_unready': True})
    assert not result.get('failed'), result
    assert result['changed'] is False and result['skipped'].startswith('node w1 is not Ready')
    result = run_module(node_drain, {'node': 'etcd1', 'kubeconfig': kubeconfig, 'skip_unready': True})
    assert result['changed'] is False and 'not a node of the cluster' in result['skipped']
    assert fake.writes() == []


def test_schedulable_lifts_only_our_cordon(fake, kubeconfig):
    a_worker(fake)
    run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig})
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'state': 'schedulable'})
    assert not result.get('failed'), result
    assert result['changed'] is True and result['note'] == ''
    assert fake.nodes['w1']['spec'] == {} and fake.nodes['w1']['metadata']['annotations'] == {}

    fake.add_node('w2', unschedulable=True)
    result = run_module(node_drain, {'node': 'w2', 'kubeconfig': kubeconfig, 'state': 'schedulable'})
    assert result['changed'] is False
    assert result['note'] == 'w2 was cordoned before this run, not by it: it stays cordoned'
    assert fake.nodes['w2']['spec'] == {'unschedulable': True}

    result = run_module(node_drain, {'node': 'w9', 'kubeconfig': kubeconfig, 'state': 'schedulable'})
    assert result['failed'] is True and result['msg'] == 'node w9 is not registered in the cluster'


def test_absent_deletes_the_node_object_once(fake, kubeconfig):
    fake.add_node('w1')
    assert run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'state': 'absent'},
                      check_mode=True)['changed'] is True
    assert 'w1' in fake.nodes
    assert run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'state': 'absent'})['changed'] is True
    assert 'w1' not in fake.nodes
    assert run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig, 'state': 'absent'})['changed'] is False


def test_api_errors_fail_the_task_with_the_api_message(fake, kubeconfig):
    fake.error = kube_api.ApiError(403, 'Forbidden', 'nodes "w1" is forbidden: User "x" cannot get resource "nodes"')
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': kubeconfig})
    assert result['failed'] is True
    assert result['msg'] == '403 Forbidden: nodes "w1" is forbidden: User "x" cannot get resource "nodes"'
    assert fake.closed == 1


def test_a_missing_kubeconfig_fails_before_any_request(fake, tmp_path):
    result = run_module(node_drain, {'node': 'w1', 'kubeconfig': str(tmp_path / 'nope.conf')})
    assert result['failed'] is True
    assert result['msg'] == 'kubeconfig %s does not exist' % (tmp_path / 'nope.conf')
    assert fake.clients == [] and fake.calls == []
