# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The component_flags filter."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.filter.flags import FilterModule

component_flags = FilterModule().filters()['component_flags']


def test_returns_a_plain_sorted_list():
    result = component_flags({'secure-port': 6443, 'anonymous-auth': False, 'feature-gates': {'B': True, 'A': False},
                              'audit-log-path': None}, 'kube-apiserver')
    assert isinstance(result, list) and result.__class__ is list
    assert result == ['--anonymous-auth=false', '--feature-gates=A=false,B=true', '--secure-port=6443']


def test_lists_every_unknown_flag_in_one_error():
    with pytest.raises(AnsibleFilterError) as err:
        component_flags({'secure-prot': 1, 'bind-adress': '0.0.0.0'}, 'kube-apiserver')
    text = str(err.value)
    assert 'unknown flag --secure-prot; did you mean --secure-port?' in text
    assert 'unknown flag --bind-adress; did you mean --bind-address?' in text


def test_allow_unknown_warns(monkeypatch):
    seen = []
    from ansible_collections.kubeforge.cluster.plugins.filter import flags as flags_filter
    monkeypatch.setattr(flags_filter.display, 'warning', seen.append)
    assert component_flags({'config': '/c', 'new-flag': 1}, 'kubelet', allow_unknown='new-flag') == [
        '--config=/c', '--new-flag=1']
    assert seen == ['kubelet: --new-flag is not in the upstream flag list; passed because allow_unknown lists it']


def test_unknown_component():
    with pytest.raises(AnsibleFilterError, match='unknown component'):
        component_flags({}, 'kube-apiservr')


def test_etcd_version():
    assert component_flags({'log-format': 'json'}, 'etcd', version='3.6') == ['--log-format=json']
    with pytest.raises(AnsibleFilterError):
        component_flags({'log-format': 'json'}, 'etcd', version='3.5')
