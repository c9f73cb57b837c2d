# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/pki_catalog.py: which host holds which certificate, and which control plane holds the CA.

The catalogue is checked against Kubernetes' "PKI certificates and requirements" table (CN, O, usage,
signer, paths and kubeconfig files are kubeadm's, so operators' tools keep working), then for placement,
subject alternative names and API server URLs. ``read_found`` and ``ca_plan`` get registered results in
the shape ``ansible.builtin.find`` gives them, by host; ``batch_requests`` gets real catalogue output.
"""

from __future__ import annotations

import base64
import json
import os

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki_catalog

PKI_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'data', 'upstream',
                         'pki-requirements.json')

CPS = ['cp1', 'cp2', 'cp3']
WORKERS = ['w1', 'w2']
ADDR = {'cp1': '192.0.2.11', 'cp2': '192.0.2.12', 'cp3': '192.0.2.13', 'w1': '192.0.2.21', 'w2': '192.0.2.22'}
SETTINGS = {'cluster_name': 'kubeforge', 'service_cidr': '10.233.0.0/18', 'cluster_domain': 'cluster.local',
            'api_endpoint': '', 'apiserver_port': 6443, 'apiserver_extra_sans': [],
            'admin_group': 'kubeadm:cluster-admins'}
CA_FILES = ['ca.crt', 'ca.key', 'front-proxy-ca.crt', 'front-proxy-ca.key', 'sa.pub', 'sa.key']
ROTATION_FILES = ['ca-new.crt', 'ca-new.key', 'front-proxy-ca-new.crt', 'front-proxy-ca-new.key']
ALL_FILES = CA_FILES + ROTATION_FILES
# the table names the parent CA by its CN; the catalogue by the signer certificate_batch is called for
SIGNER_OF_PARENT = {'kubernetes-ca': 'kubernetes', 'kubernetes-front-proxy-ca': 'front-proxy'}
CONTROL_PLANE_SET = ['apiserver', 'apiserver-kubelet-client', 'front-proxy-client', 'admin', 'controller-manager',
                     'scheduler']
NODE_SET = ['kubelet-client', 'kubelet', 'kube-proxy']


def specs(host, address=None, cps=tuple(CPS), nodes=tuple(WORKERS), **changes):
    settings = dict(SETTINGS, **changes)
    return pki_catalog.host_certificates(host, address or ADDR[host], list(cps), list(nodes), settings)


def by_name(host, **kwargs):
    out = {}
    for spec in specs(host, **kwargs):
        assert spec['name'] not in out, 'duplicate certificate %s on %s' % (spec['name'], host)
        out[spec['name']] = spec
    return out


def by_cn(spec_list):
    """CN to spec, for the CNs that name one certificate (the kubelet's client and serving ones share theirs)."""
    out = {}
    for spec in spec_list:
        out.setdefault(spec['common_name'], []).append(spec)
    return {cn: found[0] for cn, found in out.items() if len(found) == 1}


def server_of(host, name, **kwargs):
    return by_name(host, **kwargs)[name]['kubeconfig']['server']


def _table():
    with open(PKI_TABLE, encoding='utf-8') as handle:
        return json.load(handle)


def _covers(usage, kinds):
    return set(kinds) <= set(usage.split('+'))


# --------------------------------------------------------------------------- kubeadm's table

def test_every_kubernetes_and_front_proxy_certificate_of_the_table():
    table = _table()
    entries = [e for e in table['required_certificates'] if e['parent_ca'] in SIGNER_OF_PARENT]
    assert {e['default_cn'] for e in entries} == {'kube-apiserver', 'kube-apiserver-kubelet-client',
                                                  'front-proxy-client'}
    # cp1 is the first control plane, so the CA host in a new cluster
    plan = pki_catalog.ca_plan(CPS, CPS, {})
    assert plan['host'] == 'cp1'
    catalogue = by_cn(specs(plan['host']))
    for entry in entries:
        cn = entry['default_cn']
        assert cn in catalogue, cn
        spec = catalogue[cn]
        assert _covers(spec['usage'], entry['kind']), (cn, spec['usage'], entry['kind'])
        assert spec['ca'] == SIGNER_OF_PARENT[entry['parent_ca']], cn
        if cn == 'kube-apiserver-kubelet-client':
            # the one documented exception: kubeadm swaps system:masters for its own, RBAC-bound group
            assert entry['o'] == 'system:masters' and 'kubeadm:cluster-admins' in entry['note']
            assert spec['organizations'] == ['kubeadm:cluster-admins']
        else:
            assert spec['organizations'] == ([entry['o']] if entry['o'] else []), cn


def test_apiserver_names_of_the_table():
    table = _table()
    apiserver = by_name('cp1')['apiserver']
    dns, ips = set(apiserver['dns_names']), set(apiserver['ip_addresses'])
    (entry,) = [e for e in table['required_certificates'] if e['default_cn'] == 'kube-apiserver']
    assert entry['hosts_san'] == ['<hostname>', '<Host_IP>', '<advertise_IP>', '[1]']
    assert 'cp1' in dns and ADDR['cp1'] in ips
    # footnote 1 also lists "kubernetes.default.svc.cluster", which kubeadm itself does not put on the
    # certificate (it adds kubernetes.default.svc.<dnsDomain>); every other name must be there
    wanted = set(table['footnote_1_names']) - {'kubernetes.default.svc.cluster'}
    assert 'kubernetes.default.svc.cluster.local' in wanted
    assert wanted <= dns, wanted - dns


def test_paths_of_the_table():
    table = _table()
    ca_files = {name for entry in table['required_cas'] for name in entry['files']}
    parent = {e['default_cn']: e['parent_ca'] for e in table['required_certificates']}
    entries = [p for p in table['certificate_paths']
               if p['command'] in ('kube-apiserver', 'kube-controller-manager') and p['key_path']
               and not p['key_path'].startswith('etcd/') and p['key_path'] not in ca_files]
    # kube-apiserver's etcd client certificate is signed by etcd-ca and written by the etcd role
    by_etcd = {p['default_cn'] for p in entries if parent.get(p['default_cn']) == 'etcd-ca'}
    assert by_etcd == {'kube-apiserver-etcd-client'}
    entries = [p for p in entries if p['default_cn'] not in by_etcd]
    assert len(entries) == 3
    catalogue = by_cn(specs('cp1'))
    assert not by_etcd & set(catalogue)
    for entry in entries:
        spec = catalogue[entry['default_cn']]
        assert spec['key_path'] == '/etc/kubernetes/pki/' + entry['key_path']
        assert spec['cert_path'] == '/etc/kubernetes/pki/' + entry['cert_path']
    assert table['base_directory']['pki'] == pki_catalog.PKI_DIR


def test_ca_files_of_the_table():
    table = _table()
    ca_files = {name for entry in table['required_cas'] for name in entry['files'] if not name.startswith('etcd/')}
    ca_files |= set(table['service_account_key_pair']['files'])
    assert {f for entry in pki_catalog.CA_FILES for f in (entry['cert'], entry['key'])} == ca_files
    cns = {e['default_cn'] for e in table['required_cas'] if not e['files'][0].startswith('etcd/')}
    assert {e['common_name'] for e in pki_catalog.CA_FILES if e['common_name']} == cns


@pytest.mark.parametrize('host', ['cp1', 'cp2', 'w1'])
def test_kubeconfig_files_of_the_table(host):
    table = _table()
    organizations = {'<admin-group>': ['kubeadm:cluster-admins'], 'system:masters': ['system:masters'],
                     'system:nodes': ['system:nodes'], None: []}
    with_kubeconfig = [s for s in specs(host) if s['kubeconfig']]
    by_dest = {s['kubeconfig']['dest']: s for s in with_kubeconfig}
    assert len(by_dest) == len(with_kubeconfig)
    entries = table['kubeconfig_files']
    assert [e['filename'] for e in entries] == ['admin.conf', 'super-admin.conf', 'kubelet.conf',
                                                'controller-manager.conf', 'scheduler.conf']
    if host == 'cp1':
        expected = {e['filename'] for e in entries}
    elif host in CPS:
        expected = {e['filename'] for e in entries} - {'super-admin.conf'}
    else:
        expected = {'kubelet.conf'}
    for entry in entries:
        if entry['filename'] not in expected:
            assert entry['path'] not in by_dest, (host, entry['filename'])
            continue
        spec = by_dest.get(entry['path'])
        assert spec is not None, (host, entry['filename'])
        assert spec['common_name'] == entry['default_cn'].replace('<nodeName>', host)
        assert spec['organizations'] == organizations[entry['o']], entry['filename']
        assert spec['usage'] == 'client' and spec['ca'] == 'kubernetes'
        assert spec['kubeconfig']['user_name'] == spec['common_name']
        assert spec['kubeconfig']['cluster_name'] == 'kubeforge'
    # and kube-proxy.conf, which the table does not list (kubeadm keeps it in a ConfigMap)
    assert by_name(host)['kube-proxy']['kubeconfig']['dest'] == '/etc/kubernetes/kube-proxy.conf'


def test_admin_and_super_admin_as_kubeadm_makes_them():
    generated = _table()['kubeadm_admin_certificates']
    first, other = by_name('cp1'), by_name('cp3')
    for catalogue in (first, other):
        assert catalogue['admin']['common_name'] == generated['admin.conf']['subject_cn']
        assert catalogue['admin']['organizations'] == [generated['admin.conf']['subject_o']]
    assert first['super-admin']['common_name'] == generated['super-admin.conf']['subject_cn']
    assert first['super-admin']['organizations'] == [generated['super-admin.conf']['subject_o']]
    assert 'super-admin' not in other


def test_admin_group_setting():
    catalogue = by_name('cp1', admin_group='example:admins')
    assert catalogue['admin']['organizations'] == ['example:admins']
    assert catalogue['apiserver-kubelet-client']['organizations'] == ['example:admins']
    assert catalogue['super-admin']['organizations'] == ['system:masters']
    # empty means kubeadm's group
    assert by_name('cp1', admin_group='')['admin']['organizations'] == ['kubeadm:cluster-admins']


# --------------------------------------------------------------------------- placement

def test_control_plane_set_in_a_stable_order():
    assert [s['name'] for s in specs('cp1')] == (CONTROL_PLANE_SET[:4] + ['super-admin'] + CONTROL_PLANE_SET[4:]
                                                 + NODE_SET)
    assert [s['name'] for s in specs('cp2')] == CONTROL_PLANE_SET + NODE_SET
    assert specs('cp2') == specs('cp2')


def test_super_admin_only_on_the_first_control_plane():
    holders = [h for h in CPS + WORKERS if 'super-admin' in by_name(h)]
    assert holders == ['cp1']
    # the first of the group, whatever its name
    assert [h for h in CPS if 'super-admin' in by_name(h, cps=['cp3', 'cp1', 'cp2'])] == ['cp3']


@pytest.mark.parametrize('host', WORKERS)
def test_worker_gets_exactly_the_node_set(host):
    catalogue = specs(host)
    assert [s['name'] for s in catalogue] == NODE_SET
    assert all(s['ca'] == 'kubernetes' for s in catalogue)


def test_control_plane_that_is_also_a_node_gets_each_certificate_once():
    names = [s['name'] for s in specs('cp2', nodes=CPS + WORKERS)]
    assert sorted(names) == sorted(CONTROL_PLANE_SET + NODE_SET)


def test_host_in_neither_group_gets_nothing():
    assert not specs('etcd1', address='192.0.2.31')


@pytest.mark.parametrize('host', ['cp1', 'w1'])
def test_paths_are_distinct_and_in_their_directories(host):
    catalogue = specs(host)
    paths = [s['key_path'] for s in catalogue] + [s['cert_path'] for s in catalogue]
    assert len(paths) == len(set(paths))
    for spec in catalogue:
        assert spec['key_path'].endswith('.key') and spec['cert_path'].endswith('.crt')
        assert spec['key_path'][:-4] == spec['cert_path'][:-4]
        if spec['name'] in ('kubelet', 'kubelet-client'):
            assert spec['key_path'].startswith('/var/lib/kubelet/pki/'), spec['name']
        elif spec['kubeconfig']:
            assert spec['key_path'] == '/etc/kubernetes/pki/kubeconfig/%s.key' % spec['name']
        else:
            assert spec['key_path'] == '/etc/kubernetes/pki/%s.key' % spec['name']
        if spec['usage'] == 'client':
            assert spec['dns_names'] == [] and spec['ip_addresses'] == []


@pytest.mark.parametrize('host', ['cp1', 'cp2', 'w1'])
def test_key_entries_and_kubeconfig_client_files(host):
    """``key``: the spec's entry in private_key's ``keys``; ``kubeconfig``: its entry in ``kubeconfigs``."""
    catalogue = specs(host)
    for spec in catalogue:
        assert spec['key'] == {'path': spec['key_path'], 'cert_path': spec['cert_path']}, spec['name']
        if spec['kubeconfig']:
            assert set(spec['kubeconfig']) == {'dest', 'server', 'cluster_name', 'user_name', 'embed_client',
                                               'client_cert_path', 'client_key_path'}, spec['name']
            assert spec['kubeconfig']['client_cert_path'] == spec['cert_path']
            assert spec['kubeconfig']['client_key_path'] == spec['key_path']
    # one private_key call and one kubeconfig call take a host's whole set: no path twice
    key_paths = [s['key']['path'] for s in catalogue]
    dests = [s['kubeconfig']['dest'] for s in catalogue if s['kubeconfig']]
    assert len(key_paths) == len(set(key_paths)) and len(dests) == len(set(dests))


def test_specs_survive_json():
    catalogue = specs('cp1')
    assert json.loads(json.dumps(catalogue)) == catalogue


# --------------------------------------------------------------------------- subject alternative names

def _sans(host='cp1', **kwargs):
    apiserver = by_name(host, **kwargs)['apiserver']
    dns, ips = apiserver['dns_names'], apiserver['ip_addresses']
    assert len(dns) == len(set(dns)), dns
    assert len(ips) == len(set(ips)), ips
    return dns, ips


def test_apiserver_sans():
    dns, ips = _sans()
    assert set(dns) == {'kubernetes', 'kubernetes.default', 'kubernetes.default.svc',
                        'kubernetes.default.svc.cluster.local', 'localhost', 'cp1'}
    assert set(ips) == {'192.0.2.11', '10.233.0.1', '127.0.0.1'}


@pytest.mark.parametrize('cidr, service_ip', [
    ('10.233.0.0/18', '10.233.0.1'),
    ('10.96.0.0/12', '10.96.0.1'),
    ('fd00:10:96::/108', 'fd00:10:96::1'),
])
def test_apiserver_service_address(cidr, service_ip):
    assert service_ip in _sans(service_cidr=cidr)[1]


def test_cluster_domain():
    dns = _sans(cluster_domain='k8s.example.internal')[0]
    assert 'kubernetes.default.svc.k8s.example.internal' in dns
    assert 'kubernetes.default.svc.cluster.local' not in dns


def test_extra_sans_are_split_into_names_and_addresses():
    dns, ips = _sans(apiserver_extra_sans=['api.example.com', '203.0.113.7', '2001:db8::10', ' padded.example.com ',
                                           ''])
    assert {'api.example.com', 'padded.example.com'} <= set(dns)
    assert {'203.0.113.7', '2001:db8::10'} <= set(ips)
    assert not {'203.0.113.7', '2001:db8::10'} & set(dns)
    assert not {'api.example.com', 'padded.example.com'} & set(ips)
    assert '' not in dns and ' padded.example.com ' not in dns


def test_extra_sans_given_as_a_string_are_split_on_commas():
    """``-e pki_apiserver_extra_sans=api.example.com,203.0.113.7`` passes the role's argument spec (type list
    accepts a comma-separated string) but the variable stays a string: one SAN per comma-separated name, never
    one per character."""
    dns, ips = _sans(apiserver_extra_sans='api.example.com, 203.0.113.7,,lb.example.com ')
    assert {'api.example.com', 'lb.example.com'} <= set(dns) and '203.0.113.7' in ips
    assert not [name for name in dns + ips if len(name) == 1 or ',' in name or name != name.strip()], (dns, ips)
    assert _sans(apiserver_extra_sans='api.example.com,203.0.113.7') == \
        _sans(apiserver_extra_sans=['api.example.com', '203.0.113.7'])
    # one name without a comma, and an empty string
    assert 'api.example.com' in _sans(apiserver_extra_sans='api.example.com')[0]
    assert _sans(apiserver_extra_sans='') == _sans(apiserver_extra_sans=[])


def test_extra_sans_repeating_built_in_names_are_not_duplicated():
    dns, ips = _sans(apiserver_extra_sans=['cp1', 'localhost', 'kubernetes', '192.0.2.11', '127.0.0.1',
                                           '10.233.0.1', 'lb.example.com'],
                     api_endpoint='lb.example.com:6443')
    assert dns.count('lb.example.com') == 1 and ips.count('127.0.0.1') == 1


@pytest.mark.parametrize('endpoint, kind, value', [
    ('lb.example.com:6443', 'dns', 'lb.example.com'),
    ('[2001:db8::1]:6443', 'ip', '2001:db8::1'),
    ('203.0.113.10:443', 'ip', '203.0.113.10'),
])
def test_api_endpoint_is_a_san(endpoint, kind, value):
    dns, ips = _sans(api_endpoint=endpoint)
    assert value in (dns if kind == 'dns' else ips)
    assert value not in (ips if kind == 'dns' else dns)
    assert endpoint not in dns


def test_ipv6_host_address_is_an_ip_san():
    dns, ips = _sans(address='2001:db8::11', service_cidr='fd00:10:96::/108')
    assert {'2001:db8::11', 'fd00:10:96::1', '127.0.0.1'} <= set(ips)
    assert '2001:db8::11' not in dns


def test_host_without_address_is_named_once():
    dns, ips = _sans(address='cp1')
    assert dns.count('cp1') == 1 and 'cp1' not in ips


@pytest.mark.parametrize('host', ['cp1', 'w1'])
def test_kubelet_serving_certificate(host):
    kubelet = by_name(host, apiserver_extra_sans=['api.example.com', '203.0.113.7'])['kubelet']
    assert kubelet['usage'] == 'server' and kubelet['ca'] == 'kubernetes'
    assert kubelet['common_name'] == 'system:node:' + host and kubelet['organizations'] == ['system:nodes']
    assert kubelet['dns_names'] == [host] and kubelet['ip_addresses'] == [ADDR[host]]
    assert kubelet['kubeconfig'] is None


def test_kubelet_serving_certificate_ipv6():
    kubelet = by_name('w1', address='2001:db8::21')['kubelet']
    assert kubelet['dns_names'] == ['w1'] and kubelet['ip_addresses'] == ['2001:db8::21']


# --------------------------------------------------------------------------- API server URLs

def test_control_plane_urls_without_endpoint():
    catalogue = by_name('cp2')
    for name in ('kubelet-client', 'kube-proxy', 'admin', 'controller-manager', 'scheduler'):
        assert catalogue[name]['kubeconfig']['server'] == 'https://192.0.2.12:6443', name
    assert server_of('cp1', 'super-admin') == 'https://192.0.2.11:6443'


def test_worker_urls_without_endpoint_use_the_local_balancer():
    for name in ('kubelet-client', 'kube-proxy'):
        assert server_of('w1', name) == 'https://127.0.0.1:6443'
        assert server_of('w1', name, apiserver_port=8443) == 'https://127.0.0.1:8443'


def test_urls_with_endpoint():
    for host in ('cp1', 'w1'):
        for name in ('kubelet-client', 'kube-proxy'):
            assert server_of(host, name, api_endpoint='lb.example.com:6443') == 'https://lb.example.com:6443'
    catalogue = by_name('cp1', api_endpoint='lb.example.com:6443')
    assert catalogue['admin']['kubeconfig']['server'] == 'https://lb.example.com:6443'
    # the components of a control plane talk to their own API server
    for name in ('controller-manager', 'scheduler'):
        assert catalogue[name]['kubeconfig']['server'] == 'https://192.0.2.11:6443', name


def test_urls_with_ipv6():
    catalogue = by_name('cp1', address='2001:db8::11')
    for name in ('kubelet-client', 'admin', 'controller-manager', 'scheduler'):
        assert catalogue[name]['kubeconfig']['server'] == 'https://[2001:db8::11]:6443', name
    assert server_of('w1', 'kubelet-client', api_endpoint='[2001:db8::1]:6443') == 'https://[2001:db8::1]:6443'


def test_port_as_a_string():
    # the role passes settings through a template, so the port may come as a string
    assert server_of('cp1', 'admin', apiserver_port='6443') == 'https://192.0.2.11:6443'


def test_only_the_kubelet_references_its_client_files():
    for host in ('cp1', 'w1'):
        for spec in specs(host):
            if spec['kubeconfig']:
                assert spec['kubeconfig']['embed_client'] is (spec['name'] != 'kubelet-client'), spec['name']
    assert by_name('w1')['kubelet-client']['kubeconfig']['embed_client'] is False


# --------------------------------------------------------------------------- read_found and ca_plan

def find_result(files, **extra):
    """What ``ansible.builtin.find`` (paths /etc/kubernetes/pki, patterns the CA files, get_checksum) registers."""
    entries = [{'path': '/etc/kubernetes/pki/' + name, 'checksum': checksum, 'mode': '0600' if name.endswith('.key')
                else '0644', 'isreg': True, 'size': 1200, 'uid': 0, 'gid': 0} for name, checksum in files.items()]
    result = {'files': entries, 'matched': len(entries), 'examined': len(entries) + 3, 'skipped_paths': {},
              'msg': 'All paths examined', 'changed': False, 'failed': False}
    result.update(extra)
    return result


SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False',
           'false_condition': 'inventory_hostname in __pki_control_planes'}


