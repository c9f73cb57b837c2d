# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the etcd role: thin wrappers over module_utils/pki_catalog.py, the catalogue the pki
role's filters (pki.py) read too, for its certificates, and over module_utils/etcd_plan.py for
the plan's view of the inventory and what the plan decides from this run's results (the restart
order).

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_plan, pki_catalog


def pki_etcd_certificates(host, etcd_hosts, control_planes, info, extra_sans=()):
    """The etcd CA's certificates ``host`` holds (``info``: the etcd role's view of each member)."""
    try:
        member = dict(info).get(host) or {}
        return pki_catalog.etcd_certificates(host, host in etcd_hosts, host in control_planes,
                                             member.get("member_name"), member.get("address"), extra_sans)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("pki_etcd_certificates: %s: %s" % (host, exc))


def pki_etcd_requests(hostvars, members, keys_var, outside_keys, etcd_hosts, control_planes, info, extra_sans,
                      validity_days, renew_before_days):
    """The etcd CA's certificate_batch requests: the members' (each registered its key task, looped
    over its certificates, in ``keys_var``) and those of the control planes outside the etcd group
    (``outside_keys``: one looped task over those hosts, for their apiserver-etcd-client key)."""
    specs, keys = {}, {}
    for host in members:
        host_sans = hostvars[host].get("etcd_cert_extra_sans", extra_sans)
        specs[host] = pki_etcd_certificates(host, etcd_hosts, control_planes, info, host_sans)
        results = (hostvars[host].get(keys_var) or {}).get("results") or []
        keys[host] = {r["item"]["name"]: r for r in results if isinstance(r.get("item"), dict)}
    for result in (outside_keys or {}).get("results") or []:
        host = result.get("item")
        if host is None:
            continue
        specs[host] = [s for s in pki_etcd_certificates(host, etcd_hosts, control_planes, info)
                       if s["name"] == "apiserver-etcd-client"]
        keys[host] = {"apiserver-etcd-client": result}
    return pki_catalog.batch_requests(specs, keys, validity_days, renew_before_days).get("etcd", [])


def pki_etcd_outside_files(hosts, ca_read, signed):
    """The etcd CA certificate and the issued client certificates of the control planes outside the etcd group."""
    try:
        return pki_catalog.etcd_outside_files(list(hosts), dict(ca_read or {}), dict(signed or {}))
    except (pki_catalog.PKIPlanError, KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("pki_etcd_outside_files: %s" % exc)


def etcd_inventory(hostvars, etcd_hosts, peer_port, client_port, remove=""):
    """The member name, address and URLs of every etcd host (and of the one being removed)."""
    try:
        return etcd_plan.inventory(hostvars, list(etcd_hosts), peer_port, client_port, remove or "")
    except (TypeError, AttributeError) as exc:
        raise AnsibleFilterError("etcd_inventory: %s" % exc)


def etcd_restart_order(hostvars, order, play_hosts, probes, registered_vars, ignored_files=(), changed_on=()):
    """The running members to restart, in the plan's order, from what each one's tasks registered
    (``registered_vars``: {"files", "certificates", "ca", "binary", "started"}: variable names), and
    the hosts where a delegated task changed what etcd reads (``changed_on``)."""
    try:
        order, play_hosts = list(order or []), list(play_hosts)
        registered = {}
        for host in order:
            if host in play_hosts:
                facts = hostvars[host]
                registered[host] = {role: facts.get(name) for role, name in dict(registered_vars).items()}
        return etcd_plan.restart_order(
            order, play_hosts, dict(probes or {}), registered, list(ignored_files or []), list(changed_on or []))
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("etcd_restart_order: %s" % exc)


class FilterModule:
    """kubeforge.cluster etcd filters."""

    def filters(self):
        return {
            "etcd_inventory": etcd_inventory,
            "etcd_restart_order": etcd_restart_order,
            "pki_etcd_certificates": pki_etcd_certificates,
            "pki_etcd_outside_files": pki_etcd_outside_files,
            "pki_etcd_requests": pki_etcd_requests,
        }
