# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""PKI filters (plugins/filter/pki.py): direct calls with plain dicts, and a real playbook run on localhost.

The catalogue itself is tested in tests/unit/plugins/module_utils/test_pki_catalog.py; here the wrappers:
where the host address comes from, which errors become AnsibleFilterError, which registered find
results make the CA plan, and which registered private_key results (with ``keys``) make requests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.filter.pki import FilterModule
from ansible_collections.kubeforge.cluster.plugins.module_utils import pki_catalog

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FILTERS = FilterModule().filters()

CPS = ['cp1', 'cp2']
NODES = ['w1']
SETTINGS = {'cluster_name': 'kubeforge', 'service_cidr': '10.233.0.0/18', 'cluster_domain': 'cluster.local',
            'api_endpoint': '', 'apiserver_port': 6443, 'apiserver_extra_sans': [],
            'admin_group': 'kubeadm:cluster-admins'}
CA_FILES = ['ca.crt', 'ca.key', 'front-proxy-ca.crt', 'front-proxy-ca.key', 'sa.pub', 'sa.key']
HOSTVARS = {'cp1': {'ip': '192.0.2.11', 'ansible_host': '198.51.100.11'}, 'cp2': {'ansible_host': '198.51.100.12'},
            'w1': {}}


def host_certificates(host, hostvars=None, **changes):
    return FILTERS['pki_host_certificates'](host, HOSTVARS if hostvars is None else hostvars, CPS, NODES,
                                            dict(SETTINGS, **changes))


def named(specs):
    return {s['name']: s for s in specs}


def test_filters_are_registered():
    assert set(FILTERS) == {'pki_ca_plan', 'pki_first_certificate', 'pki_host_certificates', 'pki_issued', 'pki_requests',
                            'pki_rotation_files'}


# --------------------------------------------------------------------------- pki_host_certificates

def test_address_from_ip_before_ansible_host():
    specs = named(host_certificates('cp1'))
    assert '192.0.2.11' in specs['apiserver']['ip_addresses']
    assert '198.51.100.11' not in specs['apiserver']['ip_addresses']
    assert specs['admin']['kubeconfig']['server'] == 'https://192.0.2.11:6443'
    assert specs['kubelet']['ip_addresses'] == ['192.0.2.11']


def test_address_from_ansible_host():
    specs = named(host_certificates('cp2'))
    assert '198.51.100.12' in specs['apiserver']['ip_addresses']
    assert specs['controller-manager']['kubeconfig']['server'] == 'https://198.51.100.12:6443'


def test_address_falls_back_to_the_name():
    specs = named(host_certificates('w1'))
    assert specs['kubelet']['dns_names'] == ['w1'] and specs['kubelet']['ip_addresses'] == []
    specs = named(host_certificates('cp1', hostvars={'cp1': {}}))
    assert specs['admin']['kubeconfig']['server'] == 'https://cp1:6443'
    assert specs['apiserver']['dns_names'].count('cp1') == 1


def test_same_as_the_catalogue():
    for host in ('cp1', 'cp2', 'w1'):
        address = pki_catalog.host_address(HOSTVARS[host], host)
        assert host_certificates(host) == pki_catalog.host_certificates(host, address, CPS, NODES, SETTINGS)


def test_groups_and_settings_of_any_sequence_and_mapping_type():
    assert FILTERS['pki_host_certificates']('cp1', HOSTVARS, tuple(CPS), tuple(NODES), list(SETTINGS.items())) \
        == host_certificates('cp1')


@pytest.mark.parametrize('cidr', ['10.233.0.1/18', 'not-a-range', '10.233.0.0/32'])
def test_invalid_service_range_names_the_host(cidr):
    with pytest.raises(AnsibleFilterError) as err:
        host_certificates('cp2', service_cidr=cidr)
    assert 'pki_host_certificates: cp2: ' in str(err.value)
    assert cidr in str(err.value)


def test_host_missing_from_hostvars_names_the_host():
    with pytest.raises(AnsibleFilterError) as err:
        host_certificates('cp9')
    assert 'pki_host_certificates: cp9: ' in str(err.value)


def test_missing_setting_is_a_filter_error():
    settings = dict(SETTINGS)
    del settings['cluster_domain']
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS['pki_host_certificates']('cp1', HOSTVARS, CPS, NODES, settings)
    assert 'pki_host_certificates: cp1: ' in str(err.value) and 'cluster_domain' in str(err.value)


