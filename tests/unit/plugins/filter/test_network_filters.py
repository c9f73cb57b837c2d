# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Address filters: direct calls, and a real playbook run on localhost through ansible-playbook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.filter.network import FilterModule

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FILTERS = FilterModule().filters()


def test_filters_are_registered():
    assert set(FILTERS) == {'service_ip', 'dns_ip', 'cidr_overlaps', 'cidr_contains', 'node_pod_cidr', 'network_switches'}


def test_values():
    assert FILTERS['service_ip']('10.233.0.0/18') == '10.233.0.1'
    assert FILTERS['dns_ip']('10.233.0.0/18') == '10.233.0.10'
    assert FILTERS['cidr_overlaps']('10.233.64.0/18', '10.233.0.0/18') is False
    assert FILTERS['cidr_overlaps']('10.233.64.0/18', '10.233.0.0/16') is True
    assert FILTERS['cidr_contains']('10.233.0.0/18', '10.233.0.10') is True
    assert FILTERS['node_pod_cidr']('10.233.64.0/18', 24, 3) == '10.233.67.0/24'
    assert FILTERS['node_pod_cidr']('10.233.64.0/18', '24', '3') == '10.233.67.0/24'


@pytest.mark.parametrize('name, args, message', [
    ('service_ip', ('10.0.0.1/8',), "service_ip: range '10.0.0.1/8' is not a valid CIDR"),
    ('dns_ip', ('10.0.0.0/30',), 'dns_ip: 10.0.0.0/30 has no address at offset 10'),
    ('cidr_overlaps', ('10.0.0.0/8', 'x'), "cidr_overlaps: range 'x' is not a valid CIDR"),
    ('cidr_contains', ('10.0.0.0/8', 'host'), "cidr_contains: address 'host' is not an IP address"),
    ('node_pod_cidr', ('10.233.64.0/18', 24, 99), 'node_pod_cidr: 10.233.64.0/18 holds 64 ranges of /24'),
    ('node_pod_cidr', ('10.233.64.0/18', 'x', 0), 'node_pod_cidr: '),
])
def test_errors_are_filter_errors_with_the_reason(name, args, message):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS[name](*args)
    assert message in str(err.value)


def test_filters_in_a_real_playbook(tmp_path):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ values | to_json }}"
      vars:
        values:
          api: "{{ '10.233.0.0/18' | kubeforge.cluster.service_ip }}"
          dns: "{{ '10.233.0.0/18' | kubeforge.cluster.dns_ip }}"
          node: "{{ '10.233.64.0/18' | kubeforge.cluster.node_pod_cidr(24, 3) }}"
          clash: "{{ '10.233.64.0/18' | kubeforge.cluster.cidr_overlaps('10.233.0.0/18') }}"
          inside: "{{ '10.233.0.0/18' | kubeforge.cluster.cidr_contains('10.233.0.10') }}"
          flags: "{{ {'secure-port': 6443, 'anonymous-auth': false} | kubeforge.cluster.component_flags('kube-apiserver') }}"
''')
    out = tmp_path / 'out.json'
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_LOCALHOST_WARNING='false')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), str(playbook),
                           '-i', 'localhost,', '-c', 'local', '-e', 'out=%s' % out, '-e',
                           'ansible_python_interpreter=%s' % sys.executable],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    values = json.loads(out.read_text())
    assert values['api'] == '10.233.0.1' and values['dns'] == '10.233.0.10' and values['node'] == '10.233.67.0/24'
    assert values['clash'] in (False, 'False') and values['inside'] in (True, 'True')
    assert values['flags'] == ['--anonymous-auth=false', '--secure-port=6443']


def test_network_switches_name_each_host_that_runs_another_network():
    from ansible_collections.kubeforge.cluster.plugins.filter.network import network_switches

    configs = {"cp1": ["10-kubeforge-bridge.conflist"], "w1": [], "w2": None, "w3": ["10-calico.conflist"]}
    assert network_switches(configs, "none") == ["cp1 runs the bridge pod network, and kubeforge_network_plugin is none"]
    assert network_switches(configs, "bridge") == [
        "w3 runs a pod network of its own (a CNI configuration in /etc/cni/net.d), and kubeforge_network_plugin is bridge"]


def test_the_bundle_archives_of_the_image_table_carry_path_and_pinned_digest():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kubeforge.cluster.plugins.filter.images import bundle_archives, image_entries

    digest = "sha256:" + "1" * 64
    table = {"pause": {"name": "registry.k8s.io/pause", "tag": "3.10.2", "digest": digest},
             "busybox": {"name": "docker.io/library/busybox", "tag": "1.37.0", "digest": digest}}
    entries = image_entries(table, {"pause": {"digest": "sha256:" + "2" * 64}})
    assert [e["key"] for e in entries] == ["busybox", "pause"]
    assert entries[1]["digest"] == "sha256:" + "2" * 64
    assert bundle_archives(entries, "/srv/bundle/") == [
        {"url": "/srv/bundle/images/docker.io/library/busybox/1.37.0.oci.tar", "digest": digest,
         "images": ["docker.io/library/busybox:1.37.0"]},
        {"url": "/srv/bundle/images/registry.k8s.io/pause/3.10.2.oci.tar", "digest": "sha256:" + "2" * 64,
         "images": ["registry.k8s.io/pause:3.10.2"]}]
    with pytest.raises(AnsibleFilterError, match="pause has no digest"):
        bundle_archives(image_entries(table, {"pause": {"tag": "3.10.1"}}), "/srv/bundle")
