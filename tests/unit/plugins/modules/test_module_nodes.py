# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The nodes module through main(), against the stand-in API server (tests/support/kube_api_stand_in.py).

The stand-in is a real HTTPS server in this process that speaks the part of the Kubernetes API the
module uses; it is not Kubernetes. The molecule scenario `cluster` runs the module against real
kube-apiservers.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from module_runner import run_module  # noqa: E402
from support.kube_api_stand_in import write_kubeconfig  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_nodes  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import nodes  # noqa: E402

CP_TAINT = 'node-role.kubernetes.io/control-plane:NoSchedule'
CP_LABEL = {'node-role.kubernetes.io/control-plane': ''}


@pytest.fixture
def kubeconfig(api, pki, tmp_path):
    return str(write_kubeconfig(tmp_path / 'admin.conf', api.url, pki))


def kubelet_registers(api, name, ready=True, taints=None):
    """What a kubelet does when it starts: its Node object, with its own labels and status."""
    node = {'apiVersion': 'v1', 'kind': 'Node',
            'metadata': {'name': name, 'labels': {'kubernetes.io/hostname': name}},
            'spec': {'taints': taints or []},
            'status': {'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False',
                                       'message': 'kubelet is posting ready status' if ready
                                       else 'container runtime network not ready'}]}}
    api._store('v1', 'nodes', None, node, {'kubelet': {k: v for k, v in node.items() if k != 'status'}})


def wanted():
    return [{'name': 'cp1', 'labels': CP_LABEL, 'taints': [CP_TAINT]},
            {'name': 'w1', 'labels': {'disk': 'ssd'}, 'taints': []}]


def args(kubeconfig, **extra):
    base = {'kubeconfig': kubeconfig, 'nodes': wanted(), 'order': ['cp1', 'cp2', 'w1'],
            'pod_cidr': '10.233.64.0/18', 'node_cidr_mask': 24}
    base.update(extra)
    return base


def test_nodes_get_labels_taints_and_pod_ranges_in_inventory_order(api, kubeconfig):
    kubelet_registers(api, 'cp1')
    result = run_module(nodes, args(kubeconfig))
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert {n['name']: n['action'] for n in result['nodes']} == {'cp1': 'configured', 'w1': 'created'}
    # cp2 is in the order but not named in this run: the ranges go to the nodes named, in order
    assert result['pod_cidrs'] == {'cp1': '10.233.64.0/24', 'w1': '10.233.65.0/24'}
    cp1 = api.get('v1', 'Node', 'cp1')
    assert cp1['metadata']['labels'] == {'kubernetes.io/hostname': 'cp1', **CP_LABEL}
    assert cp1['spec']['taints'] == [{'key': 'node-role.kubernetes.io/control-plane', 'effect': 'NoSchedule'}]
    assert cp1['spec']['podCIDR'] == '10.233.64.0/24' and cp1['spec']['podCIDRs'] == ['10.233.64.0/24']
    assert api.get('v1', 'Node', 'w1')['metadata']['labels'] == {'disk': 'ssd'}


def test_a_second_run_changes_nothing_and_writes_nothing(api, kubeconfig):
    kubelet_registers(api, 'cp1')
    run_module(nodes, args(kubeconfig))
    writes = len(api.writes())
    result = run_module(nodes, args(kubeconfig))
    assert result['changed'] is False
    assert [n['action'] for n in result['nodes']] == ['unchanged', 'unchanged']
    assert len(api.writes()) == writes


def test_check_mode_reports_the_change_and_writes_nothing(api, kubeconfig):
    kubelet_registers(api, 'cp1')
    result = run_module(nodes, args(kubeconfig), check_mode=True)
    assert result['changed'] is True
    configured = result['nodes'][0]
    assert configured['name'] == 'cp1' and configured['before']['podCIDR'] == ''
    assert configured['after']['podCIDR'] == '10.233.64.0/24'
    assert api.writes() == []
    assert 'podCIDR' not in api.get('v1', 'Node', 'cp1')['spec']


def test_a_pod_range_a_node_holds_is_kept(api, kubeconfig):
    kubelet_registers(api, 'w1')
    api.objects[('v1', 'nodes', None, 'w1')]['obj']['spec']['podCIDR'] = '10.233.70.0/24'
    result = run_module(nodes, args(kubeconfig))
    assert result['pod_cidrs']['w1'] == '10.233.70.0/24'
    assert result['pod_cidrs']['cp1'] == '10.233.64.0/24'


