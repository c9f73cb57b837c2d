# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/upgrade_plan.py: the plan of an upgrade or downgrade, and every refusal, from what the cluster runs."""

from __future__ import annotations

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import upgrade_plan

CONTROL_PLANES = ['cp1', 'cp2']
MEMBERS = ['cp1', 'cp2', 'w1', 'w2']


def node(kubelet, ready=True, reason='', runtime='containerd://2.3.4'):
    return {'kubelet': 'v' + kubelet, 'ready': ready, 'reason': reason, 'runtime': runtime}


def cluster(version, **kubelets):
    """Every API server and kubelet at ``version``; ``kubelets`` sets a node's own kubelet version."""
    apiservers = {host: 'v' + version for host in CONTROL_PLANES}
    nodes = {host: node(kubelets.get(host, version)) for host in MEMBERS}
    return apiservers, nodes


def plan(target, apiservers, nodes, control_planes=None, members=None, **kwargs):
    return upgrade_plan.plan(target, apiservers, nodes, control_planes or CONTROL_PLANES, members or MEMBERS, **kwargs)


# --- versions ------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('v1.36.4', (1, 36, 4)),
    ('1.36.4', (1, 36, 4)),
    ('1.36.4-rc.0', (1, 36, 4)),
    ('v1.36.4-rc.0+abc123', (1, 36, 4)),
    (' v1.9.10 ', (1, 9, 10)),
])
def test_parse_version(value, expected):
    assert upgrade_plan.parse_version(value) == expected


@pytest.mark.parametrize('value', ['1.36', 'v1.36.x', '1.36.4.1', '', None, 'latest', 'v1..4'])
def test_parse_version_refuses_what_is_not_a_version(value):
    with pytest.raises(upgrade_plan.PlanError) as info:
        upgrade_plan.parse_version(value)
    assert str(info.value) == '%r is not a version (MAJOR.MINOR.PATCH)' % value


def test_a_bad_target_is_an_error_not_a_plan():
    apiservers, nodes = cluster('1.35.8')
    with pytest.raises(upgrade_plan.PlanError, match="'1.36' is not a version"):
        plan('1.36', apiservers, nodes)


# --- plans -----------------------------------------------------------------------------------------

def test_upgrade_by_one_minor_moves_control_planes_first_then_workers():
    apiservers, nodes = cluster('1.35.8')
    result = plan('v1.36.4', apiservers, nodes)
    assert result['refusals'] == []
    assert (result['direction'], result['from'], result['target']) == ('upgrade', '1.35.8', '1.36.4')
    assert result['control_planes'] == ['cp1', 'cp2'] and result['workers'] == ['w1', 'w2']
    assert result['versions']['cp1'] == {'kube-apiserver': '1.35.8', 'kubelet': '1.35.8',
                                         'runtime': 'containerd://2.3.4'}
    assert result['versions']['w1'] == {'kubelet': '1.35.8', 'runtime': 'containerd://2.3.4'}
    assert upgrade_plan.summary(result) == \
        'upgrade from 1.35.8 to 1.36.4: control planes cp1, cp2, then workers w1, w2'


def test_lists_keep_the_inventory_order():
    apiservers, nodes = cluster('1.35.8')
    result = plan('1.36.4', apiservers, nodes, control_planes=['cp2', 'cp1'], members=['w2', 'cp1', 'w1', 'cp2'])
    assert result['control_planes'] == ['cp2', 'cp1'] and result['workers'] == ['w2', 'w1']


def test_patch_upgrade():
    apiservers, nodes = cluster('1.36.3')
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == []
    assert (result['direction'], result['from']) == ('upgrade', '1.36.3')
    assert result['control_planes'] == ['cp1', 'cp2'] and result['workers'] == ['w1', 'w2']


def test_nothing_to_do_when_every_node_runs_the_target():
    apiservers, nodes = cluster('1.36.4')
    result = plan('v1.36.4', apiservers, nodes, runtime_target='2.3.4')
    assert result['refusals'] == []
    assert (result['direction'], result['from']) == ('none', '1.36.4')
    assert result['control_planes'] == [] and result['workers'] == []
    assert upgrade_plan.summary(result) == 'every node already runs Kubernetes 1.36.4; nothing to do'


