# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""etcd filters (plugins/filter/pki_etcd.py): direct calls with plain dicts, and the etcd role's own
variables (roles/etcd/vars/main.yml) in a real playbook on localhost.

The functions behind them are tested in tests/unit/plugins/module_utils/ (test_pki_catalog.py,
test_etcd_plan.py); here the wrappers, and that the role's variables hand them what the role's tasks
register, through Ansible's own hostvars.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.filter.pki import FilterModule as PkiFilters
from ansible_collections.kubeforge.cluster.plugins.filter.pki_etcd import FilterModule

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FILTERS = FilterModule().filters()
# the etcd role writes its certificates with the pki role's filter
ISSUED = PkiFilters().filters()['pki_issued']
ETCD = ['etcd1', 'etcd2']
CPS = ['etcd1', 'cp2']
INFO = {'etcd1': {'member_name': 'etcd1', 'address': '192.0.2.11'},
        'etcd2': {'member_name': 'second', 'address': '192.0.2.12'}}
PEM = '-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n'


def signed(**issued):
    return {'changed': True, 'unchanged': [],
            'certificates': {rid: {'certificate': cert, 'reason': 'missing'} for rid, cert in issued.items()}}


def test_filters_are_registered():
    assert set(FILTERS) == {'etcd_inventory', 'etcd_restart_order', 'pki_etcd_certificates',
                            'pki_etcd_outside_files', 'pki_etcd_requests'}


def test_inventory():
    hostvars = {'etcd1': {'ip': '192.0.2.11'}, 'etcd2': {'etcd_address': '192.0.2.22', 'etcd_member_name': 'second'}}
    info = FILTERS['etcd_inventory'](hostvars, ('etcd1', 'etcd2'), 2380, 2379, None)
    assert info['etcd2'] == {'member_name': 'second', 'address': '192.0.2.22', 'peer_url': 'https://192.0.2.22:2380',
                             'client_url': 'https://192.0.2.22:2379'}
    assert info['etcd1']['client_url'] == 'https://192.0.2.11:2379'
    # what the certificates of a member name: the same address
    server = FILTERS['pki_etcd_certificates']('etcd2', ETCD, CPS, info)[0]
    assert server['dns_names'] == ['etcd2', 'second', 'localhost'] and server['ip_addresses'][0] == '192.0.2.22'


def test_issued():
    mine = FILTERS['pki_etcd_certificates']('etcd1', ETCD, CPS, INFO)
    result = ISSUED(mine, 'etcd1', signed(**{'etcd1/peer': PEM % 'P', 'etcd2/peer': PEM % 'Q'}))
    assert result == [{'name': 'peer', 'cert_path': '/etc/kubernetes/pki/etcd/peer.crt', 'certificate': PEM % 'P',
                       'reason': 'missing'}]
    assert ISSUED(mine, 'etcd1', None) == []


def test_issued_of_something_else_than_catalogue_entries_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='^pki_issued: etcd1: '):
        ISSUED([{'path': 'x'}], 'etcd1', signed(**{'etcd1/x': PEM % 'X'}))


def test_outside_files():
    ca_read = {'results': [{'item': 'ca.crt', 'content': base64.b64encode((PEM % 'CA').encode()).decode()}]}
    result = FILTERS['pki_etcd_outside_files'](('cp2',), ca_read, signed(**{'cp2/apiserver-etcd-client': PEM % 'C'}))
    assert result == [{'host': 'cp2', 'dest': '/etc/kubernetes/pki/etcd/ca.crt', 'content': PEM % 'CA'},
                      {'host': 'cp2', 'dest': '/etc/kubernetes/pki/apiserver-etcd-client.crt', 'content': PEM % 'C'}]
    with pytest.raises(AnsibleFilterError, match='^pki_etcd_outside_files: ca.crt as read'):
        FILTERS['pki_etcd_outside_files'](['cp2'], {'results': [{'item': 'ca.crt', 'content': '#'}]}, {})


