# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The manifest module through main(), against a stand-in API server over TLS with client certificates.

The stand-in (tests/support/kube_api_stand_in.py) is a real HTTPS server in this process that
speaks the part of the Kubernetes API the module uses; it is not Kubernetes.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from module_runner import run_module, warning_texts  # noqa: E402
from support.kube_api_stand_in import StandInApiServer, free_port, write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.modules import manifest  # noqa: E402

SECRET_VALUE = 's3cr3t-pa55w0rd-value'


@pytest.fixture
def kubeconfig(api, pki, tmp_path):
    return write_kubeconfig(tmp_path / 'admin.conf', api.url, pki)


def coredns(replicas=2, image='coredns:1.12.0'):
    return {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': 'coredns', 'namespace': 'kube-system', 'labels': {'k8s-app': 'kube-dns'}},
        'spec': {
            'replicas': replicas,
            'selector': {'matchLabels': {'k8s-app': 'kube-dns'}},
            'template': {'metadata': {'labels': {'k8s-app': 'kube-dns'}},
                         'spec': {'containers': [{'name': 'coredns', 'image': image}]}},
        },
    }


def config_map(name='coredns', namespace='kube-system', data=None, labels=None):
    obj = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name},
           'data': data if data is not None else {'Corefile': '.:53 {\n    forward . /etc/resolv.conf\n}\n'}}
    if namespace:
        obj['metadata']['namespace'] = namespace
    if labels:
        obj['metadata']['labels'] = labels
    return obj


def cluster_role(name='system:coredns'):
    return {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole', 'metadata': {'name': name},
            'rules': [{'apiGroups': [''], 'resources': ['endpoints', 'services'], 'verbs': ['list', 'watch']}]}


def run(config, check_mode=False, diff=False, **args):
    args.setdefault('kubeconfig', config)
    args.setdefault('api_timeout', 10)
    return run_module(manifest, args, check_mode=check_mode, diff=diff)


def actions(result):
    return [(o['kind'], o['namespace'], o['name'], o['action']) for o in result['objects']]


def test_create_then_unchanged_rerun(api, kubeconfig):
    definitions = [config_map(), coredns(), cluster_role()]
    first = run(kubeconfig, definitions=definitions, labels={'app.kubernetes.io/managed-by': 'kubeforge'})
    assert not first.get('failed'), first
    assert first['changed'] is True
    assert actions(first) == [('ConfigMap', 'kube-system', 'coredns', 'created'),
                              ('Deployment', 'kube-system', 'coredns', 'created'),
                              ('ClusterRole', None, 'system:coredns', 'created')]
    assert first['objects'][1]['apiVersion'] == 'apps/v1'
    stored = api.get('apps/v1', 'Deployment', 'coredns', 'kube-system')
    assert stored['metadata']['labels'] == {'k8s-app': 'kube-dns', 'app.kubernetes.io/managed-by': 'kubeforge'}
    assert stored['metadata']['managedFields'][0]['manager'] == 'kubeforge'

    writes = len(api.writes())
    again = run(kubeconfig, definitions=definitions, labels={'app.kubernetes.io/managed-by': 'kubeforge'})
    assert again['changed'] is False, again
    assert [o['action'] for o in again['objects']] == ['unchanged'] * 3
    assert len(api.writes()) == writes, 'an unchanged re-run must not write'


def test_changed_field_is_configured_with_diff(api, kubeconfig):
    run(kubeconfig, definitions=[coredns(replicas=2)])
    result = run(kubeconfig, definitions=[coredns(replicas=3)], diff=True)
    assert result['changed'] is True
    assert actions(result) == [('Deployment', 'kube-system', 'coredns', 'configured')]
    assert api.get('apps/v1', 'Deployment', 'coredns', 'kube-system')['spec']['replicas'] == 3
    [diff] = result['diff']
    assert diff['before_header'] == 'Deployment kube-system/coredns'
    assert 'replicas: 2' in diff['before'] and 'replicas: 3' in diff['after']
    for volatile in ('managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation', 'status'):
        assert volatile not in diff['before'] and volatile not in diff['after']
    assert 'revisionHistoryLimit: 10' in diff['after'], 'the diff shows what the server would store, defaults included'


def test_removing_a_field_from_the_definition_is_a_change(api, kubeconfig):
    run(kubeconfig, definitions=[config_map(data={'a': '1', 'b': '2'})])
    result = run(kubeconfig, definitions=[config_map(data={'a': '1'})])
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'configured')]
    assert api.get('v1', 'ConfigMap', 'coredns', 'kube-system')['data'] == {'a': '1'}