def test_only_the_container_runtime_moves():
    apiservers, nodes = cluster('1.36.4')
    nodes['w1']['runtime'] = 'containerd://2.3.3'
    nodes['w2']['runtime'] = 'cri-o://1.36.0'  # not containerd: not ours to move
    result = plan('1.36.4', apiservers, nodes, runtime_target='2.3.4')
    assert result['refusals'] == []
    assert result['direction'] == 'runtime'
    assert result['control_planes'] == [] and result['workers'] == ['w1']
    assert upgrade_plan.summary(result) == 'runtime from 1.36.4 to 1.36.4: control planes none, then workers w1'
    # without a runtime target, the runtime is not compared at all
    assert plan('1.36.4', apiservers, nodes)['direction'] == 'none'


def test_a_half_done_upgrade_continues_with_what_is_left():
    apiservers, nodes = cluster('1.35.8')
    apiservers['cp1'] = 'v1.36.4'
    nodes['cp1'] = node('1.36.4')
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == []
    assert (result['direction'], result['from']) == ('upgrade', '1.36.4')
    assert result['control_planes'] == ['cp2'] and result['workers'] == ['w1', 'w2']


def test_a_control_plane_whose_kubelet_is_behind_its_api_server_is_still_planned():
    apiservers, nodes = cluster('1.35.8')
    apiservers['cp1'] = 'v1.36.4'
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == []
    assert result['control_planes'] == ['cp1', 'cp2']


def test_downgrade_is_refused_unless_asked_for():
    apiservers, nodes = cluster('1.36.4')
    result = plan('1.35.9', apiservers, nodes)
    assert result['direction'] == 'downgrade'
    assert len(result['refusals']) == 1
    refusal = result['refusals'][0]
    assert refusal.startswith('Kubernetes 1.35.9 is older than what cp1, cp2, w1, w2 run (1.36.4)')
    assert 'kubeforge_allow_downgrade: true' in refusal
    assert upgrade_plan.summary(result) == 'refused: ' + refusal


def test_downgrade_of_one_host_names_it():
    apiservers, nodes = cluster('1.35.9')
    apiservers['cp1'] = 'v1.35.10'
    result = plan('1.35.9', apiservers, nodes)
    assert result['refusals'][0].startswith('Kubernetes 1.35.9 is older than what cp1 runs (1.35.10)')


def test_downgrade_by_one_minor_when_asked_moves_workers_first():
    apiservers, nodes = cluster('1.36.4')
    result = plan('1.35.9', apiservers, nodes, allow_downgrade=True)
    assert result['refusals'] == []
    assert (result['direction'], result['from'], result['target']) == ('downgrade', '1.36.4', '1.35.9')
    assert result['control_planes'] == ['cp1', 'cp2'] and result['workers'] == ['w1', 'w2']
    assert upgrade_plan.summary(result) == \
        'downgrade from 1.36.4 to 1.35.9: workers w1, w2, then control planes cp1, cp2'


def test_downgrade_by_two_minors_is_refused_even_when_asked():
    apiservers, nodes = cluster('1.36.4')
    result = plan('1.34.7', apiservers, nodes, allow_downgrade=True)
    assert result['direction'] == 'downgrade'
    assert result['refusals'] == ['Kubernetes 1.34.7 is more than one minor below 1.36.4: a downgrade goes back '
                                  'one minor at most']


def test_a_half_done_downgrade_continues():
    apiservers, nodes = cluster('1.36.4', w1='1.35.9')
    result = plan('1.35.9', apiservers, nodes, allow_downgrade=True)
    assert result['refusals'] == []
    assert result['direction'] == 'downgrade'
    assert result['workers'] == ['w2'] and result['control_planes'] == ['cp1', 'cp2']
    assert upgrade_plan.summary(result) == \
        'downgrade from 1.36.4 to 1.35.9: workers w2, then control planes cp1, cp2'
    # later: every worker and cp1 are back, cp2 is left
    apiservers, nodes = cluster('1.35.9', cp2='1.36.4')
    apiservers['cp2'] = 'v1.36.4'
    result = plan('1.35.9', apiservers, nodes, allow_downgrade=True)
    assert result['refusals'] == []
    assert result['workers'] == [] and result['control_planes'] == ['cp2']
    assert upgrade_plan.summary(result) == 'downgrade from 1.36.4 to 1.35.9: workers none, then control planes cp2'