REGISTERED_VARS = {'files': 'files', 'certificates': 'written', 'ca': 'copied', 'binary': 'binary',
                   'started': 'started'}
RUNNING = {'service': {'active': True, 'stale': []}}


def test_restart_order_reads_each_member_registrations_by_name():
    hostvars = {'etcd1': {'written': {'results': [{'item': {'name': 'server'}, 'changed': True}]}},
                'etcd2': {'binary': {'changed': True}, 'started': {'changed': True}},
                'etcd3': {'copied': {'results': [{'item': {'item': 'ca.crt'}, 'changed': True}]}}}
    probes = {'etcd1': RUNNING, 'etcd2': RUNNING, 'etcd3': RUNNING}
    order = ['etcd3', 'etcd2', 'etcd1']
    assert FILTERS['etcd_restart_order'](hostvars, order, ['etcd1', 'etcd2', 'etcd3'], probes,
                                         REGISTERED_VARS) == ['etcd3', 'etcd1']
    # a member of the plan outside the run is not looked up
    assert FILTERS['etcd_restart_order'](hostvars, order + ['etcd4'], ('etcd1',), probes, REGISTERED_VARS) == ['etcd1']


def test_restart_order_adds_the_host_a_delegated_rotation_changed():
    hostvars = {'etcd1': {}, 'etcd2': {}, 'etcd3': {'copied': {'results': [{'item': {'item': 'ca.crt'}, 'changed': True}]}}}
    probes = {'etcd1': RUNNING, 'etcd2': RUNNING, 'etcd3': RUNNING}
    order = ['etcd3', 'etcd2', 'etcd1']
    assert FILTERS['etcd_restart_order'](hostvars, order, list(order), probes, REGISTERED_VARS, [],
                                         ['etcd1']) == ['etcd3', 'etcd1']
    # a host outside the run is not restarted, whatever changed there
    assert FILTERS['etcd_restart_order'](hostvars, order, ['etcd3'], probes, REGISTERED_VARS, [], ['etcd1']) == ['etcd3']


def test_restart_order_of_a_host_missing_from_hostvars_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='^etcd_restart_order: '):
        FILTERS['etcd_restart_order']({}, ['etcd1'], ['etcd1'], {'etcd1': RUNNING}, REGISTERED_VARS)


# --------------------------------------------------------------------------- the role's variables

def ansible_playbook(playbook, inventory, **extra_vars):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_LOCALHOST_WARNING='false')
    args = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), str(playbook), '-i', str(inventory),
            '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', json.dumps(extra_vars)]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


ROLE_PLAY = r"""
- hosts: etcd
  gather_facts: false
  vars_files:
    - "{{ root }}/roles/etcd/defaults/main.yml"
    - "{{ root }}/roles/etcd/vars/main.yml"
  tasks:
    - name: What the role's tasks registered, in the shapes they register it
      ansible.builtin.set_fact:
        __etcd_signed: "{{ registered_signed }}"
        __etcd_ca_files: "{{ registered_ca_files }}"
        __etcd_plan_run: "{{ plan_run }}"
        __etcd_files: "{{ registered_files[inventory_hostname] }}"
    - name: The certificates written (the role's own loop over its variable)
      ansible.builtin.set_fact:
        written: "{{ item }}"
      loop: "{{ __etcd_my_issued }}"
      loop_control:
        label: "{{ item.name }}: {{ item.reason }}"
      changed_when: true
      register: __etcd_certs_written
    - name: The role's variables, as each host sees them
      ansible.builtin.copy:
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        content: >-
          {{ {'issued': __etcd_my_issued, 'outside': __etcd_cp_outside_files, 'restart': __etcd_restart_order,
              'info': __etcd_info, 'sans': __etcd_my_certificates[0].ip_addresses} | to_json }}
      delegate_to: localhost
"""