def found(held, skipped=()):
    """One registered ``find`` per host: ``held`` is {host: {file: checksum}}, absent files missing."""
    out = {host: find_result({name: files[name] for name in ALL_FILES if files.get(name)})
           for host, files in held.items()}
    out.update((host, dict(SKIPPED)) for host in skipped)
    return out


def full_ca(tag='a'):
    return {name: '%s-%s' % (tag, name) * 4 for name in CA_FILES}


def plan(registered, cps=tuple(CPS), play=tuple(CPS + WORKERS)):
    found_files, unreachable = pki_catalog.read_found(registered)
    return pki_catalog.ca_plan(list(cps), list(play), found_files, unreachable)


def test_read_found():
    found_files, unreachable = pki_catalog.read_found(found({'cp1': {'ca.crt': 'abc'}, 'cp2': {}}))
    assert unreachable == []
    nothing = dict.fromkeys(ALL_FILES)
    assert found_files == {'cp1': dict(nothing, **{'ca.crt': 'abc'}), 'cp2': nothing}


def test_read_found_of_a_real_find_shape():
    """The keys find really returns, with the loop keys of the delegated task."""
    registered = {'cp3': find_result(full_ca(), item='cp3', ansible_loop_var='item', failed_when_result=False,
                                     invocation={'module_args': {'paths': ['/etc/kubernetes/pki']}})}
    assert pki_catalog.read_found(registered) == ({'cp3': dict(dict.fromkeys(ALL_FILES), **full_ca())}, [])


