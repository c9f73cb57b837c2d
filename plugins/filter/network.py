# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Address filters for inventories and templates: thin wrappers over module_utils/network.py.

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import host_facts, network


def _call(name, func, *args):
    try:
        return func(*args)
    except (network.NetworkError, ValueError, TypeError) as exc:
        raise AnsibleFilterError('%s: %s' % (name, exc))


def service_ip(cidr):
    """The ClusterIP of the kubernetes service: the first address of the service range."""
    return _call('service_ip', network.service_ip, cidr)


def dns_ip(cidr):
    """The cluster DNS service address: the tenth address of the service range."""
    return _call('dns_ip', network.dns_ip, cidr)


def cidr_overlaps(cidr, other):
    """Whether two ranges share an address."""
    return _call('cidr_overlaps', network.overlaps, cidr, other)


def cidr_contains(cidr, address):
    """Whether ``address`` lies in ``cidr``."""
    return _call('cidr_contains', network.contains, cidr, address)


def node_pod_cidr(pod_cidr, node_mask, index):
    """The ``index``-th (0-based) node range of prefix ``node_mask`` inside ``pod_cidr``."""
    return _call('node_pod_cidr', network.node_pod_cidr, pod_cidr, node_mask, index)


def network_switches(configs_by_host, wanted):
    """``["host: why", ...]`` for the hosts whose CNI configurations (``{host: [names] or None}``,
    the host facts' ``cni_configs``) show another pod network than ``wanted``."""
    out = []
    for host, configs in (configs_by_host or {}).items():
        why = host_facts.network_switch_error(host_facts.network_in_use(configs or []), wanted)
        if why:
            out.append(f"{host} {why}")
    return out


class FilterModule:
    """kubeforge.cluster address filters."""

    def filters(self):
        return {
            'service_ip': service_ip,
            'dns_ip': dns_ip,
            'cidr_overlaps': cidr_overlaps,
            'cidr_contains': cidr_contains,
            'node_pod_cidr': node_pod_cidr,
            'network_switches': network_switches,
        }
