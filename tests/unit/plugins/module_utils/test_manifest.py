# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/manifest.py: definitions, normalisation, Secret masking, readiness by kind."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import manifest


def test_prepare_expands_lists_skips_empty_documents_and_sets_labels():
    cm = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'a', 'labels': {'x': '1', 'owner': 'me'}}}
    listed = {'apiVersion': 'v1', 'kind': 'List', 'items': [
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': 'b'}}]}
    objects = manifest.prepare([cm, None, listed], labels={'owner': 'kubeforge'})
    assert [o['metadata']['name'] for o in objects] == ['a', 'b']
    assert objects[0]['metadata']['labels'] == {'x': '1', 'owner': 'kubeforge'}
    assert objects[1]['metadata']['labels'] == {'owner': 'kubeforge'}
    assert cm['metadata']['labels'] == {'x': '1', 'owner': 'me'}, 'the input is not modified'


def test_prepare_reports_every_problem():
    with pytest.raises(manifest.ManifestError) as info:
        manifest.prepare([
            {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'generateName': 'x-'}},
            {'apiVersion': 'v1', 'kind': 'List', 'items': [{'kind': 'Pod', 'metadata': {'name': 'p'}}]},
            {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'n', 'namespace': 3}},
        ], labels={'ok': 'yes', 'bad': 1})
    assert str(info.value).splitlines() == [
        '4 problem(s) in the definitions:',
        '- labels.bad: label values must be strings, got 1',
        '- definitions[0]: no metadata.name (generateName is not supported: an applied object needs a name)',
        '- definitions[1].items[0] (Pod p): no apiVersion',
        '- definitions[2] (ConfigMap n): metadata.namespace must be a string',
    ]


def test_normalize_drops_status_and_volatile_metadata():
    live = {'apiVersion': 'v1', 'kind': 'Service', 'status': {'loadBalancer': {}},
            'metadata': {'name': 's', 'uid': 'u', 'resourceVersion': '5', 'generation': 2, 'managedFields': [],
                         'creationTimestamp': 't', 'labels': {'a': 'b'}}, 'spec': {'clusterIP': '10.0.0.1'}}
    assert manifest.normalize(live) == {'apiVersion': 'v1', 'kind': 'Service',
                                        'metadata': {'name': 's', 'labels': {'a': 'b'}}, 'spec': {'clusterIP': '10.0.0.1'}}
    assert 'uid' in live['metadata']
    assert manifest.normalize(None) == {}


def test_owned_fields_of_the_apply_manager_only():
    obj = {'metadata': {'managedFields': [
        {'manager': 'kubeforge', 'operation': 'Update', 'fieldsV1': {'f:a': {}}},
        {'manager': 'kubeforge', 'operation': 'Apply', 'subresource': 'status', 'fieldsV1': {'f:b': {}}},
        {'manager': 'kubeforge', 'operation': 'Apply', 'fieldsV1': {'f:data': {}}},
    ]}}
    assert manifest.owned_fields(obj, 'kubeforge') == {'f:data': {}}
    assert manifest.owned_fields(obj, 'other') is None


def test_masker_hides_values_keeps_comparisons():
    masker = manifest.Masker(key=b'k' * 32)
    secret = {'apiVersion': 'v1', 'kind': 'Secret',
              'metadata': {'name': 's', 'annotations': {manifest.LAST_APPLIED: '{"data":{"p":"cGFzcw=="}}'}},
              'data': {'p': base64.b64encode(b'pass').decode(), 'q': base64.b64encode(b'pass').decode()},
              'stringData': {'r': 'pass', 's': 'other'}}
    masked = masker.mask(secret)
    assert masked['data']['p'] == masked['data']['q'] == masked['stringData']['r']
    assert masked['stringData']['s'] != masked['stringData']['r']
    assert masked['data']['p'].startswith('<hidden: hmac-sha256 ') and len(masked['data']['p']) == len('<hidden: hmac-sha256 >') + 16
    assert 'cGFzcw' not in repr(masked) and 'pass' not in repr(masked).replace('<hidden', '')
    assert secret['data']['p'] == base64.b64encode(b'pass').decode(), 'the input is not modified'
    assert manifest.Masker().mask(secret)['data']['p'] != masked['data']['p'], 'a new run has a new key'
    config_map = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'data': {'p': 'visible'}}
    assert masker.mask(config_map) is config_map


def test_secret_values_for_no_log():
    values = manifest.secret_values([
        {'apiVersion': 'v1', 'kind': 'Secret', 'data': {'a': base64.b64encode(b'plain-a').decode()},
         'stringData': {'b': 'plain-b'}},
        {'apiVersion': 'v1', 'kind': 'List', 'items': [{'apiVersion': 'v1', 'kind': 'Secret', 'stringData': {'c': 'plain-c'}}]},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'data': {'d': 'not-secret'}}, 'junk', None,
    ])
    assert values == {base64.b64encode(b'plain-a').decode(), 'plain-a', 'plain-b', 'plain-c'}


