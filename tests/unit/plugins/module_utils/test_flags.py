# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/flags.py: flags from dicts, checked against the upstream flag lists."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils.flags import (
    COMPONENTS,
    FlagError,
    known_flags,
    render_flags,
    render_value,
)

UPSTREAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'data', 'upstream')

# Flags as a kubeadm-built control plane and its nodes run them.
REAL_FLAGS = {
    'kube-apiserver': {
        'advertise-address': '192.0.2.10', 'allow-privileged': True,
        'authorization-mode': ['Node', 'RBAC'], 'client-ca-file': '/etc/kubernetes/pki/ca.crt',
        'enable-admission-plugins': ['NodeRestriction'], 'enable-bootstrap-token-auth': True,
        'etcd-cafile': '/etc/kubernetes/pki/etcd/ca.crt',
        'etcd-certfile': '/etc/kubernetes/pki/apiserver-etcd-client.crt',
        'etcd-keyfile': '/etc/kubernetes/pki/apiserver-etcd-client.key',
        'etcd-servers': ['https://192.0.2.11:2379', 'https://192.0.2.12:2379'],
        'kubelet-client-certificate': '/etc/kubernetes/pki/apiserver-kubelet-client.crt',
        'kubelet-client-key': '/etc/kubernetes/pki/apiserver-kubelet-client.key',
        'kubelet-preferred-address-types': ['InternalIP', 'ExternalIP', 'Hostname'],
        'proxy-client-cert-file': '/etc/kubernetes/pki/front-proxy-client.crt',
        'proxy-client-key-file': '/etc/kubernetes/pki/front-proxy-client.key',
        'requestheader-allowed-names': ['front-proxy-client'],
        'requestheader-client-ca-file': '/etc/kubernetes/pki/front-proxy-ca.crt',
        'requestheader-extra-headers-prefix': ['X-Remote-Extra-'],
        'requestheader-group-headers': ['X-Remote-Group'], 'requestheader-username-headers': ['X-Remote-User'],
        'secure-port': 6443, 'service-account-issuer': 'https://kubernetes.default.svc.cluster.local',
        'service-account-key-file': '/etc/kubernetes/pki/sa.pub',
        'service-account-signing-key-file': '/etc/kubernetes/pki/sa.key',
        'service-cluster-ip-range': '10.96.0.0/12', 'tls-cert-file': '/etc/kubernetes/pki/apiserver.crt',
        'tls-private-key-file': '/etc/kubernetes/pki/apiserver.key', 'anonymous-auth': False,
        'encryption-provider-config': '/etc/kubernetes/encryption-config.yaml',
        'audit-policy-file': '/etc/kubernetes/audit-policy.yaml', 'audit-log-path': '/var/log/kubernetes/audit.log',
        'audit-log-maxage': 30, 'profiling': False,
    },
    'kube-controller-manager': {
        'allocate-node-cidrs': True, 'authentication-kubeconfig': '/etc/kubernetes/controller-manager.conf',
        'authorization-kubeconfig': '/etc/kubernetes/controller-manager.conf', 'bind-address': '127.0.0.1',
        'client-ca-file': '/etc/kubernetes/pki/ca.crt', 'cluster-cidr': '10.244.0.0/16', 'cluster-name': 'kubernetes',
        'cluster-signing-cert-file': '/etc/kubernetes/pki/ca.crt', 'cluster-signing-key-file': '/etc/kubernetes/pki/ca.key',
        'controllers': ['*', 'bootstrapsigner', 'tokencleaner'], 'kubeconfig': '/etc/kubernetes/controller-manager.conf',
        'leader-elect': True, 'requestheader-client-ca-file': '/etc/kubernetes/pki/front-proxy-ca.crt',
        'root-ca-file': '/etc/kubernetes/pki/ca.crt', 'service-account-private-key-file': '/etc/kubernetes/pki/sa.key',
        'service-cluster-ip-range': '10.96.0.0/12', 'use-service-account-credentials': True,
        'node-cidr-mask-size': 24, 'profiling': False,
    },
    'kube-scheduler': {
        'authentication-kubeconfig': '/etc/kubernetes/scheduler.conf',
        'authorization-kubeconfig': '/etc/kubernetes/scheduler.conf', 'bind-address': '127.0.0.1',
        'kubeconfig': '/etc/kubernetes/scheduler.conf', 'leader-elect': True, 'config': '/etc/kubernetes/scheduler.yaml',
        'profiling': False,
    },
    'kubelet': {
        'config': '/var/lib/kubelet/config.yaml', 'kubeconfig': '/etc/kubernetes/kubelet.conf',
        'bootstrap-kubeconfig': '/etc/kubernetes/bootstrap-kubelet.conf', 'node-ip': '192.0.2.21',
        'hostname-override': 'node1', 'v': 2,
    },
    'kube-proxy': {'config': '/var/lib/kube-proxy/config.conf', 'hostname-override': 'node1', 'v': 2},
    'etcd': {
        'name': 'etcd1', 'data-dir': '/var/lib/etcd', 'cert-file': '/etc/kubernetes/pki/etcd/server.crt',
        'key-file': '/etc/kubernetes/pki/etcd/server.key', 'client-cert-auth': True,
        'trusted-ca-file': '/etc/kubernetes/pki/etcd/ca.crt', 'peer-cert-file': '/etc/kubernetes/pki/etcd/peer.crt',
        'peer-key-file': '/etc/kubernetes/pki/etcd/peer.key', 'peer-client-cert-auth': True,
        'peer-trusted-ca-file': '/etc/kubernetes/pki/etcd/ca.crt', 'snapshot-count': 10000,
        'listen-client-urls': ['https://127.0.0.1:2379', 'https://192.0.2.11:2379'],
        'listen-metrics-urls': 'http://127.0.0.1:2381', 'initial-cluster-state': 'new',
    },
}