def test_the_role_variables_in_a_real_playbook(tmp_path):
    """etcd1 is a member and a control plane, etcd2 a member, cp2 a control plane outside the etcd group
    (the role plays the etcd group; cp2 receives its files by delegation)."""
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('[etcd]\netcd1\netcd2 etcd_member_name=second ip=192.0.2.12\n'
                         '[kube_control_plane]\netcd1\ncp2\n[all:vars]\nansible_connection=local\n')
    playbook = tmp_path / 'play.yml'
    playbook.write_text(ROLE_PLAY)
    out = tmp_path / 'out'
    out.mkdir()
    registered_signed = signed(**{'etcd1/server': PEM % 'S1', 'etcd1/apiserver-etcd-client': PEM % 'C1',
                                  'etcd2/peer': PEM % 'P2', 'etcd2/server': None,
                                  'cp2/apiserver-etcd-client': PEM % 'C2'})
    registered_ca_files = {'changed': False, 'results': [
        {'item': 'ca.crt', 'content': base64.b64encode((PEM % 'CA').encode()).decode(), 'encoding': 'base64'},
        {'item': 'ca.key', 'content': base64.b64encode(b'key').decode(), 'encoding': 'base64'}]}
    # etcd1 leads; nothing was started; etcd1's settings file is unchanged, etcd2's bootstrap file was written
    plan_run = {'plan': {'order': ['etcd2', 'etcd1']}, 'probes': {'etcd1': RUNNING, 'etcd2': RUNNING}}
    registered_files = {
        'etcd1': {'changed': False, 'results': [{'item': {'dest': '/etc/etcd/etcd.env'}, 'changed': False}]},
        'etcd2': {'changed': True, 'results': [{'item': {'dest': '/etc/etcd/etcd-bootstrap.env'}, 'changed': True}]}}
    proc = ansible_playbook(playbook, inventory, root=ROOT, out=str(out), registered_signed=registered_signed,
                            registered_ca_files=registered_ca_files, plan_run=plan_run,
                            registered_files=registered_files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {host: json.loads((out / (host + '.json')).read_text()) for host in ('etcd1', 'etcd2')}
    assert [(e['name'], e['cert_path'], e['certificate']) for e in seen['etcd1']['issued']] == [
        ('server', '/etc/kubernetes/pki/etcd/server.crt', PEM % 'S1'),
        ('apiserver-etcd-client', '/etc/kubernetes/pki/apiserver-etcd-client.crt', PEM % 'C1')]
    assert [(e['name'], e['reason']) for e in seen['etcd2']['issued']] == [('peer', 'missing')]
    # the same list on every member: the task that writes it runs once
    expected = [{'host': 'cp2', 'dest': '/etc/kubernetes/pki/etcd/ca.crt', 'content': PEM % 'CA'},
                {'host': 'cp2', 'dest': '/etc/kubernetes/pki/apiserver-etcd-client.crt', 'content': PEM % 'C2'}]
    assert all(seen[host]['outside'] == expected for host in seen)
    # etcd1 wrote its server certificate, etcd2 its peer certificate (its bootstrap settings alone would
    # not count): both restart, in the plan's order, the leader last
    assert seen['etcd1']['restart'] == ['etcd2', 'etcd1'] == seen['etcd2']['restart']
    # the inventory as the plan and the certificates see it, from Ansible's hostvars
    assert seen['etcd1']['info'] == seen['etcd2']['info'] == {
        'etcd1': {'member_name': 'etcd1', 'address': 'etcd1', 'peer_url': 'https://etcd1:2380',
                  'client_url': 'https://etcd1:2379'},
        'etcd2': {'member_name': 'second', 'address': '192.0.2.12', 'peer_url': 'https://192.0.2.12:2380',
                  'client_url': 'https://192.0.2.12:2379'}}
    assert seen['etcd2']['sans'] == ['192.0.2.12', '127.0.0.1', '::1']
