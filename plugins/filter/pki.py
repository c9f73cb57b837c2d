# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the pki role: thin wrappers over module_utils/pki_catalog.py.

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import ca_rotation, network, pki_catalog


def pki_ca_plan(by_host, control_planes, play_hosts, rotating=False):
    """The CA host, the control planes that need the CA files, and every conflict."""
    try:
        found, unreachable = pki_catalog.read_found(dict(by_host))
        return pki_catalog.ca_plan(list(control_planes), list(play_hosts), found, unreachable, bool(rotating))
    except pki_catalog.PKIPlanError as exc:
        raise AnsibleFilterError("pki_ca_plan: %s" % exc)


def pki_host_certificates(host, hostvars, control_planes, nodes, settings):
    """Every certificate ``host`` holds, with its subject, names, paths and kubeconfig."""
    try:
        address = pki_catalog.host_address(hostvars[host], host)
        return pki_catalog.host_certificates(host, address, list(control_planes), list(nodes), dict(settings))
    except (KeyError, network.NetworkError, pki_catalog.PKIPlanError) as exc:
        raise AnsibleFilterError("pki_host_certificates: %s: %s" % (host, exc))


def pki_requests(hostvars, hosts, keys_var, control_planes, nodes, settings, validity_days, renew_before_days):
    """One list of certificate_batch requests per CA, from every host's certificates and key results."""
    specs, keys = {}, {}
    for host in hosts:
        specs[host] = pki_host_certificates(host, hostvars, control_planes, nodes, settings)
        registered = hostvars[host].get(keys_var) or {}
        by_path = {} if registered.get("failed") or registered.get("skipped") else {
            entry.get("path"): entry for entry in registered.get("private_keys") or []}
        keys[host] = {spec["name"]: by_path[spec["key_path"]] for spec in specs[host] if spec["key_path"] in by_path}
    return pki_catalog.batch_requests(specs, keys, validity_days, renew_before_days)


def pki_issued(specs, host, signed):
    """The certificates of ``specs`` (``host``'s catalogue entries) that the batch issued, in order."""
    try:
        return pki_catalog.issued(host, list(specs), dict(signed or {}))
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("pki_issued: %s: %s" % (host, exc))


def pki_rotation_files(cas):
    """The file names a rotation of each CA of ``cas`` ({cert, key} names) adds while both are trusted."""
    try:
        return [name for ca in cas for name in ca_rotation.next_paths(ca["cert"], ca["key"])]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("pki_rotation_files: each CA needs the names cert and key (%s)" % exc)


def pki_first_certificate(pem):
    """The first certificate of a PEM bundle (a CA's trust file: the signer), alone."""
    try:
        data = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
        return ca_rotation.first_certificate(data).decode("ascii")
    except (ca_rotation.RotationError, UnicodeError, TypeError) as exc:
        raise AnsibleFilterError("pki_first_certificate: %s" % exc)


class FilterModule:
    """kubeforge.cluster PKI filters."""

    def filters(self):
        return {
            "pki_ca_plan": pki_ca_plan,
            "pki_first_certificate": pki_first_certificate,
            "pki_issued": pki_issued,
            "pki_host_certificates": pki_host_certificates,
            "pki_requests": pki_requests,
            "pki_rotation_files": pki_rotation_files,
        }