def test_versions_above_and_below_the_target_at_once_are_refused_naming_each_host_once():
    apiservers, nodes = cluster('1.36.4', cp1='1.37.1', w1='1.35.8')
    apiservers['cp1'] = 'v1.37.1'
    result = plan('1.36.4', apiservers, nodes, allow_downgrade=True)
    assert result['refusals'] == ['the cluster runs versions both above and below 1.36.4 (cp1 above, w1 below): '
                                  'bring it to one version first']


# --- refusals --------------------------------------------------------------------------------------

def test_skipping_a_minor_is_refused_naming_the_oldest_api_server():
    apiservers, nodes = cluster('1.34.9', cp1='1.35.8')
    apiservers['cp1'] = 'v1.35.8'
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == ['Kubernetes 1.36.4 would skip a minor: the oldest kube-apiserver runs 1.34.9; '
                                  'upgrade one minor at a time (to 1.35 first)']
    assert result['from'] == '1.35.8'


def test_a_node_that_is_not_ready_is_refused_by_name():
    apiservers, nodes = cluster('1.35.8')
    nodes['w2'] = node('1.35.8', ready=False, reason='container runtime network not ready')
    nodes['w1'] = node('1.35.8', ready=False)
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == [
        'node w1 is not Ready (no reason given): every node must be Ready before an upgrade',
        'node w2 is not Ready (container runtime network not ready): every node must be Ready before an upgrade']


def test_an_inventory_host_that_is_not_a_node_is_refused():
    apiservers, nodes = cluster('1.35.8')
    result = plan('1.36.4', apiservers, nodes, members=MEMBERS + ['w3'])
    assert result['refusals'] == ['w3 is in the inventory but not a node of the cluster: join it with scale.yml '
                                  'first, or take it out of the inventory']
    assert 'w3' not in result['workers'] and result['versions']['w3'] == {}


def test_an_api_server_that_does_not_answer_is_refused():
    apiservers, nodes = cluster('1.35.8')
    apiservers['cp2'] = {'error': 'connection refused'}
    result = plan('1.36.4', apiservers, nodes)
    assert result['refusals'] == ['kube-apiserver on cp2 does not answer (connection refused): the control planes '
                                  'must all be healthy before an upgrade']
    del apiservers['cp2']
    assert plan('1.36.4', apiservers, nodes)['refusals'] == [
        'kube-apiserver on cp2 does not answer (no answer): the control planes must all be healthy before an upgrade']


def test_a_kubelet_more_than_three_minors_behind_is_refused():
    apiservers, nodes = cluster('1.35.8', w1='1.32.5', w2='1.33.1')
    result = plan('1.36.4', apiservers, nodes)
    # w2 (three minors behind 1.36) is within the skew policy; w1 (four) is not
    assert result['refusals'] == ['kubelet on w1 runs 1.32.5, more than 3 minors behind 1.36.4: move it up first']


def test_every_refusal_is_reported_at_once():
    apiservers, nodes = cluster('1.34.9')
    apiservers['cp2'] = {'error': '503 Service Unavailable'}
    nodes['w1'] = node('1.34.9', ready=False, reason='kubelet stopped posting node status')
    result = plan('1.36.4', apiservers, nodes, members=MEMBERS + ['w3'])
    assert len(result['refusals']) == 4, result['refusals']
    assert result['refusals'][0].startswith('kube-apiserver on cp2 does not answer (503 Service Unavailable)')
    assert result['refusals'][1].startswith('node w1 is not Ready (kubelet stopped posting node status)')
    assert result['refusals'][2].startswith('w3 is in the inventory but not a node of the cluster')
    assert result['refusals'][3].startswith('Kubernetes 1.36.4 would skip a minor: the oldest kube-apiserver runs '
                                            '1.34.9')
    assert upgrade_plan.summary(result) == 'refused: ' + '; '.join(result['refusals'])