# --------------------------------------------------------------------------- pki_ca_plan

def find_result(checksums, **extra):
    """What ``ansible.builtin.find`` with get_checksum registers; files without a checksum are absent."""
    files = [{'path': '/etc/kubernetes/pki/' + name, 'checksum': checksums[name], 'isreg': True}
             for name in CA_FILES if checksums.get(name)]
    return dict({'files': files, 'matched': len(files), 'examined': len(files), 'changed': False,
                 'failed': False, 'msg': 'All paths examined', 'skipped_paths': {}}, **extra)


SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}


def test_ca_plan():
    full = {name: name * 3 for name in CA_FILES}
    registered = {'cp1': find_result({}), 'w1': SKIPPED, 'w2': {}, 'w3': None,
                  'cp2': find_result(full, item='cp2', ansible_loop_var='item')}
    result = FILTERS['pki_ca_plan'](registered, CPS, ('cp1', 'cp2', 'w1'))
    assert result['host'] == 'cp2' and result['copy_to'] == ['cp1'] and result['errors'] == []
    assert all(result['exists'][name] for name in CA_FILES)
    # in a rotation run every other control plane of the run receives the CA host's files
    rotating = FILTERS['pki_ca_plan'](registered, CPS, ('cp1', 'cp2', 'w1'), True)
    assert rotating['copy_to'] == ['cp1'] and rotating['files'] == list(CA_FILES)


def test_ca_plan_takes_any_mapping():
    registered = [('cp1', find_result({'ca.crt': 'abc'})), ('cp2', find_result({'ca.crt': 'abd'}))]
    result = FILTERS['pki_ca_plan'](registered, tuple(CPS), ['cp1'])
    assert result['host'] == 'cp1' and len(result['errors']) == 1 and 'ca.crt differs' in result['errors'][0]


def test_ca_plan_names_a_control_plane_that_cannot_be_asked():
    registered = {'cp1': find_result({'ca.crt': 'abc'}), 'cp2': {'unreachable': True, 'msg': 'ssh: timeout'}}
    result = FILTERS['pki_ca_plan'](registered, CPS, ['cp1', 'w1'])
    assert result['host'] == 'cp1' and len(result['errors']) == 1
    assert result['errors'][0].startswith('cp2 (kube_control_plane) is unreachable')


def test_ca_plan_without_control_plane():
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS['pki_ca_plan']({'w1': {}}, [], ['w1'])
    assert str(err.value).startswith('pki_ca_plan: ') and 'kube_control_plane' in str(err.value)


# --------------------------------------------------------------------------- pki_requests

def key_results(host, leave_out=(), reverse=False, extra=(), **entry_changes):
    """What one private_key task with ``keys`` registers on ``host`` (its ``private_keys`` in the given order)."""
    entries = []
    for spec in host_certificates(host):
        if spec['name'] in leave_out:
            continue
        entries.append(dict({'path': spec['key_path'], 'public_key': 'PUB %s/%s' % (host, spec['name']),
                             'key_type': 'ecdsa-p256', 'reason': '', 'changed': False,
                             'certificate': 'CERT %s/%s' % (host, spec['name']) if spec['name'] == 'admin' else None,
                             'certificate_matches_key': spec['name'] == 'admin'}, **entry_changes))
    if reverse:
        entries.reverse()
    entries.extend(extra)
    return {'changed': any(e.get('changed') for e in entries), 'failed': False, 'private_keys': entries}


def requests_for(hostvars, hosts=('cp1', 'cp2', 'w1'), validity='365', renew=30):
    return FILTERS['pki_requests'](hostvars, list(hosts), 'keys', CPS, NODES, SETTINGS, validity, renew)


