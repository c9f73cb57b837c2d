# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Address arithmetic shared by preflight, the filters and the roles.

Standard library only (``ipaddress``), so it runs on the controller and on any host.
"""

from __future__ import annotations

import ipaddress

# kube-apiserver refuses a service range with more than 20 host bits for IPv4
# (--service-cluster-ip-range, "must be /12 or smaller") and, for IPv6, more than 20 bits
# beyond the prefix as well (/108 or longer).
MAX_SERVICE_HOST_BITS = 20


class NetworkError(ValueError):
    """An address or range that cannot be used, with the reason."""


def parse_network(value, what="range"):
    """Parse a CIDR strictly: host bits must be zero (10.0.0.1/8 is refused)."""
    try:
        return ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise NetworkError(f"{what} {value!r} is not a valid CIDR ({exc}); expected e.g. 10.233.0.0/18")


def parse_address(value, what="address"):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError as exc:
        raise NetworkError(f"{what} {value!r} is not an IP address ({exc})")


def nth_address(cidr, index):
    """The address ``index`` positions after the network address (1 = first usable)."""
    net = parse_network(cidr)
    if index < 0 or index >= net.num_addresses:
        raise NetworkError(f"{cidr} has no address at offset {index} (it holds {net.num_addresses})")
    return str(net.network_address + index)


def service_ip(cidr):
    """The kubernetes service's ClusterIP: the first address of the service range."""
    return nth_address(cidr, 1)


def dns_ip(cidr):
    """The cluster DNS service address: the tenth address of the service range (kubeadm's choice)."""
    return nth_address(cidr, 10)


def overlaps(a, b):
    na, nb = parse_network(a), parse_network(b)
    return na.version == nb.version and na.overlaps(nb)


def contains(cidr, address):
    net = parse_network(cidr)
    addr = parse_address(address)
    return addr.version == net.version and addr in net


def node_cidr_capacity(pod_cidr, node_mask):
    """How many node ranges of prefix ``node_mask`` fit in ``pod_cidr``."""
    net = parse_network(pod_cidr)
    node_mask = int(node_mask)
    if node_mask <= net.prefixlen:
        raise NetworkError(
            f"node mask /{node_mask} must be longer than the pod range's prefix /{net.prefixlen}")
    if node_mask > net.max_prefixlen:
        raise NetworkError(f"node mask /{node_mask} is longer than /{net.max_prefixlen}")
    return 2 ** (node_mask - net.prefixlen)


def node_pod_cidr(pod_cidr, node_mask, index):
    """The ``index``-th (0-based) node range of prefix ``node_mask`` inside ``pod_cidr``."""
    capacity = node_cidr_capacity(pod_cidr, node_mask)
    index = int(index)
    if not 0 <= index < capacity:
        raise NetworkError(f"{pod_cidr} holds {capacity} ranges of /{node_mask}; index {index} is outside")
    net = parse_network(pod_cidr)
    size = 2 ** (net.max_prefixlen - int(node_mask))
    return str(ipaddress.ip_network((int(net.network_address) + index * size, int(node_mask))))


def service_range_error(cidr):
    """None if kube-apiserver accepts ``cidr`` as its service range, else why not."""
    net = parse_network(cidr)
    host_bits = net.max_prefixlen - net.prefixlen
    if host_bits > MAX_SERVICE_HOST_BITS:
        longest = net.max_prefixlen - MAX_SERVICE_HOST_BITS
        return (f"{cidr} has {host_bits} host bits; kube-apiserver accepts at most "
                f"{MAX_SERVICE_HOST_BITS} (a /{longest} or smaller range)")
    if net.num_addresses < 16:
        return f"{cidr} is too small: it needs room for the API and DNS service addresses (at least a /28)"
    return None


def assign_pod_cidrs(nodes, existing, pod_cidr, node_mask):
    """A pod range for every node of ``nodes`` (names, in inventory order).

    ``existing``: {node name: range it already has} (from the API: a node's range never changes once
    set). Nodes without one get the lowest free ranges, in order. Returns {name: range} for every
    node of ``nodes`` and of ``existing``. Raises NetworkError when the pod range cannot hold them, or
    when an existing range lies outside the pod range or is another node's too.
    """
    network = parse_network(pod_cidr, "pod range")
    capacity = node_cidr_capacity(pod_cidr, node_mask)
    taken, result = {}, {}
    for name, cidr in sorted(existing.items()):
        if not cidr:
            continue
        own = parse_network(cidr, f"pod range of node {name}")
        if not own.subnet_of(network):
            raise NetworkError(f"node {name} has the pod range {cidr}, outside the cluster's {pod_cidr}; a node's "
                               "range cannot change: remove the node from the cluster first")
        if str(own) in taken:
            raise NetworkError(f"nodes {taken[str(own)]} and {name} both have the pod range {cidr}")
        taken[str(own)] = name
        result[name] = str(own)
    index = 0
    for name in nodes:
        if name in result:
            continue
        while index < capacity and node_pod_cidr(pod_cidr, node_mask, index) in taken:
            index += 1
        if index >= capacity:
            raise NetworkError(f"the pod range {pod_cidr} holds {capacity} node ranges of /{node_mask}, "
                               f"and {len(set(nodes) | set(result))} nodes need one: choose a larger "
                               "kubeforge_pod_cidr or a longer kubeforge_node_cidr_mask")
        cidr = node_pod_cidr(pod_cidr, node_mask, index)
        taken[cidr] = name
        result[name] = cidr
    return result