def test_check_mode_writes_nothing_and_reports_the_plan(api, kubeconfig):
    run(kubeconfig, definitions=[coredns(replicas=2)])
    before = len(api.writes())
    result = run(kubeconfig, definitions=[coredns(replicas=5), config_map()], check_mode=True, diff=True, wait=True)
    assert result['changed'] is True
    assert actions(result) == [('Deployment', 'kube-system', 'coredns', 'configured'),
                               ('ConfigMap', 'kube-system', 'coredns', 'created')]
    assert len(api.writes()) == before
    assert api.get('apps/v1', 'Deployment', 'coredns', 'kube-system')['spec']['replicas'] == 2
    assert api.get('v1', 'ConfigMap', 'coredns', 'kube-system') is None
    assert result['diff'][1]['before'] == '' and 'Corefile' in result['diff'][1]['after']
    dry_runs = [r for r in api.requests if r[0] == 'PATCH']
    assert dry_runs and all(r[2].get('dryRun') == 'All' for r in dry_runs[-2:])


def test_check_mode_plans_objects_in_a_namespace_and_of_a_kind_created_earlier(api, kubeconfig):
    definitions = [{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'addons'}},
                   config_map(name='settings', namespace='addons'), crd(), widget(namespace='addons')]
    result = run(kubeconfig, definitions=definitions, check_mode=True)
    assert not result.get('failed'), result
    assert [o['action'] for o in result['objects']] == ['created'] * 4
    assert result['objects'][3]['namespace'] == 'addons'
    texts = warning_texts(result)
    assert any('ConfigMap addons/settings: check mode cannot dry-run' in t and 'Namespace addons' in t for t in texts)
    assert any('Widget addons/w1' in t and 'widgets.shop.example.com' in t for t in texts)
    assert api.writes() == []


def test_diff_hides_secret_values_but_shows_a_change(api, kubeconfig):
    secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'auth', 'namespace': 'kube-system'},
              'stringData': {'password': SECRET_VALUE, 'user': 'admin-user'}}
    first = run(kubeconfig, definitions=[secret], diff=True)
    assert actions(first) == [('Secret', 'kube-system', 'auth', 'created')]
    changed = copy.deepcopy(secret)
    changed['stringData']['password'] = SECRET_VALUE + '-rotated'
    result = run(kubeconfig, definitions=[changed], diff=True)
    assert actions(result) == [('Secret', 'kube-system', 'auth', 'configured')]
    text = repr(first) + repr(result)
    assert SECRET_VALUE not in text and 'admin-user' not in text
    import base64
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
    [diff] = result['diff']
    before = [line for line in diff['before'].splitlines() if 'password' in line]
    after = [line for line in diff['after'].splitlines() if 'password' in line]
    assert before[0].startswith('  password: "<hidden: hmac-sha256 ')
    assert before != after, 'a changed value must show as a changed marker'
    user_before = [line for line in diff['before'].splitlines() if 'user:' in line]
    user_after = [line for line in diff['after'].splitlines() if 'user:' in line]
    assert user_before == user_after, 'an unchanged value keeps its marker within a run'
    again = run(kubeconfig, definitions=[changed])
    assert again['changed'] is False


def test_delete_named_objects(api, kubeconfig):
    run(kubeconfig, definitions=[config_map(), cluster_role()])
    gone = [config_map(), cluster_role(), config_map(name='never-existed')]
    planned = run(kubeconfig, state='absent', definitions=gone, check_mode=True, diff=True)
    assert [o['action'] for o in planned['objects']] == ['deleted', 'deleted', 'absent']
    assert api.get('v1', 'ConfigMap', 'coredns', 'kube-system') is not None
    assert 'Corefile' in planned['diff'][0]['before'] and planned['diff'][0]['after'] == ''
    result = run(kubeconfig, state='absent', definitions=gone)
    assert result['changed'] is True
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'deleted'),
                               ('ClusterRole', None, 'system:coredns', 'deleted'),
                               ('ConfigMap', 'kube-system', 'never-existed', 'absent')]
    assert api.get('v1', 'ConfigMap', 'coredns', 'kube-system') is None
    again = run(kubeconfig, state='absent', definitions=gone, wait=True)
    assert again['changed'] is False and {o['action'] for o in again['objects']} == {'absent'}