def deployment(generation=2, observed=2, desired=2, **status):
    full = dict(observedGeneration=observed, replicas=desired, updatedReplicas=desired, readyReplicas=desired,
                availableReplicas=desired)
    full.update(status)
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'generation': generation},
            'spec': {'replicas': desired}, 'status': full}


@pytest.mark.parametrize('obj, ready, state', [
    (deployment(), True, '2 of 2 replicas available'),
    (deployment(observed=1), False, 'the controller has not observed generation 2 yet (observed: 1)'),
    (deployment(updatedReplicas=1), False, '1 of 2 replicas updated'),
    (deployment(replicas=3), False, '1 old replicas pending termination'),
    (deployment(availableReplicas=1, readyReplicas=1), False, '1 of 2 replicas available'),
    (deployment(availableReplicas=0, readyReplicas=1), False, '0 of 2 replicas available (1 ready)'),
    ({'apiVersion': 'apps/v1', 'kind': 'DaemonSet', 'metadata': {'generation': 1},
      'status': {'observedGeneration': 1, 'desiredNumberScheduled': 3, 'updatedNumberScheduled': 3, 'numberAvailable': 2}},
     False, '2 of 3 pods available'),
    ({'apiVersion': 'apps/v1', 'kind': 'DaemonSet', 'metadata': {'generation': 1},
      'status': {'observedGeneration': 1, 'desiredNumberScheduled': 3, 'updatedNumberScheduled': 1, 'numberAvailable': 3}},
     False, '1 of 3 pods updated'),
    ({'apiVersion': 'apps/v1', 'kind': 'DaemonSet', 'metadata': {'generation': 1},
      'status': {'observedGeneration': 1, 'desiredNumberScheduled': 0}}, True, '0 of 0 pods available'),
    ({'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'generation': 1}, 'spec': {'replicas': 3},
      'status': {'observedGeneration': 1, 'readyReplicas': 3, 'availableReplicas': 3, 'updatedReplicas': 1,
                 'currentRevision': 'a', 'updateRevision': 'b'}}, False, '1 of 3 replicas updated to revision b'),
    ({'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'generation': 1},
      'spec': {'replicas': 3, 'updateStrategy': {'type': 'RollingUpdate', 'rollingUpdate': {'partition': 2}}},
      'status': {'observedGeneration': 1, 'readyReplicas': 3, 'availableReplicas': 3, 'updatedReplicas': 1,
                 'currentRevision': 'a', 'updateRevision': 'b'}}, True, '3 of 3 replicas ready'),
    ({'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
      'status': {'conditions': [{'type': 'Established', 'status': 'False', 'reason': 'Installing'}]}},
     False, 'not Established yet (Installing)'),
    ({'apiVersion': 'apiregistration.k8s.io/v1', 'kind': 'APIService',
      'status': {'conditions': [{'type': 'Available', 'status': 'False', 'reason': 'FailedDiscoveryCheck',
                                 'message': 'failing or missing response'}]}},
     False, 'not Available yet (FailedDiscoveryCheck: failing or missing response)'),
    ({'apiVersion': 'batch/v1', 'kind': 'Job', 'status': {'active': 1}}, False,
     'not Complete yet: 0 succeeded, 1 active, 0 failed'),
    ({'apiVersion': 'v1', 'kind': 'Pod', 'status': {'phase': 'Pending'}}, False, 'not Ready yet (phase Pending)'),
    ({'apiVersion': 'v1', 'kind': 'Namespace', 'status': {'phase': 'Terminating'}}, False, 'phase Terminating'),
    ({'apiVersion': 'v1', 'kind': 'ConfigMap'}, True, 'exists'),
    ({'apiVersion': 'example.com/v1', 'kind': 'Deployment'}, True, 'exists'),
])
def test_readiness(obj, ready, state):
    assert manifest.readiness(obj) == (ready, state, None)


@pytest.mark.parametrize('obj, failure', [
    ({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'generation': 1}, 'spec': {'replicas': 1},
      'status': {'observedGeneration': 1, 'conditions': [
          {'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded',
           'message': 'ReplicaSet "x" has timed out progressing.'}]}},
     'rollout exceeded its progress deadline (ProgressDeadlineExceeded: ReplicaSet "x" has timed out progressing.)'),
    ({'apiVersion': 'v1', 'kind': 'Pod', 'status': {'phase': 'Succeeded'}},
     'the Pod has terminated (phase Succeeded) and will never be Ready'),
    ({'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
      'status': {'conditions': [{'type': 'NamesAccepted', 'status': 'False', 'reason': 'NameConflict',
                                 'message': '"pools" is already in use'}]}},
     'NamesAccepted is False (NameConflict: "pools" is already in use)'),
])
def test_failures_that_end_the_wait_at_once(obj, failure):
    assert manifest.readiness(obj)[2] == failure
