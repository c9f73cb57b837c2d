# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/kube_drain.py: cordon, drain, uncordon and delete of a node, against a fake API; and
the ``no_retry`` of kube_api.Client.request that the evictions rely on, against the stand-in API server.

``FakeCluster`` answers the requests the Drainer makes (nodes, pods, evictions, disruption budgets)
from dicts, on a fake clock: an evicted pod terminates for ``terminating_seconds``, and an eviction
that a budget does not allow is refused with 429 as the eviction API does. It is not Kubernetes.
"""

from __future__ import annotations

import copy
import itertools
import os
import sys
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from support.kube_api_stand_in import write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, kube_drain  # noqa: E402

PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."
WRITES = ('PATCH', 'POST', 'DELETE', 'PUT')


class FakeTime(object):
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def _merge_patch(target, patch):
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge_patch(target.setdefault(key, {}), value)
        else:
            target[key] = copy.deepcopy(value)


class FakeCluster(object):
    """Nodes, pods and PodDisruptionBudgets in dicts, answered like the API server would."""

    def __init__(self, time_source, terminating_seconds=3.0):
        self.time = time_source
        self.terminating_seconds = terminating_seconds
        self.nodes = {}           # name -> Node
        self.pods = {}            # (namespace, name) -> Pod
        self.pdbs = {}            # (namespace, name) -> PodDisruptionBudget
        self.gone_at = {}         # (namespace, name) -> when an evicted pod is gone
        self.calls = []           # (method, path, query, body, content_type, no_retry)
        self.later = []           # [(when, callable)]: things that happen in the cluster meanwhile
        self.replace_on_eviction = set()   # pods a StatefulSet recreates at once under the same name
        self.throttled = set()             # pods whose evictions get a 429 that no budget explains
        self._uids = itertools.count(1)

    # --- building the cluster ---

    def add_node(self, name, ready=True, unschedulable=False, annotations=None):
        node = {'metadata': {'name': name, 'annotations': dict(annotations or {})}, 'spec': {},
                'status': {'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'Unknown'}]}}
        if unschedulable:
            node['spec']['unschedulable'] = True
        self.nodes[name] = node
        return node

    def add_pod(self, name, node='w1', namespace='default', owner=None, labels=None, phase='Running',
                annotations=None):
        meta = {'name': name, 'namespace': namespace, 'uid': 'uid-%d' % next(self._uids),
                'labels': dict(labels or {}), 'annotations': dict(annotations or {})}
        if owner:
            kind, owner_name = owner
            meta['ownerReferences'] = [{'apiVersion': 'apps/v1', 'kind': kind, 'name': owner_name,
                                        'controller': True}]
        pod = {'metadata': meta, 'spec': {'nodeName': node}, 'status': {'phase': phase}}
        self.pods[(namespace, name)] = pod
        return pod

    def add_pdb(self, name, selector, allowed, namespace='default', min_available=1, healthy=2):
        self.pdbs[(namespace, name)] = {
            'metadata': {'name': name, 'namespace': namespace},
            'spec': {'minAvailable': min_available, 'selector': selector},
            'status': {'currentHealthy': healthy, 'expectedPods': healthy, 'disruptionsAllowed': allowed}}

    def writes(self):
        return [call for call in self.calls if call[0] in WRITES]

    # --- the API ---

    def _missing(self, what):
        raise kube_api.ApiError(404, 'Not Found', '%s not found' % what)

    def _tick(self):
        for key, when in list(self.gone_at.items()):
            if self.time.now >= when:
                self.pods.pop(key, None)
                del self.gone_at[key]
        for entry in list(self.later):
            if self.time.now >= entry[0]:
                self.later.remove(entry)
                entry[1]()

    def request(self, method, path, query=None, body=None, content_type='application/json', no_retry=()):
        self.calls.append((method, path, query, copy.deepcopy(body), content_type, no_retry))
        self._tick()
        parts = [urllib.parse.unquote(part) for part in path.strip('/').split('/')]
        if parts[:3] == ['api', 'v1', 'nodes'] and len(parts) == 4:
            return self._node(method, parts[3], body, content_type)
        if parts == ['api', 'v1', 'pods'] and method == 'GET':
            node = query['fieldSelector'].split('=', 1)[1]
            assert query['fieldSelector'] == 'spec.nodeName=' + node
            return {'items': [copy.deepcopy(pod) for pod in self.pods.values() if pod['spec']['nodeName'] == node]}
        if parts[:3] == ['api', 'v1', 'namespaces'] and len(parts) >= 6 and parts[4] == 'pods':
            key = (parts[3], parts[5])
            if len(parts) == 7 and parts[6] == 'eviction' and method == 'POST':
                return self._evict(key, body)
            if len(parts) == 6 and method == 'GET':
                if key not in self.pods:
                    self._missing('pods "%s"' % key[1])
                return copy.deepcopy(self.pods[key])
            if len(parts) == 6 and method == 'DELETE':
                return self._delete_pod(key, body)
        if parts[:4] == ['apis', 'policy', 'v1', 'namespaces'] and parts[5:] == ['poddisruptionbudgets']:
            return {'items': [copy.deepcopy(pdb) for (ns, _n), pdb in sorted(self.pdbs.items()) if ns == parts[4]]}
        raise AssertionError('unexpected request %s %s' % (method, path))

    def _node(self, method, name, body, content_type):
        if name not in self.nodes:
            self._missing('nodes "%s"' % name)
        if method == 'GET':
            return copy.deepcopy(self.nodes[name])
        if method == 'PATCH':
            assert content_type == 'application/merge-patch+json'
            _merge_patch(self.nodes[name], body)
            return copy.deepcopy(self.nodes[name])
        if method == 'DELETE':
            del self.nodes[name]
            return {}
        raise AssertionError('unexpected %s of node %s' % (method, name))

    def _check_uid(self, key, options):
        pod = self.pods.get(key)
        if pod is None:
            self._missing('pods "%s"' % key[1])
        uid = ((options or {}).get('preconditions') or {}).get('uid')
        if uid is not None and uid != pod['metadata']['uid']:
            raise kube_api.ApiError(409, 'Conflict', 'Precondition failed: UID in precondition: %s, UID in object '
                                                     'meta: %s' % (uid, pod['metadata']['uid']))
        return pod

    def _evict(self, key, body):
        assert body['apiVersion'] == 'policy/v1' and body['kind'] == 'Eviction'
        assert (body['metadata']['namespace'], body['metadata']['name']) == key
        pod = self._check_uid(key, body.get('deleteOptions'))
        if key in self.gone_at:
            return {}
        if key in self.throttled:
            raise kube_api.ApiError(429, 'Too Many Requests', 'Too many requests, please try again later.')
        labels = pod['metadata'].get('labels') or {}
        budgets = [pdb for (ns, _n), pdb in self.pdbs.items()
                   if ns == key[0] and kube_drain.selector_matches(pdb['spec'].get('selector'), labels)]
        if any(pdb['status']['disruptionsAllowed'] < 1 for pdb in budgets):
            raise kube_api.ApiError(429, 'Too Many Requests', PDB_REFUSAL)
        for pdb in budgets:
            pdb['status']['disruptionsAllowed'] -= 1
        self._terminate(key)
        return {'kind': 'Status', 'status': 'Success'}

    def _delete_pod(self, key, body):
        self._check_uid(key, body)
        self._terminate(key)
        return {}

    def _terminate(self, key):
        if key in self.replace_on_eviction:
            old = self.pods.pop(key)
            self.add_pod(key[1], node='w2', namespace=key[0], labels=old['metadata']['labels'],
                         owner=('StatefulSet', 'db'))
            return
        self.pods[key]['metadata']['deletionTimestamp'] = '2025-01-01T00:00:00Z'
        self.gone_at[key] = self.time.now + self.terminating_seconds


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def cluster(fake_time):
    return FakeCluster(fake_time)


@pytest.fixture
def drainer(cluster, fake_time):
    return kube_drain.Drainer(cluster, sleep=fake_time.sleep, clock=fake_time.clock)


def a_worker_with_pods(cluster):
    """w1 with a Deployment's pod, a DaemonSet pod, a static pod and a finished bare pod."""
    cluster.add_node('w1')
    cluster.add_node('w2')
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'), labels={'app': 'web'})
    cluster.add_pod('flannel-x', namespace='kube-system', owner=('DaemonSet', 'kube-flannel-ds'))
    cluster.add_pod('haproxy-w1', namespace='kube-system', annotations={kube_drain.MIRROR_ANNOTATION: 'abc'},
                    owner=('Node', 'w1'))
    cluster.add_pod('one-off', phase='Succeeded')
    cluster.add_pod('web-2', node='w2', owner=('ReplicaSet', 'web-5d9c'), labels={'app': 'web'})
    cluster.add_pdb('web', {'matchLabels': {'app': 'web'}}, allowed=1)