def test_delete_by_selector_removes_exactly_what_carries_the_labels(api, kubeconfig):
    ours = {'app.kubernetes.io/managed-by': 'kubeforge', 'app.kubernetes.io/part-of': 'dns'}
    run(kubeconfig, definitions=[{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'dns'}}])
    run(kubeconfig, labels=ours, definitions=[config_map(name='a'), config_map(name='b', namespace='dns'),
                                              coredns(), cluster_role()])
    run(kubeconfig, labels={'app.kubernetes.io/part-of': 'dns'}, definitions=[config_map(name='users-own')])
    run(kubeconfig, definitions=[config_map(name='unrelated')])
    kinds = [{'apiVersion': 'apps/v1', 'kind': 'Deployment'}, {'apiVersion': 'v1', 'kind': 'ConfigMap'},
             {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole'},
             {'apiVersion': 'example.com/v1', 'kind': 'NotInstalled'}]
    selector = 'app.kubernetes.io/managed-by=kubeforge,app.kubernetes.io/part-of=dns'
    result = run(kubeconfig, state='absent', selector=selector, kinds=kinds, wait=True)
    assert not result.get('failed'), result
    assert actions(result) == [('Deployment', 'kube-system', 'coredns', 'deleted'),
                               ('ConfigMap', 'dns', 'b', 'deleted'),
                               ('ConfigMap', 'kube-system', 'a', 'deleted'),
                               ('ClusterRole', None, 'system:coredns', 'deleted')]
    assert api.get('v1', 'ConfigMap', 'users-own', 'kube-system') is not None
    assert api.get('v1', 'ConfigMap', 'unrelated', 'kube-system') is not None
    lists = [r for r in api.requests if r[0] == 'GET' and r[2].get('labelSelector')]
    assert lists and lists[0][1] == '/apis/apps/v1/deployments', 'a namespaced kind is listed in all namespaces'
    again = run(kubeconfig, state='absent', selector=selector, kinds=kinds)
    assert again['changed'] is False and again['objects'] == []


def test_selector_lists_page_by_page(api, kubeconfig, monkeypatch):
    from ansible_collections.kubeforge.cluster.plugins.module_utils import manifest as logic
    monkeypatch.setattr(logic, 'LIST_PAGE', 2)
    run(kubeconfig, labels={'part-of': 'x'}, definitions=[config_map(name='c%d' % i) for i in range(5)])
    result = run(kubeconfig, state='absent', selector='part-of=x', kinds=[{'apiVersion': 'v1', 'kind': 'ConfigMap'}])
    assert [o['name'] for o in result['objects']] == ['c0', 'c1', 'c2', 'c3', 'c4']


def test_wait_until_ready(api, kubeconfig):
    progress = {'reads': 0}

    def slow_rollout(obj, server):
        progress['reads'] += 1
        available = 2 if progress['reads'] >= 3 else 1
        obj['status'] = {'observedGeneration': obj['metadata']['generation'], 'replicas': 2, 'updatedReplicas': 2,
                         'readyReplicas': available, 'availableReplicas': available}

    api.controllers['Deployment'] = slow_rollout
    namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'dns'}}
    result = run(kubeconfig, definitions=[namespace, coredns(), config_map()], wait=True, wait_timeout=30)
    assert not result.get('failed'), result
    assert progress['reads'] >= 3


def test_wait_timeout_names_what_it_waited_for(api, kubeconfig):
    def stuck(obj, server):
        obj['status'] = {'observedGeneration': obj['metadata']['generation'], 'replicas': 2, 'updatedReplicas': 2,
                         'readyReplicas': 1, 'availableReplicas': 1}

    api.controllers['Deployment'] = stuck
    started = time.monotonic()
    result = run(kubeconfig, definitions=[coredns(), config_map()], wait=True, wait_timeout=2)
    assert result['failed'] is True
    assert result['msg'] == 'Deployment kube-system/coredns: 1 of 2 replicas available after 2 s'
    assert time.monotonic() - started < 10
    assert [o['action'] for o in result['objects']] == ['created', 'created'], 'what was applied is still reported'