def test_new_cluster():
    result = plan(found({h: {} for h in CPS}, skipped=WORKERS))
    assert result == {'host': 'cp1', 'copy_to': ['cp2', 'cp3'], 'errors': [], 'differ': False,
                      'exists': {name: False for name in ALL_FILES}, 'files': list(CA_FILES),
                      'stale': list(pki_catalog.ROTATION_FILE_NAMES)}


def test_new_cluster_without_the_first_control_plane_in_the_run():
    result = plan(found({h: {} for h in CPS}), play=['cp2', 'cp3', 'w1'])
    assert result['host'] == 'cp2' and result['copy_to'] == ['cp3'] and result['errors'] == []


def test_ca_on_the_second_control_plane():
    result = plan(found({'cp1': {}, 'cp2': full_ca(), 'cp3': {}}))
    assert result['host'] == 'cp2'
    assert result['copy_to'] == ['cp1', 'cp3']
    assert result['exists'] == {name: name in CA_FILES for name in ALL_FILES}
    assert result['errors'] == []


def test_the_holder_of_ca_crt_comes_before_holders_of_other_files():
    partial = {'front-proxy-ca.crt': full_ca()['front-proxy-ca.crt']}
    result = plan(found({'cp1': partial, 'cp2': full_ca(), 'cp3': {}}))
    assert result['host'] == 'cp2' and result['copy_to'] == ['cp1', 'cp3'] and result['errors'] == []
    # no ca.crt anywhere: the first control plane holding any CA file
    result = plan(found({'cp1': {}, 'cp2': {}, 'cp3': {'sa.key': 'k' * 64}}))
    assert result['host'] == 'cp3' and result['copy_to'] == ['cp1', 'cp2']
    assert result['exists'] == {name: name == 'sa.key' for name in ALL_FILES}