def test_requests_match_entries_to_certificates_by_key_path():
    hostvars = {'cp1': dict(HOSTVARS['cp1'], keys=key_results('cp1', leave_out=['scheduler'], reverse=True)),
                'cp2': dict(HOSTVARS['cp2']),
                'w1': dict(HOSTVARS['w1'], keys=key_results('w1', leave_out=['kube-proxy']))}
    out = requests_for(hostvars)
    assert [r['id'] for r in out['front-proxy']] == ['cp1/front-proxy-client']
    # in catalogue order, whatever the order of the entries
    assert [r['id'] for r in out['kubernetes']] == [
        'cp1/apiserver', 'cp1/apiserver-kubelet-client', 'cp1/admin', 'cp1/super-admin', 'cp1/controller-manager',
        'cp1/kubelet-client', 'cp1/kubelet', 'cp1/kube-proxy', 'w1/kubelet-client', 'w1/kubelet']
    for request in out['kubernetes'] + out['front-proxy']:
        assert request['public_key'] == 'PUB ' + request['id']
        assert request['current_certificate'] == ('CERT ' + request['id'] if request['id'] == 'cp1/admin' else None)
        assert request['validity_days'] == 365 and request['renew_before_days'] == 30
    apiserver = out['kubernetes'][0]
    assert '192.0.2.11' in apiserver['ip_addresses'] and 'kubernetes' in apiserver['dns_names']
    admin = out['kubernetes'][2]
    assert 'dns_names' not in admin and admin['organizations'] == ['kubeadm:cluster-admins']


@pytest.mark.parametrize('registered', [
    dict(key_results('cp1'), failed=True, msg='Permission denied'),
    {'failed': True, 'msg': 'keys: each path may appear once; repeated: /etc/kubernetes/pki/apiserver.key'},
    dict(SKIPPED),
    dict(key_results('cp1'), skipped=True),
    {},
    None,
    {'changed': False, 'private_keys': None},
    {'changed': False, 'private_keys': []},
])
def test_failed_skipped_or_empty_registrations_contribute_nothing(registered):
    hostvars = {'cp1': dict(HOSTVARS['cp1'], keys=registered), 'w1': dict(HOSTVARS['w1'], keys=key_results('w1'))}
    out = requests_for(hostvars, hosts=['cp1', 'w1'])
    assert out == requests_for({'w1': {'keys': key_results('w1')}}, ['w1'])
    assert [r['id'] for r in out['kubernetes']] == ['w1/kubelet-client', 'w1/kubelet', 'w1/kube-proxy']


def test_requests_ignore_entries_without_a_certificate_of_theirs():
    stray = [{'path': '/etc/kubernetes/pki/apiserver.key', 'public_key': 'PUB stray'},  # a control plane's key
             {'path': '/var/lib/kubelet/pki/other.key', 'public_key': 'PUB other'},
             {'public_key': 'PUB no path'}]
    out = requests_for({'w1': {'keys': key_results('w1', extra=stray)}}, ['w1'])
    assert [r['id'] for r in out['kubernetes']] == ['w1/kubelet-client', 'w1/kubelet', 'w1/kube-proxy']
    assert [r['public_key'] for r in out['kubernetes']] == ['PUB w1/kubelet-client', 'PUB w1/kubelet',
                                                            'PUB w1/kube-proxy']


def test_check_mode_keys_without_a_public_key_are_requested():
    """--check on a fresh node: the key does not exist yet; certificate_batch plans the certificate anyway."""
    out = requests_for({'w1': {'keys': key_results('w1', public_key=None, changed=True)}}, ['w1'])
    assert len(out['kubernetes']) == 3 and all(r['public_key'] is None for r in out['kubernetes'])


def test_requests_name_the_host_on_a_bad_setting():
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS['pki_requests'](HOSTVARS, ['cp1'], 'keys', CPS, NODES, dict(SETTINGS, service_cidr='x'), 365, 30)
    assert 'pki_host_certificates: cp1: ' in str(err.value)


# --------------------------------------------------------------------------- a real playbook

def ansible_playbook(playbook, inventory, **extra_vars):
    """Run ``playbook`` with this interpreter's ansible-playbook, locally; return the process."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_LOCALHOST_WARNING='false')
    args = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), str(playbook), '-i', str(inventory),
            '-e', 'ansible_python_interpreter=%s' % sys.executable]
    for name, value in extra_vars.items():
        args += ['-e', '%s=%s' % (name, value)]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_filters_in_a_real_playbook(tmp_path):
    """Through Ansible's own hostvars, registered find and private_key results, and templating of the settings.

    localhost is a control plane and a node; w1 and w2 are nodes (local connections too) whose private_key task
    fails (ignored) and is skipped. The keys are really generated, under ``keys_root``/HOST, and the paths in the
    registration are mapped back to the catalogue's, which is all the set_fact changes.
    """
    pki = tmp_path / 'pki'
    pki.mkdir()
    (pki / 'ca.crt').write_text('not really a certificate\n')
    (pki / 'apiserver.crt').write_text('not a CA file\n')
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('[kube_control_plane]\nlocalhost ip=192.0.2.11\n[kube_node]\nlocalhost\nw1\nw2\n'
                         '[all:vars]\nansible_connection=local\n')
    playbook = tmp_path / 'play.yml'
    playbook.write_text(r"""
