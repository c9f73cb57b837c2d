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