def test_without_ranges_to_hand_out_a_node_keeps_the_one_it_was_given(api, kubeconfig):
    # kubeforge_network_plugin: none after bridge: no pod_cidr, and the range stays where it is
    kubelet_registers(api, 'cp1')
    run_module(nodes, args(kubeconfig))
    writes = len(api.writes())
    result = run_module(nodes, args(kubeconfig, pod_cidr=None))
    assert not result.get('failed'), result
    assert result['changed'] is False and len(api.writes()) == writes
    assert api.get('v1', 'Node', 'cp1')['spec']['podCIDR'] == '10.233.64.0/24'


def test_system_taints_stay_and_a_dropped_taint_goes(api, kubeconfig):
    kubelet_registers(api, 'w1', taints=[{'key': 'node.kubernetes.io/not-ready', 'effect': 'NoSchedule'}])
    first = [{'name': 'w1', 'labels': {}, 'taints': ['dedicated=db:NoExecute']}]
    run_module(nodes, args(kubeconfig, nodes=first))
    keys = {t['key'] for t in api.get('v1', 'Node', 'w1')['spec']['taints']}
    assert keys == {'dedicated', 'node.kubernetes.io/not-ready'}
    result = run_module(nodes, args(kubeconfig, nodes=[{'name': 'w1', 'labels': {}, 'taints': []}]))
    assert result['changed'] is True
    assert [t['key'] for t in api.get('v1', 'Node', 'w1')['spec']['taints']] == ['node.kubernetes.io/not-ready']


def test_a_bad_taint_names_the_node_and_changes_nothing(api, kubeconfig):
    bad = [{'name': 'w1', 'labels': {}, 'taints': ['dedicated=db:Sometimes']}]
    result = run_module(nodes, args(kubeconfig, nodes=bad))
    assert result['failed'] is True
    assert 'w1' in result['msg'] and 'NoSchedule, PreferNoSchedule, NoExecute' in result['msg']
    assert api.writes() == []


def test_a_pod_range_too_small_for_the_nodes_fails_before_any_write(api, kubeconfig):
    three = wanted() + [{'name': 'w2', 'labels': {}, 'taints': []}]
    result = run_module(nodes, args(kubeconfig, nodes=three, pod_cidr='10.233.64.0/25', node_cidr_mask=26))
    assert result['failed'] is True
    assert 'the pod range 10.233.64.0/25 holds 2 node ranges of /26, and 3 nodes need one' in result['msg']
    assert api.writes() == []


def test_waiting_names_the_nodes_that_are_not_ready_and_why(api, kubeconfig):
    kubelet_registers(api, 'cp1')
    kubelet_registers(api, 'w1', ready=False)
    result = run_module(nodes, {'kubeconfig': kubeconfig, 'wait_ready': ['cp1', 'w1', 'w2'], 'wait_timeout': 0})
    assert result['failed'] is True
    assert 'w1: container runtime network not ready' in result['msg']
    assert 'w2: not registered' in result['msg']
    assert 'cp1' not in result['msg']
    assert run_module(nodes, {'kubeconfig': kubeconfig, 'wait_ready': ['cp1'], 'wait_timeout': 0})['changed'] is False


@pytest.mark.parametrize('value, parsed', [
    ('a=b:NoSchedule', {'key': 'a', 'value': 'b', 'effect': 'NoSchedule'}),
    ('a:NoExecute', {'key': 'a', 'effect': 'NoExecute'}),
    ({'key': 'a', 'effect': 'PreferNoSchedule', 'value': ''}, {'key': 'a', 'effect': 'PreferNoSchedule'}),
])
def test_taint_forms(value, parsed):
    assert kube_nodes.parse_taint(value, 'n') == parsed


@pytest.mark.parametrize('value', ['a=b', ':NoSchedule', {'key': 'a'}, 7])
def test_taints_that_are_refused(value):
    with pytest.raises(kube_nodes.NodesError, match='n: taint'):
        kube_nodes.parse_taint(value, 'n')


def test_check_mode_without_a_cluster_yet_plans_the_first_registration(api, tmp_path):
    result = run_module(nodes, args(str(tmp_path / 'admin.conf')), check_mode=True)
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert [(n['name'], n['action']) for n in result['nodes']] == [('cp1', 'created'), ('w1', 'created')]
    assert result['pod_cidrs'] == {'cp1': '10.233.64.0/24', 'w1': '10.233.65.0/24'}
    assert result['nodes'][0]['after']['taints'] == [['node-role.kubernetes.io/control-plane', '', 'NoSchedule']]
    assert api.writes() == []