- hosts: all
  gather_facts: false
  vars:
    settings:
      cluster_name: kubeforge
      service_cidr: "{{ '10.233.0.0/18' }}"
      cluster_domain: cluster.local
      api_endpoint: ""
      apiserver_port: "{{ 6443 }}"
      apiserver_extra_sans: "{{ extra_sans }}"
      admin_group: kubeadm:cluster-admins
    cps: "{{ groups['kube_control_plane'] }}"
    mine: >-
      {{ inventory_hostname | kubeforge.cluster.pki_host_certificates(hostvars, cps, groups['kube_node'],
         settings) }}
    root: "{{ keys_root }}/{{ inventory_hostname }}"
  tasks:
    - ansible.builtin.find:
        paths: "{{ pki }}"
        patterns: [ca.crt, ca.key, front-proxy-ca.crt, front-proxy-ca.key, sa.pub, sa.key]
        get_checksum: true
      register: found
      when: inventory_hostname in cps
    - ansible.builtin.find:
        paths: "{{ pki }}"
      delegate_to: "{{ item }}"
      loop: []
      run_once: true
      register: found_others
    - kubeforge.cluster.private_key:
        keys: "{{ mine | map(attribute='key') | to_json | replace('\"/', '\"' ~ root ~ '/') | from_json }}"
      when: inventory_hostname != 'w2'
      failed_when: inventory_hostname == 'w1'
      ignore_errors: true
      register: made
    - ansible.builtin.set_fact:
        key_results: "{{ made | to_json | replace('\"' ~ root ~ '/', '\"/') | from_json }}"
    - ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ values | to_json }}"
      vars:
        found_all: >-
          {{ dict(cps | intersect(ansible_play_hosts) | zip(cps | intersect(ansible_play_hosts)
                                                               | map('extract', hostvars, 'found')))
             | combine(dict(found_others.results | default([]) | map(attribute='item')
                            | zip(found_others.results | default([])))) }}
        values:
          mine: "{{ mine }}"
          made: "{{ made }}"
          plan: "{{ found_all | kubeforge.cluster.pki_ca_plan(cps, ansible_play_hosts) }}"
          requests: "{{ hostvars | kubeforge.cluster.pki_requests(ansible_play_hosts, 'key_results', cps,
                        groups['kube_node'], settings, '365', 30) }}"
      run_once: true