# --- selectors and pods --------------------------------------------------------------------------------

LABELS = {'app': 'web', 'tier': 'front'}


@pytest.mark.parametrize('selector, expected', [
    ({}, True),
    ({'matchLabels': {}, 'matchExpressions': []}, True),
    (None, False),
    ({'matchLabels': {'app': 'web'}}, True),
    ({'matchLabels': {'app': 'web', 'tier': 'front'}}, True),
    ({'matchLabels': {'app': 'db'}}, False),
    ({'matchLabels': {'app': 'web', 'zone': 'a'}}, False),
    ({'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['db', 'web']}]}, True),
    ({'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['db']}]}, False),
    ({'matchExpressions': [{'key': 'zone', 'operator': 'In', 'values': ['a']}]}, False),
    ({'matchExpressions': [{'key': 'app', 'operator': 'NotIn', 'values': ['db']}]}, True),
    ({'matchExpressions': [{'key': 'app', 'operator': 'NotIn', 'values': ['web']}]}, False),
    ({'matchExpressions': [{'key': 'zone', 'operator': 'NotIn', 'values': ['a']}]}, True),
    ({'matchExpressions': [{'key': 'tier', 'operator': 'Exists'}]}, True),
    ({'matchExpressions': [{'key': 'zone', 'operator': 'Exists'}]}, False),
    ({'matchExpressions': [{'key': 'zone', 'operator': 'DoesNotExist'}]}, True),
    ({'matchExpressions': [{'key': 'app', 'operator': 'DoesNotExist'}]}, False),
    # every requirement must hold
    ({'matchLabels': {'app': 'web'}, 'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['back']}]},
     False),
    ({'matchLabels': {'app': 'web'},
      'matchExpressions': [{'key': 'tier', 'operator': 'Exists'}, {'key': 'zone', 'operator': 'DoesNotExist'}]},
     True),
])
def test_selector_matches(selector, expected):
    assert kube_drain.selector_matches(selector, LABELS) is expected


def test_classify_leaves_daemonset_and_static_pods_and_refuses_bare_pods(cluster):
    a_worker_with_pods(cluster)
    cluster.add_pod('scratch')  # running, no controller
    pods = [pod for pod in cluster.pods.values() if pod['spec']['nodeName'] == 'w1']
    evict, left, refused = kube_drain.classify(pods)
    assert [kube_drain.pod_id(pod) for pod in evict] == ['default/web-1', 'default/one-off']
    assert left == [{'pod': 'kube-system/flannel-x', 'reason': 'DaemonSet kube-flannel-ds'},
                    {'pod': 'kube-system/haproxy-w1', 'reason': 'static pod (the kubelet runs it from a file)'}]
    assert refused == [{'pod': 'default/scratch', 'reason': 'no controller would recreate it elsewhere'}]

    evict, left, refused = kube_drain.classify(pods, force=True)
    assert [kube_drain.pod_id(pod) for pod in evict] == ['default/web-1', 'default/one-off', 'default/scratch']
    assert refused == [] and len(left) == 2


@pytest.mark.parametrize('phase', ['Succeeded', 'Failed'])
def test_a_finished_bare_pod_is_evicted_not_refused(cluster, phase):
    pod = cluster.add_pod('done', phase=phase)
    assert kube_drain.classify([pod]) == ([pod], [], [])


def test_an_owner_that_is_not_the_controller_does_not_count(cluster):
    pod = cluster.add_pod('adopted')
    pod['metadata']['ownerReferences'] = [{'kind': 'DaemonSet', 'name': 'x', 'controller': False}]
    assert kube_drain.classify([pod])[2] == [{'pod': 'default/adopted',
                                              'reason': 'no controller would recreate it elsewhere'}]


# --- drain -----------------------------------------------------------------------------------------------

def test_drain_cordons_evicts_and_waits_until_the_pods_are_gone(cluster, drainer, fake_time):
    a_worker_with_pods(cluster)
    result = drainer.drain('w1', timeout=60, reason='upgrade')
    assert result['cordoned'] is True and result['skipped'] == ''
    assert result['evicted'] == ['default/web-1', 'default/one-off']
    assert result['left'] == [
        {'pod': 'kube-system/flannel-x', 'reason': 'DaemonSet kube-flannel-ds'},
        {'pod': 'kube-system/haproxy-w1', 'reason': 'static pod (the kubelet runs it from a file)'}]
    node = cluster.nodes['w1']
    assert node['spec']['unschedulable'] is True
    assert node['metadata']['annotations'] == {kube_drain.CORDON_ANNOTATION: 'upgrade'}
    # the evicted pods are gone; what a drain leaves, and the pod of another node, are still there
    assert sorted(cluster.pods) == [('default', 'web-2'), ('kube-system', 'flannel-x'),
                                    ('kube-system', 'haproxy-w1')]
    # it waited for the pods to terminate (3 s each on the fake clock), polling every POLL_SECONDS
    assert fake_time.sleeps == [kube_drain.POLL_SECONDS, kube_drain.POLL_SECONDS]
    assert result['seconds'] == 4.0
    evictions = [call for call in cluster.calls if call[0] == 'POST']
    assert [call[1] for call in evictions] == ['/api/v1/namespaces/default/pods/web-1/eviction',
                                               '/api/v1/namespaces/default/pods/one-off/eviction']
    # a budget's refusal must come back at once, not be retried by the client for its whole timeout
    assert all(429 in call[5] for call in evictions)
    assert evictions[0][3]['deleteOptions'] == {'preconditions': {'uid': 'uid-1'}}
    # nothing was deleted, only evicted (the node was patched once, to cordon it)
    assert [call[0] for call in cluster.writes()] == ['PATCH', 'POST', 'POST']


def test_a_grace_period_is_passed_with_each_eviction(cluster, drainer):
    a_worker_with_pods(cluster)
    drainer.drain('w1', timeout=60, grace_period=0)
    options = [call[3]['deleteOptions'] for call in cluster.calls if call[0] == 'POST']
    assert options[0] == {'gracePeriodSeconds': 0, 'preconditions': {'uid': 'uid-1'}}


def test_an_empty_node_is_only_cordoned(cluster, drainer, fake_time):
    cluster.add_node('w1')
    cluster.add_pod('flannel-x', namespace='kube-system', owner=('DaemonSet', 'kube-flannel-ds'))
    result = drainer.drain('w1', timeout=60)
    assert result['cordoned'] is True and result['evicted'] == [] and len(result['left']) == 1
    assert [call[0] for call in cluster.writes()] == ['PATCH']
    assert fake_time.sleeps == []


def test_a_drain_held_by_a_budget_fails_after_the_timeout_and_deletes_nothing(cluster, drainer, fake_time):
    cluster.add_node('w1')
    cluster.add_pod('db-0', owner=('StatefulSet', 'db'), labels={'app': 'db'})
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'), labels={'app': 'web'})
    cluster.add_pdb('db', {'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['db']}]}, allowed=0,
                    min_available=2)
    cluster.add_pdb('other', {'matchLabels': {'app': 'other'}}, allowed=0)
    cluster.terminating_seconds = 0  # web-1 goes at once; db-0 never may
    start = fake_time.now
    with pytest.raises(kube_drain.DrainError) as info:
        drainer.drain('w1', timeout=30)
    message = str(info.value)
    assert message.startswith('drain of node w1 stopped after 30 s; it stays cordoned and no pod was deleted past '
                              'its budget: pod default/db-0 is held by PodDisruptionBudget default/db (minAvailable 2; '
                              '2 of 2 pods healthy, 0 disruptions allowed). Free the budget')
    assert 'default/other' not in message and 'web-1' not in message
    assert 'disable_eviction' in message
    # it kept trying until the time allowed, and not much longer
    assert 30 <= fake_time.now - start <= 30 + kube_drain.POLL_SECONDS
    db_evictions = [call for call in cluster.calls if call[1] == '/api/v1/namespaces/default/pods/db-0/eviction']
    assert len(db_evictions) == 30 // kube_drain.POLL_SECONDS + 1
    # db-0 is where it was; nothing was deleted; the node stays cordoned
    assert ('default', 'db-0') in cluster.pods
    assert 'deletionTimestamp' not in cluster.pods[('default', 'db-0')]['metadata']
    assert not [call for call in cluster.calls if call[0] == 'DELETE']
    assert cluster.nodes['w1']['spec']['unschedulable'] is True


def test_a_pod_that_does_not_terminate_in_time_is_named(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'))
    cluster.terminating_seconds = 600
    with pytest.raises(kube_drain.DrainError) as info:
        drainer.drain('w1', timeout=10)
    assert 'stopped after 10 s' in str(info.value)
    assert 'pod default/web-1 is still terminating' in str(info.value)
    assert len([call for call in cluster.calls if call[0] == 'POST']) == 1  # accepted once, then only waited for


def test_a_refusal_without_a_budget_to_name_reports_what_the_api_said(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('db-0', owner=('StatefulSet', 'db'), labels={'app': 'db'})
    cluster.throttled.add(('default', 'db-0'))
    with pytest.raises(kube_drain.DrainError) as info:
        drainer.drain('w1', timeout=4)
    assert 'pod default/db-0 is held by Too many requests, please try again later.' in str(info.value)


def test_an_eviction_refused_for_now_goes_through_once_the_budget_allows(cluster, drainer, fake_time):
    cluster.add_node('w1')
    cluster.add_pod('db-0', owner=('StatefulSet', 'db'), labels={'app': 'db'})
    cluster.add_pdb('db', {'matchLabels': {'app': 'db'}}, allowed=0)

    def replica_ready():
        cluster.pdbs[('default', 'db')]['status']['disruptionsAllowed'] = 1
    cluster.later.append((fake_time.now + 10, replica_ready))
    result = drainer.drain('w1', timeout=60)
    assert result['evicted'] == ['default/db-0']
    assert ('default', 'db-0') not in cluster.pods
    assert 10 <= result['seconds'] <= 10 + 2 * kube_drain.POLL_SECONDS + cluster.terminating_seconds


def test_a_pod_recreated_under_the_same_name_is_not_waited_for(cluster, drainer, fake_time):
    cluster.add_node('w1')
    cluster.add_node('w2')
    cluster.add_pod('db-0', owner=('StatefulSet', 'db'), labels={'app': 'db'})
    cluster.replace_on_eviction.add(('default', 'db-0'))
    result = drainer.drain('w1', timeout=60)
    assert result['evicted'] == ['default/db-0'] and result['seconds'] == 0.0
    assert cluster.pods[('default', 'db-0')]['spec']['nodeName'] == 'w2'
    assert fake_time.sleeps == []


def test_a_pod_gone_before_its_eviction_counts_as_evicted(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'))
    real_request = cluster.request

    def request(method, path, **kwargs):
        if method == 'POST':
            cluster.pods.clear()  # deleted by someone else between the listing and the eviction
        return real_request(method, path, **kwargs)
    cluster.request = request
    assert drainer.drain('w1', timeout=60)['evicted'] == ['default/web-1']


def test_disable_eviction_deletes_pods_past_their_budget(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('db-0', owner=('StatefulSet', 'db'), labels={'app': 'db'})
    cluster.add_pdb('db', {'matchLabels': {'app': 'db'}}, allowed=0)
    result = drainer.drain('w1', timeout=60, disable_eviction=True, grace_period=5)
    assert result['evicted'] == ['default/db-0'] and ('default', 'db-0') not in cluster.pods
    deletes = [call for call in cluster.calls if call[0] == 'DELETE']
    assert [call[1] for call in deletes] == ['/api/v1/namespaces/default/pods/db-0']
    assert deletes[0][3] == {'gracePeriodSeconds': 5, 'preconditions': {'uid': 'uid-1'}}
    assert not [call for call in cluster.calls if call[0] == 'POST']


def test_a_bare_pod_is_refused_before_anything_changes(cluster, drainer):
    a_worker_with_pods(cluster)
    cluster.add_pod('scratch')
    cluster.add_pod('debug', namespace='kube-system')
    with pytest.raises(kube_drain.DrainError) as info:
        drainer.drain('w1', timeout=60)
    assert str(info.value).startswith(
        'node w1 was not drained, nothing changed: default/scratch: no controller would recreate it elsewhere; '
        'kube-system/debug: no controller would recreate it elsewhere. ')
    assert 'force' in str(info.value)
    assert cluster.writes() == []
    assert 'unschedulable' not in cluster.nodes['w1']['spec']
    assert ('default', 'web-1') in cluster.pods


def test_force_evicts_a_bare_pod(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('scratch')
    result = drainer.drain('w1', timeout=60, force=True)
    assert result['evicted'] == ['default/scratch'] and ('default', 'scratch') not in cluster.pods


def test_check_mode_reports_and_changes_nothing(cluster, drainer, fake_time):
    a_worker_with_pods(cluster)
    before = copy.deepcopy((cluster.nodes, cluster.pods, cluster.pdbs))
    result = drainer.drain('w1', timeout=60, check_mode=True)
    assert result['cordoned'] is True
    assert result['evicted'] == ['default/web-1', 'default/one-off'] and len(result['left']) == 2
    assert cluster.writes() == []
    assert (cluster.nodes, cluster.pods, cluster.pdbs) == before
    assert fake_time.sleeps == []


def test_check_mode_still_refuses_a_bare_pod(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('scratch')
    with pytest.raises(kube_drain.DrainError, match='default/scratch'):
        drainer.drain('w1', timeout=60, check_mode=True)


def test_skip_unready_leaves_a_node_that_is_not_ready(cluster, drainer):
    cluster.add_node('w1', ready=False)
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'))
    result = drainer.drain('w1', timeout=60, skip_unready=True)
    assert result == {'cordoned': False, 'evicted': [], 'left': [], 'seconds': 0.0,
                      'skipped': 'node w1 is not Ready: not drained (its pods go when the Node object does)'}
    assert cluster.writes() == [] and 'unschedulable' not in cluster.nodes['w1']['spec']
    # without skip_unready, a NotReady node is drained like any other
    assert drainer.drain('w1', timeout=60)['evicted'] == ['default/web-1']


def test_skip_unready_accepts_a_host_that_is_not_a_node(cluster, drainer):
    result = drainer.drain('etcd1', timeout=60, skip_unready=True)
    assert result['skipped'] == 'etcd1 is not a node of the cluster: nothing to drain'
    assert result['cordoned'] is False and result['evicted'] == []
    assert cluster.writes() == []
    with pytest.raises(kube_drain.DrainError, match='^node etcd1 is not registered in the cluster$'):
        drainer.drain('etcd1', timeout=60)


def test_skip_unready_drains_a_ready_node(cluster, drainer):
    cluster.add_node('w1')
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'))
    result = drainer.drain('w1', timeout=60, skip_unready=True)
    assert result['skipped'] == '' and result['evicted'] == ['default/web-1']


# --- cordon, uncordon, delete ------------------------------------------------------------------------------

def test_uncordon_lifts_our_cordon(cluster, drainer):
    cluster.add_node('w1', annotations={'keep': 'me'})
    drainer.drain('w1', timeout=60, reason='upgrade')
    assert drainer.uncordon('w1', check_mode=True) == (True, '')
    assert cluster.nodes['w1']['spec']['unschedulable'] is True
    assert drainer.uncordon('w1') == (True, '')
    assert 'unschedulable' not in cluster.nodes['w1']['spec']
    assert cluster.nodes['w1']['metadata']['annotations'] == {'keep': 'me'}
    # again: nothing of ours left to lift
    assert drainer.uncordon('w1') == (False, '')


def test_a_cordon_of_someone_else_survives_drain_and_uncordon(cluster, drainer):
    cluster.add_node('w1', unschedulable=True)
    cluster.add_pod('web-1', owner=('ReplicaSet', 'web-5d9c'))
    result = drainer.drain('w1', timeout=60)
    assert result['cordoned'] is False and result['evicted'] == ['default/web-1']
    assert kube_drain.CORDON_ANNOTATION not in cluster.nodes['w1']['metadata']['annotations']
    assert drainer.uncordon('w1') == (False, 'w1 was cordoned before this run, not by it: it stays cordoned')
    assert cluster.nodes['w1']['spec']['unschedulable'] is True
    assert not [call for call in cluster.writes() if call[1] == '/api/v1/nodes/w1']


def test_cordon_and_uncordon_of_a_node_that_is_not_registered(drainer):
    with pytest.raises(kube_drain.DrainError, match='node w9 is not registered in the cluster'):
        drainer.cordon('w9', 'upgrade')
    with pytest.raises(kube_drain.DrainError, match='node w9 is not registered in the cluster'):
        drainer.uncordon('w9')


def test_delete_node_is_idempotent(cluster, drainer):
    cluster.add_node('w1')
    assert drainer.delete_node('w1', check_mode=True) is True
    assert 'w1' in cluster.nodes
    assert drainer.delete_node('w1') is True
    assert 'w1' not in cluster.nodes
    assert drainer.delete_node('w1') is False
    assert [call[:2] for call in cluster.writes()] == [('DELETE', '/api/v1/nodes/w1')]


def test_other_api_errors_are_not_taken_for_a_missing_node(cluster, drainer):
    def forbidden(method, path, **kwargs):
        raise kube_api.ApiError(403, 'Forbidden', 'nodes "w1" is forbidden')
    cluster.request = forbidden
    with pytest.raises(kube_api.ApiError, match='403'):
        drainer.delete_node('w1')
    with pytest.raises(kube_api.ApiError, match='403'):
        drainer.drain('w1', timeout=60, skip_unready=True)


# --- kube_api.Client.request(no_retry=...) -----------------------------------------------------------------

def test_a_status_in_no_retry_is_raised_at_once_and_others_are_still_retried(api, pki, tmp_path):
    sleeps = []
    settings = kube_api.load_kubeconfig(write_kubeconfig(tmp_path / 'admin.conf', api.url, pki))
    client = kube_api.Client(settings, timeout=60, sleep=sleeps.append)
    api.faults = [('GET', '/api/v1', 429), ('GET', '/api/v1', 429)]
    with pytest.raises(kube_api.ApiError) as info:
        client.request('GET', '/api/v1', no_retry=(429,))
    assert info.value.status == 429 and info.value.message == 'injected failure 429'
    assert sleeps == [] and [r[1] for r in api.requests] == ['/api/v1']
    # without no_retry a 429 is retried as before (the second injected 429)
    assert client.request('GET', '/api/v1')['groupVersion'] == 'v1'
    assert len(sleeps) == 1 and api.faults == []
    # a 503 is still waited out with no_retry=(429,)
    api.faults = [('GET', '/api/v1', 503)]
    assert client.request('GET', '/api/v1', no_retry=(429,))['groupVersion'] == 'v1'
    assert len(sleeps) == 2 and api.faults == []
    client.close()


def _started(namespace, name, start, owner=None, template_hash=None):
    meta = {"namespace": namespace, "name": name, "labels": {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "Pod", "name": "not-the-controller"},
                                   {"kind": owner[0], "name": owner[1], "controller": True}]
    if template_hash:
        meta["labels"]["pod-template-hash"] = template_hash
    return {"metadata": meta, "status": {"startTime": start} if start else {}}


def test_workloads_started_before_a_time():
    from ansible_collections.kubeforge.cluster.plugins.filter.workloads import FilterModule
    since = "2026-12-03T10:00:00Z"
    pods = [
        _started("kube-system", "coredns-5d8f-abcde", "2026-12-03T09:00:00Z", ("ReplicaSet", "coredns-5d8f"), "5d8f"),
        _started("kube-system", "coredns-5d8f-fghij", "2026-12-03T09:30:00Z", ("ReplicaSet", "coredns-5d8f"), "5d8f"),
        _started("kube-flannel", "flannel-x", "2026-12-03T09:00:00Z", ("DaemonSet", "kube-flannel-ds")),
        _started("kube-system", "late", "2026-12-03T10:00:01Z", ("DaemonSet", "late")),
        _started("kube-system", "pending", None, ("StatefulSet", "pending")),
        _started("default", "elsewhere", "2026-12-03T09:00:00Z", ("StatefulSet", "web")),
        _started("kube-system", "bare", "2026-12-03T09:00:00Z"),
        # a ReplicaSet of no Deployment (no template hash in its name) is left alone
        _started("kube-system", "rs-pod", "2026-12-03T09:00:00Z", ("ReplicaSet", "plain"), "ffff"),
    ]
    expected = [["kube-flannel", "daemonset/kube-flannel-ds"], ["kube-system", "deployment/coredns"]]
    assert kube_drain.workloads_started_before(pods, ["kube-system", "kube-flannel"], since) == expected
    stale = FilterModule().filters()["stale_workloads"]
    # 2026-12-03T10:00:00Z in seconds since the epoch
    assert stale({"items": pods}, ["kube-system", "kube-flannel"], 1796292000.5) == expected