@pytest.mark.parametrize('component', COMPONENTS)
def test_real_flags_pass(component):
    flags = REAL_FLAGS[component]
    rendered = render_flags(component, flags)
    assert rendered == sorted(rendered)
    assert len(rendered) == len(flags) and rendered.warnings == []
    assert all(item.startswith('--') and '=' in item for item in rendered)


@pytest.mark.parametrize('component, filename', [
    ('kube-apiserver', 'flags-kube-apiserver.json'), ('kube-controller-manager', 'flags-kube-controller-manager.json'),
    ('kube-scheduler', 'flags-kube-scheduler.json'), ('kubelet', 'flags-kubelet.json'), ('kube-proxy', 'flags-kube-proxy.json'),
])
def test_every_upstream_flag_is_known(component, filename):
    with open(os.path.join(UPSTREAM, filename), encoding='utf-8') as handle:
        upstream = json.load(handle)
    assert set(upstream['flags']) == known_flags(component)


@pytest.mark.parametrize('component, typo, suggestion', [
    ('kube-apiserver', 'secure-prot', '--secure-port'),
    ('kube-controller-manager', 'cluster-cdir', '--cluster-cidr'),
    ('kube-scheduler', 'leader-elec', '--leader-elect'),
    ('kubelet', 'kubeconfg', '--kubeconfig'),
    ('kube-proxy', 'hostname-overide', '--hostname-override'),
    ('etcd', 'peer-cert-fil', '--peer-cert-file'),
])
def test_typo_fails_with_a_suggestion(component, typo, suggestion):
    with pytest.raises(FlagError) as err:
        render_flags(component, dict(REAL_FLAGS[component], **{typo: 'x'}))
    assert len(err.value.errors) == 1
    message = err.value.errors[0]
    assert message.startswith('%s: unknown flag --%s; did you mean %s' % (component, typo, suggestion)), message


def test_all_unknown_flags_at_once():
    with pytest.raises(FlagError) as err:
        render_flags('kube-apiserver', {'secure-prot': 1, 'etcd-server': 'x', 'no-such-thing-at-all': 1, 'secure-port': 6443})
    assert [e.split(';')[0] for e in err.value.errors] == [
        'kube-apiserver: unknown flag --secure-prot', 'kube-apiserver: unknown flag --etcd-server',
        'kube-apiserver: unknown flag --no-such-thing-at-all']
    assert err.value.errors[2] == 'kube-apiserver: unknown flag --no-such-thing-at-all'


def test_allow_unknown_passes_with_a_warning():
    rendered = render_flags('kubelet', {'config': '/c', 'brand-new-flag': True}, allow_unknown=['brand-new-flag'])
    assert rendered == ['--brand-new-flag=true', '--config=/c']
    assert rendered.warnings == ['kubelet: --brand-new-flag is not in the upstream flag list; passed because '
                                 'allow_unknown lists it']


def test_value_rendering():
    assert render_value(True) == 'true' and render_value(False) == 'false'
    assert render_value(['a', 'b', True]) == 'a,b,true'
    assert render_value({'B': True, 'A': False, 'c': 3}) == 'A=false,B=true,c=3'
    assert render_flags('kube-apiserver', {'--secure-port': 6443, 'audit-log-path': None}) == ['--secure-port=6443']
    with pytest.raises(FlagError, match='cannot render'):
        render_flags('kube-apiserver', {'secure-port': [{'a': 1}]})


def test_etcd_versions():
    assert 'log-format' in known_flags('etcd', '3.6.4') and 'log-format' not in known_flags('etcd', '3.5.16')
    assert known_flags('etcd') == known_flags('etcd', '3.5') | known_flags('etcd', '3.6')
    with pytest.raises(FlagError):
        render_flags('etcd', {'log-format': 'json'}, version='3.5')
    with pytest.raises(FlagError, match='unknown component'):
        render_flags('kube-apiservr', {})