""")
    out = tmp_path / 'out.json'
    keys_root = tmp_path / 'hosts'
    proc = ansible_playbook(playbook, inventory, out=out, pki=pki, keys_root=keys_root,
                            extra_sans='api.example.com,203.0.113.7')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    values = json.loads(out.read_text())
    mine = named(values['mine'])
    assert list(mine) == ['apiserver', 'apiserver-kubelet-client', 'front-proxy-client', 'admin', 'super-admin',
                          'controller-manager', 'scheduler', 'kubelet-client', 'kubelet', 'kube-proxy']
    apiserver = mine['apiserver']
    assert '192.0.2.11' in apiserver['ip_addresses'] and '203.0.113.7' in apiserver['ip_addresses']
    assert 'api.example.com' in apiserver['dns_names']
    assert mine['admin']['kubeconfig']['server'] == 'https://192.0.2.11:6443'
    # the real module ran once for the whole set, keys 0600, in the catalogue's order
    made = values['made']
    assert made['changed'] is True
    assert [e['path'] for e in made['private_keys']] == [keys_root.as_posix() + '/localhost' + s['key_path']
                                                         for s in mine.values()]
    for entry in made['private_keys']:
        assert os.stat(entry['path']).st_mode & 0o777 == 0o600
        assert entry['certificate'] is None and entry['certificate_matches_key'] is False
    plan = values['plan']
    assert plan['host'] == 'localhost' and plan['copy_to'] == [] and plan['errors'] == []
    assert plan['exists']['ca.crt'] is True and plan['exists']['ca.key'] is False
    requests = values['requests']
    assert [r['id'] for r in requests['front-proxy']] == ['localhost/front-proxy-client']
    ids = [r['id'] for r in requests['kubernetes']]
    # w1's task failed and w2's was skipped: none of theirs
    names = ('apiserver', 'apiserver-kubelet-client', 'admin', 'super-admin', 'controller-manager', 'scheduler',
             'kubelet-client', 'kubelet', 'kube-proxy')
    assert ids == ['localhost/%s' % n for n in names]
    public_keys = {e['path'].rsplit('/', 1)[-1][:-4]: e['public_key'] for e in made['private_keys']}
    for request in requests['kubernetes'] + requests['front-proxy']:
        assert request['public_key'].startswith('-----BEGIN PUBLIC KEY-----')
        assert request['public_key'] == public_keys[request['id'].split('/', 1)[1]]
        assert request['validity_days'] == 365


def _role_tasks(*names):
    with open(os.path.join(ROOT, 'roles', 'pki', 'tasks', 'main.yml'), encoding='utf-8') as handle:
        tasks = {task.get('name'): task for task in yaml.safe_load(handle)}
    return [tasks[name] for name in names]


@pytest.mark.skipif(shutil.which('ssh') is None, reason='needs the ssh client, to be refused by 127.0.0.1 port 1')
def test_unreachable_control_plane_outside_the_run_reaches_the_plan(tmp_path):
    """``--limit`` leaves a control plane out of the run and it is down: the role's own find tasks (verbatim from
    roles/pki/tasks/main.yml) and its vars must bring pki_ca_plan to name it, not end the play without a word.

    The delegated find runs once (run_once) with ignore_unreachable; in a run_once task Ansible treats any failed
    or unreachable result as fatal for every host unless the task also has ignore_errors.
    """
    pki = tmp_path / 'pki'
    pki.mkdir()
    (pki / 'ca.crt').write_text('not really a certificate\n')
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('[kube_control_plane]\nlocalhost ansible_connection=local\n'
                         'cp9 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh '
                         'ansible_ssh_common_args="-o ConnectTimeout=5 -o ConnectionAttempts=1"\n')
    finds = _role_tasks('Read which CA files the control planes in this run hold',
                        'Read which CA files the control planes outside this run hold')
    report = {'ansible.builtin.copy': {'dest': '{{ out }}', 'content': '{{ __pki_ca | to_json }}'}, 'run_once': True}
    play = [{'hosts': 'localhost', 'gather_facts': False, 'any_errors_fatal': True,
             'vars_files': [os.path.join(ROOT, 'roles', 'pki', 'vars', 'main.yml')], 'tasks': finds + [report]}]
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump(play))
    out = tmp_path / 'out.json'
    proc = ansible_playbook(playbook, inventory, out=out, __pki_dir=pki)
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    plan = json.loads(out.read_text())
    assert plan['host'] == 'localhost' and plan['exists']['ca.crt'] is True
    assert len(plan['errors']) == 1 and plan['errors'][0].startswith('cp9 (kube_control_plane) is unreachable')


def test_first_certificate_of_a_bundle():
    first = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'
    second = '-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n'
    assert FILTERS['pki_first_certificate'](first + second) == first
    assert FILTERS['pki_first_certificate'](first.rstrip('\n')) == first
    with pytest.raises(AnsibleFilterError, match='pki_first_certificate: no certificate'):
        FILTERS['pki_first_certificate']('')


def test_rotation_files_are_the_names_ca_rotation_writes():
    cas = [{'cert': 'ca.crt', 'key': 'ca.key'}, {'cert': 'front-proxy-ca.crt', 'key': 'front-proxy-ca.key'}]
    assert FILTERS['pki_rotation_files'](cas) == [
        'ca-new.crt', 'ca-new.key', 'front-proxy-ca-new.crt', 'front-proxy-ca-new.key']


def test_rotation_files_name_what_is_missing():
    with pytest.raises(AnsibleFilterError, match='cert and key'):
        FILTERS['pki_rotation_files']([{'cert': 'ca.crt'}])