def test_same_ca_everywhere():
    result = plan(found({h: full_ca() for h in CPS}))
    assert result['host'] == 'cp1' and result['copy_to'] == [] and result['errors'] == []
    assert all(result['exists'][name] for name in CA_FILES)


def test_control_plane_lacking_one_file_gets_the_copies():
    partial = dict(full_ca(), **{'sa.pub': None})
    result = plan(found({'cp1': full_ca(), 'cp2': partial, 'cp3': full_ca()}))
    assert result['copy_to'] == ['cp2'] and result['errors'] == []


def test_different_ca_certificates_are_refused():
    other = dict(full_ca(), **{'ca.crt': 'b' * 64})
    result = plan(found({'cp1': full_ca(), 'cp2': {}, 'cp3': other}))
    assert len(result['errors']) == 1
    error = result['errors'][0]
    assert 'ca.crt' in error and 'cp1' in error and 'cp3' in error and 'cp2' not in error


def test_file_missing_on_the_ca_host_but_held_elsewhere_is_refused():
    without_sa_key = dict(full_ca(), **{'sa.key': None})
    result = plan(found({'cp1': without_sa_key, 'cp2': full_ca(), 'cp3': {}}))
    assert result['host'] == 'cp1'
    assert len(result['errors']) == 1
    assert 'sa.key' in result['errors'][0] and 'cp1' in result['errors'][0]
    assert 'ca.key' not in result['errors'][0]
    assert result['exists']['sa.key'] is False and result['exists']['ca.crt'] is True