def test_wait_fails_at_once_for_a_failed_job(api, kubeconfig):
    def failed(obj, server):
        obj['status'] = {'failed': 6, 'conditions': [{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                                                      'message': 'Job has reached the specified backoff limit'}]}

    api.controllers['Job'] = failed
    job = {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': 'migrate', 'namespace': 'default'},
           'spec': {'template': {'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'm', 'image': 'm:1'}]}}}}
    result = run(kubeconfig, definitions=[job], wait=True, wait_timeout=60)
    assert result['msg'] == ('Job default/migrate: the Job failed (BackoffLimitExceeded: Job has reached the '
                             'specified backoff limit)')


def test_unknown_kind_names_api_version_and_kind(api, kubeconfig):
    typo = {'apiVersion': 'apps/v1', 'kind': 'Deploymnet', 'metadata': {'name': 'x', 'namespace': 'default'}}
    result = run(kubeconfig, definitions=[typo])
    assert result['failed'] is True
    assert result['msg'] == ('Deploymnet default/x: the API server does not know kind Deploymnet in apiVersion apps/v1; '
                             'did you mean Deployment?')
    missing_group = {'apiVersion': 'monitoring.example.com/v1', 'kind': 'ServiceMonitor', 'metadata': {'name': 'x'}}
    result = run(kubeconfig, definitions=[config_map(), missing_group])
    assert result['msg'] == ('ServiceMonitor x: the API server does not serve apiVersion monitoring.example.com/v1 '
                             '(kind ServiceMonitor)')
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'created')]


def test_api_error_names_the_object_and_the_message(api, kubeconfig):
    result = run(kubeconfig, definitions=[coredns(replicas=-1)])
    assert result['failed'] is True
    assert result['msg'] == ('Deployment kube-system/coredns: 422 Unprocessable Entity: Deployment.apps "coredns" is '
                             'invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0')
    assert api.get('apps/v1', 'Deployment', 'coredns', 'kube-system') is None


def test_strict_field_validation_catches_a_misspelt_field(api, kubeconfig):
    bad = config_map()
    bad['dta'] = bad.pop('data')
    result = run(kubeconfig, definitions=[bad])
    assert result['msg'] == 'ConfigMap kube-system/coredns: 400 Bad Request: .dta: field not declared in schema'
    assert run(kubeconfig, definitions=[bad], field_validation='Warn')['changed'] is True


def test_retries_a_refused_connection_until_the_server_is_up(pki, tmp_path):
    port = free_port()
    server = StandInApiServer(pki, port=port)
    config = write_kubeconfig(tmp_path / 'admin.conf', 'https://127.0.0.1:%d' % port, pki)
    timer = threading.Timer(1.5, server.start)
    timer.start()
    try:
        result = run(config, definitions=[config_map()], api_timeout=30)
    finally:
        timer.join()
        server.stop()
    assert not result.get('failed'), result
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'created')]


def test_retries_server_errors_and_gives_up_with_a_clear_message(api, kubeconfig):
    api.faults = [('PATCH', '/api/v1/namespaces/kube-system/configmaps', 503),
                  ('GET', '/api/v1', 429)]
    result = run(kubeconfig, definitions=[config_map()])
    assert not result.get('failed'), result
    assert api.faults == []
    api.faults = [('GET', '/api/v1/namespaces/kube-system/configmaps/other', 503)] * 100
    result = run(kubeconfig, definitions=[config_map(name='other')], api_timeout=2)
    assert result['failed'] is True
    assert result['msg'] == 'ConfigMap kube-system/other: 503 Service Unavailable: injected failure 503'


def test_a_lasting_500_is_retried_only_a_few_times(api, kubeconfig):
    path = '/api/v1/namespaces/kube-system/configmaps/coredns'
    api.faults = [('PATCH', path, 500)] * 10
    started = time.monotonic()
    result = run(kubeconfig, definitions=[config_map()], api_timeout=60)
    assert result['msg'] == 'ConfigMap kube-system/coredns: 500 Internal Server Error: injected failure 500'
    assert time.monotonic() - started < 10
    assert len([r for r in api.requests if r[0] == 'PATCH']) == 3


def test_a_refused_connection_fails_after_api_timeout(pki, tmp_path):
    config = write_kubeconfig(tmp_path / 'admin.conf', 'https://127.0.0.1:%d' % free_port(), pki)
    started = time.monotonic()
    result = run(config, definitions=[config_map()], api_timeout=2)
    assert result['failed'] is True
    assert time.monotonic() - started < 8
    assert result['msg'].startswith('ConfigMap kube-system/coredns: GET https://127.0.0.1:')
    assert 'connection refused; gave up after' in result['msg']


def test_server_certificate_from_another_ca_fails_without_retrying(api, pki, tmp_path):
    config = write_kubeconfig(tmp_path / 'other.conf', api.url, pki, ca=pki.other_ca)
    started = time.monotonic()
    result = run(config, definitions=[config_map()], api_timeout=30)
    assert result['failed'] is True and time.monotonic() - started < 5
    assert 'CERTIFICATE_VERIFY_FAILED' in result['msg'] or 'certificate verify failed' in result['msg']


