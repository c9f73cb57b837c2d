# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/network.py: the address arithmetic the filters and preflight use."""

from __future__ import annotations

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import network


def test_service_and_dns_addresses():
    assert network.service_ip('10.233.0.0/18') == '10.233.0.1'
    assert network.dns_ip('10.233.0.0/18') == '10.233.0.10'
    assert network.service_ip('fd00:10:96::/108') == 'fd00:10:96::1'
    assert network.dns_ip('fd00:10:96::/108') == 'fd00:10:96::a'


@pytest.mark.parametrize('bad', ['10.0.0.1/8', 'nonsense', '10.0.0.0/33', ''])
def test_invalid_ranges_say_why(bad):
    with pytest.raises(network.NetworkError, match='is not a valid CIDR'):
        network.service_ip(bad)


def test_overlaps_and_contains():
    assert network.overlaps('10.233.64.0/18', '10.233.0.0/16')
    assert not network.overlaps('10.233.64.0/18', '10.233.0.0/18')
    assert not network.overlaps('10.0.0.0/8', 'fd00::/8')
    assert network.contains('10.233.0.0/18', '10.233.0.10')
    assert not network.contains('10.233.0.0/18', '10.233.64.1')
    assert not network.contains('10.0.0.0/8', 'fd00::1')
    with pytest.raises(network.NetworkError, match='is not an IP address'):
        network.contains('10.0.0.0/8', '10.0.0.300')


def test_node_ranges():
    assert network.node_cidr_capacity('10.233.64.0/18', 24) == 64
    assert network.node_pod_cidr('10.233.64.0/18', 24, 0) == '10.233.64.0/24'
    assert network.node_pod_cidr('10.233.64.0/18', 24, 63) == '10.233.127.0/24'
    assert network.node_pod_cidr('fd00:10:244::/56', 64, 2) == 'fd00:10:244:2::/64'
    with pytest.raises(network.NetworkError, match='holds 64 ranges of /24; index 64 is outside'):
        network.node_pod_cidr('10.233.64.0/18', 24, 64)
    with pytest.raises(network.NetworkError, match='must be longer'):
        network.node_pod_cidr('10.233.64.0/18', 16, 0)


def test_service_range_limits():
    assert network.service_range_error('10.96.0.0/12') is None
    assert 'host bits' in network.service_range_error('10.0.0.0/8')
    assert 'too small' in network.service_range_error('10.96.0.0/29')


def test_pod_ranges_new_cluster_in_inventory_order():
    assert network.assign_pod_cidrs(["cp1", "cp2", "w1"], {}, "10.233.64.0/18", 24) == {
        "cp1": "10.233.64.0/24", "cp2": "10.233.65.0/24", "w1": "10.233.66.0/24"}


def test_pod_ranges_keep_what_nodes_have_and_fill_the_gaps():
    existing = {"cp1": "10.233.64.0/24", "w1": "10.233.66.0/24", "gone": "10.233.67.0/24"}
    # cp2 was removed (its range .65 is free); a new node inserted early in the inventory takes the
    # lowest free range and nobody else moves
    assigned = network.assign_pod_cidrs(["cp1", "new", "w1", "w2"], existing, "10.233.64.0/18", 24)
    assert assigned == {"cp1": "10.233.64.0/24", "new": "10.233.65.0/24", "w1": "10.233.66.0/24",
                        "gone": "10.233.67.0/24", "w2": "10.233.68.0/24"}


def test_pod_ranges_too_many_nodes():
    with pytest.raises(network.NetworkError, match="holds 4 node ranges of /26, and 5 nodes need one"):
        network.assign_pod_cidrs(["a", "b", "c", "d", "e"], {}, "10.233.64.0/24", 26)


def test_pod_ranges_refuse_a_foreign_or_shared_range():
    with pytest.raises(network.NetworkError, match="outside the cluster's 10.233.64.0/18"):
        network.assign_pod_cidrs(["a"], {"a": "10.1.0.0/24"}, "10.233.64.0/18", 24)
    with pytest.raises(network.NetworkError, match="nodes a and b both have the pod range"):
        network.assign_pod_cidrs(["a", "b"], {"a": "10.233.64.0/24", "b": "10.233.64.0/24"}, "10.233.64.0/18", 24)