@pytest.mark.parametrize('bad', [
    # ignore_unreachable, as ansible-core 2.17 and 2.19+ register it
    {'unreachable': True, 'msg': 'Failed to connect to the host via ssh', 'changed': False},
    {'unreachable': True, 'failed': False, 'changed': False, 'exception': '(traceback unavailable)',
     'msg': 'Task failed: Failed to connect to the host via ssh'},
    # failed_when: false over a module that could not run: no files
    {'failed': False, 'failed_when_result': False, 'msg': 'MODULE FAILURE', 'module_stderr': 'python: not found',
     'rc': 127, 'changed': False},
    {'failed': True, 'msg': 'Permission denied'},
    # unreachable wins over a files key
    find_result(full_ca(), unreachable=True),
])
def test_control_plane_that_cannot_be_asked(bad):
    registered = found({'cp1': full_ca(), 'cp2': {}})
    # the control planes outside the run are asked by delegation, ignore_unreachable
    registered['cp3'] = dict(bad, item='cp3', ansible_loop_var='item')
    found_files, unreachable = pki_catalog.read_found(registered)
    assert unreachable == ['cp3'] and 'cp3' not in found_files
    result = pki_catalog.ca_plan(CPS, ['cp1', 'w1'], found_files, unreachable)
    assert len(result['errors']) == 1 and 'cp3' in result['errors'][0] and 'unreachable' in result['errors'][0]
    assert 'cp3' not in result['copy_to']


