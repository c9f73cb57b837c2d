# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/kube_api.py: kubeconfig reading, the TLS context, retries, discovery."""

from __future__ import annotations

import base64
import os
import stat
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from support.kube_api_stand_in import free_port, write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api  # noqa: E402


def b64(data):
    return base64.b64encode(data).decode('ascii')


def kubeconfig_doc(cluster, user, context='admin'):
    return {'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
            'clusters': [{'name': 'k', 'cluster': cluster}], 'users': [{'name': 'u', 'user': user}],
            'contexts': [{'name': 'admin', 'context': {'cluster': 'k', 'user': 'u'}},
                         {'name': 'other', 'context': {'cluster': 'k', 'user': 'u'}}]}


def write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_embedded_credentials(pki, tmp_path):
    path = write_kubeconfig(tmp_path / 'admin.conf', 'https://192.0.2.10:6443', pki)
    settings = kube_api.load_kubeconfig(path)
    assert settings.server == 'https://192.0.2.10:6443'
    assert settings.ca_pem == pki.ca and settings.cert_pem == pki.client_cert and settings.key_pem == pki.client_key
    assert kube_api.load_kubeconfig(path, server='https://127.0.0.1:6443').server == 'https://127.0.0.1:6443'


def test_relative_paths_are_relative_to_the_kubeconfig(tmp_path):
    path = write(tmp_path / 'conf', kubeconfig_doc({'server': 'https://h:6443', 'certificate-authority': 'pki/ca.crt'},
                                                   {'client-certificate': 'pki/c.crt', 'client-key': '/abs/c.key'}))
    settings = kube_api.load_kubeconfig(path)
    assert settings.ca_file == str(tmp_path / 'pki' / 'ca.crt')
    assert settings.cert_file == str(tmp_path / 'pki' / 'c.crt') and settings.key_file == '/abs/c.key'


def test_token_and_context_choice(tmp_path):
    (tmp_path / 'token').write_text('abc.def\n')
    path = write(tmp_path / 'conf', kubeconfig_doc({'server': 'https://h:6443'}, {'tokenFile': 'token'}, context=None))
    with pytest.raises(kube_api.KubeConfigError, match='has no current-context; choose one with the context option'):
        kube_api.load_kubeconfig(path)
    assert kube_api.load_kubeconfig(path, context='other').token == 'abc.def'


