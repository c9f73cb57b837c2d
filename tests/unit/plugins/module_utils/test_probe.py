# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/probe.py: one rule for what a probe of another host registered, and one wording for a
host that could not be asked, in the cluster CAs' plan and the etcd plan alike."""

from __future__ import annotations

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_plan, pki_catalog, probe


@pytest.mark.parametrize('result, expected', [
    (None, (None, False)),
    ({'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}, (None, False)),
    ({'unreachable': True, 'msg': 'Failed to connect to the host via ssh'}, (None, True)),
    ({'changed': False, 'failed_when_result': False, 'msg': 'MODULE FAILURE'}, (None, True)),
    ({'failed': True, 'files': []}, (None, True)),
])
def test_read_answer_without_an_answer(result, expected):
    assert probe.read_answer(result, 'files') == expected


def test_read_answer_keeps_the_answer():
    answer = {'files': [], 'matched': 0, 'changed': False}
    assert probe.read_answer(answer, 'files') == (answer, False)


def test_unreachable_error_names_the_host_and_its_group():
    assert probe.unreachable_error('e2', 'etcd group') == 'e2 (etcd group) is unreachable'
    assert probe.unreachable_error('cp2', 'kube_control_plane', 'the cluster CA') == (
        'cp2 (kube_control_plane) is unreachable, so whether it holds the cluster CA is unknown; bring it back or '
        'take it out of the inventory')


def test_the_cluster_ca_plan_and_the_etcd_plan_name_an_unreachable_host_alike():
    cluster = pki_catalog.ca_plan(['cp1', 'cp2'], ['cp1'], {'cp1': dict.fromkeys(pki_catalog.CA_FILE_NAMES)},
                                  ['cp2'])
    assert cluster['errors'] == [probe.unreachable_error('cp2', 'kube_control_plane', 'the cluster CA')]
    info = {h: {'member_name': h, 'peer_url': 'https://%s:2380' % h, 'client_url': 'https://%s:2379' % h}
            for h in ('e1', 'e2')}
    answer = {'initialized': False, 'data_dir_empty': True, 'ca': {'cert': None, 'key': None},
              'service': {'active': False}, 'binary': {}, 'local': {}, 'cluster': None}
    hosts = etcd_plan.read_probes(info, {'e1': answer, 'e2': {'unreachable': True, 'msg': 'timed out'}})
    plan = etcd_plan.plan({'mode': 'converge', 'target_version': '3.5.30', 'etcd_hosts': ['e1', 'e2'],
                           'play_hosts': ['e1'], 'hosts': hosts})
    assert probe.unreachable_error('e2', 'etcd group') in plan['errors']
    # neither plan takes a host it could not ask for the CA host, nor copies to it
    assert cluster['host'] == 'cp1' and cluster['copy_to'] == []
    assert plan['ca'] == {'host': 'e1', 'copy_to': [], 'exists': False}


def test_by_host_puts_the_run_and_the_delegated_loop_together():
    from ansible_collections.kubeforge.cluster.plugins.filter.probe import FilterModule
    hostvars = {'cp1': {'found': {'files': ['ca.crt']}}, 'cp2': {}}
    delegated = {'results': [{'item': 'cp3', 'unreachable': True},
                             {'item': 'cp4', 'skipped': True, 'skipped_reason': 'deprecated, never read'}, 'noise']}
    expected = {'cp1': {'files': ['ca.crt']}, 'cp2': None, 'cp3': {'item': 'cp3', 'unreachable': True},
                'cp4': {'item': 'cp4', 'skipped': True}}
    assert probe.by_host(hostvars, ['cp1', 'cp2'], 'found', delegated) == expected
    probe_results = FilterModule().filters()['probe_results']
    assert probe_results(hostvars, ('cp1', 'cp2'), 'found', delegated) == expected
    # a run without the delegated task (nothing outside the run) has only the run's hosts
    assert probe_results(hostvars, ['cp1'], 'found') == {'cp1': {'files': ['ca.crt']}}
    assert [probe.read_answer(r, 'files') for r in expected.values()] == [
        (expected['cp1'], False), (None, False), (None, True), (None, False)]