def test_every_control_plane_that_cannot_be_asked_is_named():
    registered = found({'cp1': full_ca()})
    registered.update(cp2={'unreachable': True, 'msg': 'timeout'}, cp3={'msg': 'no files key'})
    found_files, unreachable = pki_catalog.read_found(registered)
    assert unreachable == ['cp2', 'cp3'] and list(found_files) == ['cp1']
    errors = pki_catalog.ca_plan(CPS, ['cp1'], found_files, unreachable)['errors']
    assert [e.split(' ', 1)[0] for e in errors] == ['cp2', 'cp3']


def test_control_planes_outside_the_run_are_never_copied_to():
    result = plan(found({'cp1': {}, 'cp2': {}, 'cp3': {}}), play=['cp1', 'w1'])
    assert result['host'] == 'cp1' and result['copy_to'] == []
    result = plan(found({'cp1': {}, 'cp2': {}, 'cp3': full_ca()}), play=['cp1', 'w1'])
    assert result['host'] == 'cp3' and result['copy_to'] == ['cp1'] and result['errors'] == []


@pytest.mark.parametrize('skipped', [SKIPPED, {}, None,
                                     {'skipped': True, 'changed': False, 'msg': 'No items in the list'}])
def test_skipped_registrations_are_ignored(skipped):
    registered = found({'cp1': {}, 'cp2': full_ca(), 'cp3': {}})
    expected = plan(registered)
    assert plan(dict(registered, w1=skipped, w2=skipped)) == expected
    assert pki_catalog.read_found({'cp1': skipped}) == ({}, [])
    # a control plane that was not asked is neither a holder nor unreachable
    assert plan(dict(registered, cp2=skipped))['host'] == 'cp1'
    assert plan(dict(registered, cp2=skipped))['errors'] == []


def test_files_that_are_not_ca_files_are_ignored():
    registered = {'cp1': {'files': [{'path': '/etc/kubernetes/pki/apiserver.crt', 'checksum': 'x'},
                                    {'path': '/etc/kubernetes/pki/ca.crt.old', 'checksum': 'x'},
                                    {'checksum': 'no path'},
                                    {'path': '/etc/kubernetes/pki/sa.pub'}],
                          'matched': 4, 'changed': False},
                  'cp2': {'files': None, 'matched': 0, 'changed': False}}
    found_files, unreachable = pki_catalog.read_found(registered)
    assert unreachable == []
    # sa.pub without a checksum (get_checksum off, or unreadable) still counts as present
    assert [name for name, value in found_files['cp1'].items() if value] == ['sa.pub']
    assert found_files['cp2'] == dict.fromkeys(ALL_FILES)
    assert pki_catalog.ca_plan(CPS, CPS, found_files, unreachable)['host'] == 'cp1'


def test_empty_directory_is_asked_and_holds_nothing():
    assert pki_catalog.read_found({'cp1': find_result({}, matched=0,
                                                      skipped_paths={'/etc/kubernetes/pki': 'not a directory'})}) \
        == ({'cp1': dict.fromkeys(ALL_FILES)}, [])


def test_the_rotation_files_are_ca_files():
    assert list(pki_catalog.ROTATION_FILE_NAMES) == ROTATION_FILES


def test_a_rotation_in_progress_is_copied_like_the_ca():
    trusting = dict(full_ca(), **{'ca.crt': 'bundle' * 8, 'ca-new.crt': 'n' * 64, 'ca-new.key': 'k' * 64})
    # every control plane trusting: nothing differs, a new control plane gets the rotation files too
    result = plan(found({'cp1': trusting, 'cp2': trusting, 'cp3': {}}))
    assert result['errors'] == [] and result['copy_to'] == ['cp3']
    assert result['files'] == CA_FILES + ['ca-new.crt', 'ca-new.key']
    assert result['stale'] == ['front-proxy-ca-new.crt', 'front-proxy-ca-new.key']