@pytest.mark.parametrize('cluster, user, message', [
    ({'server': 'https://h'}, {'client-certificate-data': b64(b'x')}, "user 'u' has a client certificate or a client key but not both"),
    ({'server': 'https://h'}, {}, "user 'u' has neither a client certificate nor a token"),
    ({}, {'token': 't'}, "cluster 'k' has no server"),
    ({'server': 'https://h', 'insecure-skip-tls-verify': True}, {'token': 't'}, 'insecure-skip-tls-verify'),
    ({'server': 'https://h', 'certificate-authority-data': 'not base64!'}, {'token': 't'},
     'certificate-authority-data is not valid base64'),
])
def test_unusable_kubeconfigs(tmp_path, cluster, user, message):
    path = write(tmp_path / 'conf', kubeconfig_doc(cluster, user))
    with pytest.raises(kube_api.KubeConfigError) as info:
        kube_api.load_kubeconfig(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(kube_api.KubeConfigError, match='does not exist'):
        kube_api.load_kubeconfig(str(tmp_path / 'nope'))
    (tmp_path / 'bad').write_text('a: [')
    with pytest.raises(kube_api.KubeConfigError, match='cannot be read'):
        kube_api.load_kubeconfig(str(tmp_path / 'bad'))
    path = write(tmp_path / 'conf', kubeconfig_doc({'server': 'https://h'}, {'token': 't'}, context='missing'))
    with pytest.raises(kube_api.KubeConfigError, match="no context named 'missing'"):
        kube_api.load_kubeconfig(path)


def test_embedded_key_lives_in_a_private_file_only_while_the_context_loads_it(pki, tmp_path, monkeypatch):
    made = []
    real_mkdtemp = tempfile.mkdtemp
    seen = {}

    def recording_mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    real_load = kube_api._load_chain

    def inspecting_load(context, cert_file, key_file):
        seen['dir_mode'] = stat.S_IMODE(os.stat(os.path.dirname(key_file)).st_mode)
        seen['key_mode'] = stat.S_IMODE(os.stat(key_file).st_mode)
        real_load(context, cert_file, key_file)

    monkeypatch.setattr(kube_api.tempfile, 'mkdtemp', recording_mkdtemp)
    monkeypatch.setattr(kube_api, '_load_chain', inspecting_load)
    settings = kube_api.load_kubeconfig(write_kubeconfig(tmp_path / 'admin.conf', 'https://127.0.0.1:1', pki))
    kube_api.ssl_context(settings)
    assert seen == {'dir_mode': 0o700, 'key_mode': 0o600}
    assert made and not os.path.exists(made[0])


def test_mismatched_key_is_an_error_without_key_material(pki, tmp_path):
    settings = kube_api.load_kubeconfig(write_kubeconfig(tmp_path / 'admin.conf', 'https://127.0.0.1:1', pki))
    settings.key_pem = pki.server_key
    with pytest.raises(kube_api.KubeConfigError) as info:
        kube_api.ssl_context(settings)
    assert 'client certificate and key of the kubeconfig cannot be used' in str(info.value)
    assert 'PRIVATE KEY' not in str(info.value)


def client_for(api, pki, tmp_path, **kwargs):
    settings = kube_api.load_kubeconfig(write_kubeconfig(tmp_path / 'admin.conf', api.url, pki))
    for key, value in kwargs.pop('settings', {}).items():
        setattr(settings, key, value)
    return kube_api.Client(settings, **kwargs)


def test_requests_reuse_one_connection(api, pki, tmp_path):
    client = client_for(api, pki, tmp_path)
    first = client.request('GET', '/api/v1')
    sock = client._conn.sock
    client.request('GET', '/apis/apps/v1')
    assert first['groupVersion'] == 'v1' and client._conn.sock is sock
    client.close()


def test_tls_server_name(api, pki, tmp_path):
    client = client_for(api, pki, tmp_path, settings={'tls_server_name': 'localhost'})
    assert client.request('GET', '/api/v1')['kind'] == 'APIResourceList'
    wrong = client_for(api, pki, tmp_path, settings={'tls_server_name': 'elsewhere.example'})
    with pytest.raises(kube_api.ConnectionFailed, match='certificate'):
        wrong.request('GET', '/api/v1')


def test_backoff_is_bounded_by_the_timeout(pki, tmp_path):
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    settings = kube_api.load_kubeconfig(write_kubeconfig(tmp_path / 'c', 'https://127.0.0.1:%d' % free_port(), pki))
    client = kube_api.Client(settings, timeout=20, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(kube_api.ConnectionFailed) as info:
        client.request('GET', '/api/v1')
    assert 'connection refused; gave up after' in str(info.value)
    assert sum(sleeps) <= 20 and max(sleeps) <= 5 * 1.2
    assert sleeps[0] < 0.5 and len(sleeps) >= 5


def test_retry_after_is_honoured(api, pki, tmp_path):
    sleeps = []
    client = client_for(api, pki, tmp_path, sleep=sleeps.append)
    api.faults = [('GET', '/api/v1', 429)]
    assert client.request('GET', '/api/v1')['groupVersion'] == 'v1'
    assert len(sleeps) == 1


def test_errors_that_are_not_retried(api, pki, tmp_path):
    sleeps = []
    client = client_for(api, pki, tmp_path, sleep=sleeps.append)
    with pytest.raises(kube_api.ApiError) as info:
        client.request('GET', '/api/v1/namespaces/default/configmaps/missing')
    assert info.value.status == 404 and str(info.value) == '404 Not Found: configmaps "missing" not found'
    api.faults = [('GET', '/api/v1', 403)]
    with pytest.raises(kube_api.ApiError, match='403 Forbidden: injected failure 403'):
        client.request('GET', '/api/v1')
    assert sleeps == []


def test_discovery_caches_per_group_version_and_refreshes_on_a_miss(api, pki, tmp_path):
    client = client_for(api, pki, tmp_path)
    discovery = kube_api.Discovery(client)
    deployment = discovery.find('apps/v1', 'Deployment')
    assert (deployment.plural, deployment.namespaced) == ('deployments', True)
    assert deployment.path('coredns', 'kube-system') == '/apis/apps/v1/namespaces/kube-system/deployments/coredns'
    assert discovery.find('v1', 'Namespace').path('x', 'ignored') == '/api/v1/namespaces/x'
    assert discovery.find('v1', 'ConfigMap').path() == '/api/v1/configmaps'
    discovery.find('apps/v1', 'DaemonSet')
    assert [r[1] for r in api.requests].count('/apis/apps/v1') == 1
    assert discovery.find('apps/v1', 'Nothing') is None
    assert [r[1] for r in api.requests].count('/apis/apps/v1') == 2
    assert discovery.find('example.com/v1', 'Thing') is None
    assert discovery.served_kinds('example.com/v1') is None
    assert 'StatefulSet' in discovery.served_kinds('apps/v1')
    assert 'Deployment/status' not in discovery.served_kinds('apps/v1')