def test_kubeconfig_with_file_paths(api, pki, tmp_path):
    config = write_kubeconfig(tmp_path / 'paths.conf', api.url, pki, embed=False)
    result = run(config, definitions=[config_map()])
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'created')]


def test_server_option_overrides_the_kubeconfig(api, pki, tmp_path):
    config = write_kubeconfig(tmp_path / 'lb.conf', 'https://127.0.0.1:%d' % free_port(), pki)
    result = run(config, definitions=[config_map()], server=api.url)
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'created')]


def crd():
    return {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': 'widgets.shop.example.com'},
        'spec': {'group': 'shop.example.com', 'scope': 'Namespaced',
                 'names': {'kind': 'Widget', 'plural': 'widgets', 'singular': 'widget', 'listKind': 'WidgetList'},
                 'versions': [{'name': 'v1', 'served': True, 'storage': True,
                               'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}}]},
    }


def widget(namespace=None, size=3):
    obj = {'apiVersion': 'shop.example.com/v1', 'kind': 'Widget', 'metadata': {'name': 'w1'}, 'spec': {'size': size}}
    if namespace:
        obj['metadata']['namespace'] = namespace
    return obj


def test_crd_then_its_custom_resource_in_one_task(api, kubeconfig):
    api.crd_delay = 1.0  # the kind is served only once the CRD is Established
    result = run(kubeconfig, definitions=[crd(), widget()])
    assert not result.get('failed'), result
    assert actions(result) == [('CustomResourceDefinition', None, 'widgets.shop.example.com', 'created'),
                               ('Widget', 'default', 'w1', 'created')]
    stored = [k for k in api.objects if k[1] == 'widgets']
    assert stored == [('shop.example.com/v1', 'widgets', 'default', 'w1')]
    again = run(kubeconfig, definitions=[crd(), widget()], wait=True)
    assert again['changed'] is False, again
    changed = run(kubeconfig, definitions=[crd(), widget(size=4)])
    assert [o['action'] for o in changed['objects']] == ['unchanged', 'configured']


def test_absent_for_a_kind_no_longer_served(api, kubeconfig):
    result = run(kubeconfig, state='absent', definitions=[widget(namespace='default')])
    assert actions(result) == [('Widget', 'default', 'w1', 'absent')]
    assert result['changed'] is False


def test_api_server_warnings_become_task_warnings(api, kubeconfig):
    api.warnings['/api/v1/namespaces/kube-system/configmaps'] = 'v1 ConfigMap is fine, this is only a test'
    result = run(kubeconfig, definitions=[config_map()])
    assert 'v1 ConfigMap is fine, this is only a test' in warning_texts(result)


def test_argument_errors(api, kubeconfig):
    result = run(kubeconfig, state='absent')
    assert result['failed'] is True and 'needs definitions, or selector and kinds' in result['msg']
    result = run(kubeconfig, selector='a=b', kinds=[{'apiVersion': 'v1', 'kind': 'ConfigMap'}])
    assert result['failed'] is True and 'need state=absent' in result['msg']
    result = run(kubeconfig, definitions=[{'kind': 'ConfigMap', 'metadata': {}}, 'text', None])
    assert result['msg'] == ('2 problem(s) in the definitions:\n'
                             '- definitions[0]: no apiVersion; no metadata.name (generateName is not supported: '
                             'an applied object needs a name)\n'
                             '- definitions[1]: must be a mapping (a Kubernetes object), got str')
    result = run(kubeconfig, definitions=[config_map()], kubeconfig='/nonexistent/admin.conf')
    assert result['msg'] == 'kubeconfig /nonexistent/admin.conf does not exist'


def test_check_mode_without_a_cluster_yet_plans_every_object_as_created(api, tmp_path):
    missing = str(tmp_path / 'admin.conf')
    result = run(missing, check_mode=True, definitions=[config_map(), cluster_role()], labels={'a': 'b'})
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert actions(result) == [('ConfigMap', 'kube-system', 'coredns', 'created'),
                               ('ClusterRole', 'default', 'system:coredns', 'created')]
    assert any('does not exist yet' in text for text in warning_texts(result))
    assert api.writes() == []
    # outside check mode a missing kubeconfig is still an error
    assert run(missing, definitions=[config_map()]).get('failed')