def test_a_rotation_that_stopped_half_way_is_refused_outside_a_rotation_run():
    # the CA host moved on to phase sign (ca-new.* gone, ca.crt and ca.key replaced); cp2 did not
    signing = dict(full_ca(), **{'ca.crt': 's' * 64, 'ca.key': 'S' * 64})
    trusting = dict(full_ca(), **{'ca.crt': 't' * 64, 'ca-new.crt': 'n' * 64, 'ca-new.key': 'k' * 64})
    registered = found({'cp1': signing, 'cp2': trusting, 'cp3': signing})
    refused = plan(registered)
    assert any('ca.crt differs' in e and 'rotate-ca' in e for e in refused['errors']), refused['errors']
    assert any('lacks ca-new.crt, ca-new.key' in e for e in refused['errors']), refused['errors']
    # the rotation run: the CA host's files count, every other control plane in the run gets them
    found_files, unreachable = pki_catalog.read_found(registered)
    rotating = pki_catalog.ca_plan(CPS, CPS + WORKERS, found_files, unreachable, rotating=True)
    assert rotating['errors'] == [] and rotating['differ'] is True
    assert rotating['host'] == 'cp1' and rotating['copy_to'] == ['cp2', 'cp3']
    assert rotating['stale'] == ROTATION_FILES and rotating['files'] == CA_FILES


def test_no_control_plane():
    with pytest.raises(pki_catalog.PKIPlanError):
        pki_catalog.ca_plan([], ['w1'], {})
    with pytest.raises(pki_catalog.PKIPlanError):
        pki_catalog.ca_plan([], [], {}, [])


# --------------------------------------------------------------------------- batch_requests

def key_results(catalogue, host, leave_out=()):
    return {s['name']: {'public_key': 'PUB %s/%s' % (host, s['name']),
                        'certificate': 'CERT %s/%s' % (host, s['name']) if s['name'] == 'admin' else None}
            for s in catalogue if s['name'] not in leave_out}


def test_batch_requests():
    catalogue = {h: specs(h) for h in ('cp1', 'cp2', 'w1')}
    keys = {'cp1': key_results(catalogue['cp1'], 'cp1', leave_out=['scheduler']),
            'cp2': key_results(catalogue['cp2'], 'cp2'), 'w1': key_results(catalogue['w1'], 'w1')}
    out = pki_catalog.batch_requests(catalogue, keys, '365', '30')
    assert set(out) == {'kubernetes', 'front-proxy'}
    assert [r['id'] for r in out['front-proxy']] == ['cp1/front-proxy-client', 'cp2/front-proxy-client']
    expected = ['%s/%s' % (h, s['name']) for h in ('cp1', 'cp2', 'w1') for s in catalogue[h]
                if s['ca'] == 'kubernetes' and (h, s['name']) != ('cp1', 'scheduler')]
    assert [r['id'] for r in out['kubernetes']] == expected
    spec_of = {'%s/%s' % (h, s['name']): s for h in catalogue for s in catalogue[h]}
    for request in out['kubernetes'] + out['front-proxy']:
        spec = spec_of[request['id']]
        assert request['common_name'] == spec['common_name']
        assert request['organizations'] == spec['organizations']
        assert request['usage'] == spec['usage']
        assert request['public_key'] == 'PUB ' + request['id']
        assert request['current_certificate'] == ('CERT ' + request['id'] if spec['name'] == 'admin' else None)
        assert isinstance(request['validity_days'], int) and request['validity_days'] == 365
        assert isinstance(request['renew_before_days'], int) and request['renew_before_days'] == 30
        if spec['usage'] == 'client':
            assert 'dns_names' not in request and 'ip_addresses' not in request, request['id']
        else:
            assert request['dns_names'] == spec['dns_names'] and request['ip_addresses'] == spec['ip_addresses']
    apiserver = next(r for r in out['kubernetes'] if r['id'] == 'cp2/apiserver')
    assert '192.0.2.12' in apiserver['ip_addresses'] and 'kubernetes.default.svc' in apiserver['dns_names']


def test_batch_requests_without_keys():
    catalogue = {'cp1': specs('cp1'), 'w1': specs('w1')}
    assert pki_catalog.batch_requests(catalogue, {}, 365, 30) == {'kubernetes': [], 'front-proxy': []}
    out = pki_catalog.batch_requests(catalogue, {'w1': key_results(catalogue['w1'], 'w1'), 'cp1': None}, 365, 30)
    assert [r['id'] for r in out['kubernetes']] == ['w1/kubelet-client', 'w1/kubelet', 'w1/kube-proxy']
    assert out['front-proxy'] == []


def test_etcd_certificates_are_entries_of_the_one_catalogue():
    member = pki_catalog.etcd_certificates('etcd1', True, False, 'etcd-a', '192.0.2.11', ['etcd.example', '198.51.100.7'])
    assert [c['name'] for c in member] == ['server', 'peer', 'healthcheck-client']
    server = member[0]
    assert server['ca'] == 'etcd' and server['common_name'] == 'kube-etcd' and server['usage'] == 'server+client'
    assert server['cert_path'] == '/etc/kubernetes/pki/etcd/server.crt' and server['owner'] == 'etcd'
    assert server['dns_names'] == ['etcd1', 'etcd-a', 'localhost', 'etcd.example']
    assert server['ip_addresses'] == ['192.0.2.11', '127.0.0.1', '::1', '198.51.100.7']
    assert member[2]['dns_names'] == [] and member[2]['owner'] == 'root'
    both = pki_catalog.etcd_certificates('cp1', True, True, 'cp1', '192.0.2.1')
    assert [c['name'] for c in both][-1] == 'apiserver-etcd-client'
    outside = pki_catalog.etcd_certificates('cp2', False, True)
    assert [(c['name'], c['key_path']) for c in outside] == [
        ('apiserver-etcd-client', '/etc/kubernetes/pki/apiserver-etcd-client.key')]
    requests = pki_catalog.batch_requests({'etcd1': member}, {'etcd1': {'server': {'public_key': 'PEM'}}}, 365, 30)
    assert [r['id'] for r in requests['etcd']] == ['etcd1/server']
    assert requests['etcd'][0]['dns_names'] == server['dns_names']


def test_etcd_entries_match_the_kubernetes_pki_table():
    with open(PKI_TABLE, encoding='utf-8') as handle:
        text = handle.read()
    for _name, _path, common_name, _usage, _member, _owner in pki_catalog.ETCD_CERTIFICATES:
        assert common_name in text


# --------------------------------------------------------------------------- issued and etcd_outside_files

PEM = '-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n'


def batch_result(**issued):
    """What one certificate_batch task registers: ``issued`` is {request id: certificate text or None}."""
    return {'changed': any(issued.values()), 'unchanged': [],
            'certificates': {rid: {'certificate': cert, 'reason': 'missing', 'not_after': '2027-01-01T00:00:00Z',
                                   'serial': '1f'} for rid, cert in issued.items()}}


def test_issued_picks_the_host_certificates_in_catalogue_order():
    member = pki_catalog.etcd_certificates('etcd1', True, True, 'etcd1', '192.0.2.11')
    signed = batch_result(**{'etcd1/apiserver-etcd-client': PEM % 'C', 'etcd1/server': PEM % 'S',
                             'etcd2/peer': PEM % 'other host', 'etcd1/peer': None})
    assert pki_catalog.issued('etcd1', member, signed) == [
        {'name': 'server', 'cert_path': '/etc/kubernetes/pki/etcd/server.crt', 'certificate': PEM % 'S',
         'reason': 'missing'},
        {'name': 'apiserver-etcd-client', 'cert_path': '/etc/kubernetes/pki/apiserver-etcd-client.crt',
         'certificate': PEM % 'C', 'reason': 'missing'}]


@pytest.mark.parametrize('signed', [None, {}, {'skipped': True, 'changed': False},
                                    {'changed': False, 'certificates': {}, 'unchanged': ['etcd1/server']}])
def test_nothing_issued(signed):
    assert pki_catalog.issued('etcd1', pki_catalog.etcd_certificates('etcd1', True, False), signed) == []


def test_issued_reads_a_looped_batch_task_one_result_per_ca():
    catalogue = specs('cp1')
    signed = {'changed': True, 'results': [
        dict(batch_result(**{'cp1/apiserver': PEM % 'A'}), item={'name': 'kubernetes'}),
        {'skipped': True, 'item': {'name': 'front-proxy'}, 'certificates': {'cp1/front-proxy-client': {}}},
    ]}
    assert [(e['name'], e['cert_path']) for e in pki_catalog.issued('cp1', catalogue, signed)] == [
        ('apiserver', '/etc/kubernetes/pki/apiserver.crt')]


def slurp_results(**files):
    """What the looped slurp of the etcd CA files registers: {file name: text, or None for a skipped item}."""
    out = []
    for name, text in files.items():
        if text is None:
            out.append({'item': name, 'skipped': True, 'changed': False})
        else:
            out.append({'item': name, 'content': base64.b64encode(text.encode()).decode(), 'encoding': 'base64',
                        'source': '/etc/kubernetes/pki/etcd/' + name, 'changed': False})
    return {'changed': False, 'results': out, 'skipped': False}


def test_etcd_outside_files_give_the_ca_and_the_client_certificate():
    ca_read = slurp_results(**{'ca.crt': PEM % 'CA', 'ca.key': 'secret'})
    signed = batch_result(**{'cp1/apiserver-etcd-client': PEM % 'C1', 'etcd1/server': PEM % 'S'})
    assert pki_catalog.etcd_outside_files(['cp1', 'cp2'], ca_read, signed) == [
        {'host': 'cp1', 'dest': '/etc/kubernetes/pki/etcd/ca.crt', 'content': PEM % 'CA'},
        {'host': 'cp1', 'dest': '/etc/kubernetes/pki/apiserver-etcd-client.crt', 'content': PEM % 'C1'},
        {'host': 'cp2', 'dest': '/etc/kubernetes/pki/etcd/ca.crt', 'content': PEM % 'CA'}]


def test_etcd_outside_files_without_a_ca_read():
    signed = batch_result(**{'cp1/apiserver-etcd-client': PEM % 'C1'})
    # the read was skipped (check mode before the CA exists), or did not run at all
    for ca_read in (slurp_results(**{'ca.crt': None}), {'skipped': True, 'changed': False}, {}):
        assert pki_catalog.etcd_outside_files(['cp1'], ca_read, signed) == [
            {'host': 'cp1', 'dest': '/etc/kubernetes/pki/apiserver-etcd-client.crt', 'content': PEM % 'C1'}]
    assert pki_catalog.etcd_outside_files([], slurp_results(**{'ca.crt': PEM % 'CA'}), signed) == []


def test_a_ca_read_that_is_not_base64_is_an_error():
    with pytest.raises(pki_catalog.PKIPlanError, match='ca.crt'):
        pki_catalog.etcd_outside_files(['cp1'], {'results': [{'item': 'ca.crt', 'content': '%%%'}]}, {})
