# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Inventory validation: every input error at once, before any host is contacted.

Pure Python (standard library; PyYAML on the controller to read the settings' documented
defaults). The ``inventory_check`` action plugin collects the
inventory (groups, each host's variables) and calls :func:`check_inventory`; unit tests call it
directly with plain dicts.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping

from ansible_collections.kubeforge.cluster.plugins.module_utils import addon_check, component_check, network

CLUSTER_GROUPS = ("kube_control_plane", "kube_node", "etcd", "k8s_cluster")

# The cluster-wide settings are documented, with their defaults, types and choices, in one place:
# the ``settings`` entry point of roles/preflight/meta/argument_specs.yml (``ansible-doc -t role
# kubeforge.cluster.preflight``). Here is only how each one is checked. A setting without a default
# there is resolved from the versions table (component versions) or stays empty.
SETTING_KINDS = {
    "kubeforge_cluster_name": "name",
    "kubeforge_kubernetes_version": "version",
    "kubeforge_pod_cidr": "cidr",
    "kubeforge_service_cidr": "cidr",
    "kubeforge_node_cidr_mask": "int",
    "kubeforge_cluster_domain": "domain",
    "kubeforge_api_endpoint": "endpoint",
    "kubeforge_apiserver_port": "port",
    "kubeforge_container_runtime": "choice",
    "kubeforge_network_plugin": "choice",
    "kubeforge_files_mirror": "mirror",
    "kubeforge_download_mode": "choice",
    "kubeforge_download_cache_dir": "path",
    "kubeforge_download_checksums": "dict",
    "kubeforge_etcd_version": "version",
    "kubeforge_containerd_version": "version",
    "kubeforge_runc_version": "version",
    "kubeforge_cni_plugins_version": "version",
    "kubeforge_crictl_version": "version",
    "kubeforge_etcd_allow_even_members": "bool",
    "kubeforge_network_switch": "bool",
    "kubeforge_offline_images": "bool",
    "kubeforge_images": "images",  # checked by addon_check against images.yml
}

SETTINGS_SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "roles", "preflight", "meta", "argument_specs.yml")


def load_settings(path=SETTINGS_SPEC):
    """``(settings, choices)`` from the argument spec: name -> (default, kind, description), and
    name -> accepted values for the settings that have choices."""
    import yaml  # only the controller calls this, and ansible-core brings PyYAML there

    with open(path, encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["settings"]["options"]
    if set(options) != set(SETTING_KINDS):
        raise ValueError("%s and inventory_check.SETTING_KINDS name different settings: %s" % (
            path, ", ".join(sorted(set(options) ^ set(SETTING_KINDS)))))
    settings, choices = {}, {}
    for name, kind in SETTING_KINDS.items():
        option = options[name]
        description = option["description"]
        if isinstance(description, list):
            description = " ".join(description)
        settings[name] = (option.get("default"), kind, description)
        if option.get("choices"):
            choices[name] = tuple(option["choices"])
    return settings, choices


class _FromSpec(Mapping):
    """A read-only mapping filled from the argument spec on first use."""

    _loaded = None

    def __init__(self, part):
        self._part = part

    def _data(self):
        if _FromSpec._loaded is None:
            _FromSpec._loaded = load_settings()
        return _FromSpec._loaded[self._part]

    def __getitem__(self, name):
        return self._data()[name]

    def __iter__(self):
        return iter(self._data())

    def __len__(self):
        return len(self._data())


# name: (default, kind, description), in the order of SETTING_KINDS
SETTINGS = _FromSpec(0)
# name: accepted values, for the settings of kind "choice"
CHOICES = _FromSpec(1)

# settings whose default comes from the versions table, and the table's component name
VERSION_COMPONENTS = {
    "kubeforge_etcd_version": "etcd",
    "kubeforge_containerd_version": "containerd",
    "kubeforge_runc_version": "runc",
    "kubeforge_cni_plugins_version": "cni_plugins",
    "kubeforge_crictl_version": "crictl",
}

# variables the collection reads besides SETTINGS, so a typo among kubeforge_* names can be told
# apart from a name that is meant (these are per-host or per-run, not cluster-wide)
OTHER_KNOWN = frozenset({
    "kubeforge_host",
    "kubeforge_admin_conf_dir",
    "kubeforge_reset_confirm",
    "kubeforge_allow_downgrade",
    "kubeforge_upgrade_serial",
    "kubeforge_bundle_dir",
    "kubeforge_bundle_architectures",
    "kubeforge_bundle_kubernetes_versions",
})

_RFC1123_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_MISSING = object()


class Report:
    """Collects errors (and warnings) in the order they are found."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, subject, rule, accepted=None):
        msg = f"{subject}: {rule}"
        if accepted:
            msg += f"; {accepted}"
        self.errors.append(msg)

    def warn(self, msg):
        self.warnings.append(msg)


def is_rfc1123_name(name):
    """A lowercase RFC 1123 subdomain, as Kubernetes requires of node names."""
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    return all(_RFC1123_LABEL.match(label) for label in name.split("."))


def parse_version(value):
    """'1.36.4' or 'v1.36.4' -> (1, 36, 4); None when not of that form."""
    match = _VERSION.match(str(value).strip()) if value is not None else None
    return tuple(int(p) for p in match.groups()) if match else None


def _suggest(name, candidates):
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f"did you mean {close[0]}?" if close else None


def _host_address(hostvars):
    """The address used inside the cluster: ``ip``, else ``ansible_host`` when it is an address."""
    for key in ("ip", "ansible_host"):
        value = hostvars.get(key)
        if value in (None, ""):
            continue
        try:
            return key, ipaddress.ip_address(str(value).strip())
        except ValueError:
            if key == "ip":
                return key, str(value)
    return None, None


def _as_int(value):
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    return None


def _component_versions(table, component, arch="amd64"):
    """Versions the table (plus user checksum overrides) can install for ``component``."""
    comp = (table.get("components") or {}).get(component) or {}
    return set((comp.get("checksums") or {}).get(arch, {}) or {})


def resolve_settings(hosts, report):
    """Cluster-wide values, taken from the hosts' variables; a value that differs between hosts
    is an error (it would configure two clusters in one)."""
    values = {}
    for name in SETTINGS:
        seen = {}
        for host in sorted(hosts):
            value = hosts[host].get(name, _MISSING)
            if value is _MISSING:
                continue
            seen.setdefault(repr(value), (value, []))[1].append(host)
        unset = [h for h in sorted(hosts) if name not in hosts[h]]
        if seen and unset:
            seen.setdefault("default", ("(default)", []))[1].extend(unset)
        if len(seen) > 1:
            parts = "; ".join(f"{', '.join(h[:3])}{'...' if len(h) > 3 else ''} = "
                              f"{v if v == '(default)' else repr(v)}" for v, h in seen.values())
            report.error(name, f"differs between hosts ({parts})",
                         "set it once for the whole cluster, e.g. in group_vars/all")
        if seen and not unset:
            values[name] = next(iter(seen.values()))[0]
    return values


def check_inventory(groups, hosts, table=None, overrides_arch="amd64"):
    """Validate the inventory.

    ``groups``: group name -> list of host names (Ansible's ``groups``).
    ``hosts``: host name -> that host's variables (only the keys used here are needed).
    ``table``: the versions table ({'supported_kubernetes_minors': [...], 'default_kubernetes_version',
    'kubernetes_defaults': {minor: {component: version}}, 'components': {name: {'checksums': ...}}}).

    Returns ``(errors, warnings, settings)`` where settings holds every cluster-wide setting with
    defaults applied.
    """
    report = Report()
    table = table or {}
    cluster_hosts = set()
    for group in CLUSTER_GROUPS:
        cluster_hosts.update(groups.get(group) or [])
    _check_groups(groups, report)
    _check_unknown_variables(hosts, cluster_hosts, report)
    given = resolve_settings({h: hosts.get(h, {}) for h in cluster_hosts}, report)
    given = {name: value for name, value in given.items() if value is not None}  # ~ means the default
    settings = {name: given.get(name, default) for name, (default, _k, _d) in SETTINGS.items()}
    _check_setting_values(settings, given, report)
    _check_versions(settings, given, table, report)
    _check_hosts(groups, hosts, cluster_hosts, report)
    _check_networks(settings, groups, hosts, cluster_hosts, report)
    _check_etcd(groups, settings, report)
    component_check.check_components({h: hosts.get(h, {}) for h in cluster_hosts}, settings, report)
    addon_check.check({h: hosts.get(h, {}) for h in cluster_hosts}, settings, report)
    return report.errors, report.warnings, settings


def _check_groups(groups, report):
    control_planes = groups.get("kube_control_plane") or []
    if not control_planes:
        report.error("group kube_control_plane", "has no host; a cluster needs at least one control plane",
                     "add one host (three for high availability)")
    k8s = set(groups.get("k8s_cluster") or [])
    for group in ("kube_control_plane", "kube_node"):
        missing = sorted(set(groups.get(group) or []) - k8s)
        for host in missing:
            report.error(f"host {host}", f"is in {group} but not in k8s_cluster",
                         f"make {group} a child group of k8s_cluster")


def _check_unknown_variables(hosts, cluster_hosts, report):
    known = set(SETTINGS) | OTHER_KNOWN
    unknown = {}
    for host in sorted(cluster_hosts):
        for name in hosts.get(host, {}):
            if name.startswith("kubeforge_") and name not in known:
                unknown.setdefault(name, []).append(host)
    for name, where in sorted(unknown.items()):
        hint = _suggest(name, sorted(known))
        report.error(name, f"is not a kubeforge setting (set for {where[0]}"
                     f"{' and %d more' % (len(where) - 1) if len(where) > 1 else ''})",
                     hint or "see inventory/sample/group_vars/all/kubeforge.yml for the settings")


def _check_setting_values(settings, given, report):
    for name, (_default, kind, _desc) in SETTINGS.items():
        value = settings[name]
        if kind == "choice" and value not in CHOICES[name]:
            report.error(name, f"{value!r} is not supported", f"expected one of: {', '.join(CHOICES[name])}")
        elif kind == "int" and _as_int(value) is None:
            report.error(name, f"{value!r} is not an integer", "expected e.g. 24")
        elif kind == "port":
            port = _as_int(value)
            if port is None or not 1 <= port <= 65535:
                report.error(name, f"{value!r} is not a TCP port", "expected 1-65535, e.g. 6443")
        elif kind == "bool" and _as_bool(value) is None:
            report.error(name, f"{value!r} is not a boolean", "expected true or false")
        elif kind == "dict" and not isinstance(value, dict):
            report.error(name, f"must be a mapping, got {type(value).__name__}",
                         "expected {component: {version: {arch: 'sha256:<hex>'}}}")
        elif kind == "name" and not (is_rfc1123_name(value) and "." not in str(value)):
            report.error(name, f"{value!r} is not a lowercase RFC 1123 label",
                         "use lowercase letters, digits and '-', at most 63 characters")
        elif kind == "domain" and not is_rfc1123_name(value):
            report.error(name, f"{value!r} is not a lowercase DNS domain", "expected e.g. cluster.local")
        elif kind == "endpoint" and value not in ("", None):
            _check_endpoint(name, value, report)
        elif kind == "mirror" and value not in ("", None):
            text = str(value)
            if not (re.match(r"^https?://[^/\s]+", text) or text.startswith("/")):
                report.error(name, f"{value!r} is neither an http(s) URL nor an absolute directory",
                             "expected e.g. https://mirror.example.com/files or /srv/kubeforge-bundle")
    checksums = settings["kubeforge_download_checksums"]
    if isinstance(checksums, dict):
        _check_checksum_overrides(checksums, report)
    if _as_bool(settings.get("kubeforge_offline_images")):
        if not settings.get("kubeforge_files_mirror"):
            report.error("kubeforge_offline_images", "is true, but kubeforge_files_mirror names no bundle to import from",
                         "set kubeforge_files_mirror to the offline bundle (a directory here or its http(s) URL)")
        for key in addon_check.undigested_images(settings.get("kubeforge_images")):
            report.error(f"kubeforge_images.{key}", "has no digest, and kubeforge_offline_images imports images "
                         "checked by digest only", "add its digest (sha256:<64 hex>) to the override")


def _check_endpoint(name, value, report):
    text = str(value).strip()
    match = re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):(\d+)$", text)
    if not match:
        report.error(name, f"{value!r} is not host:port", "expected e.g. api.example.com:6443 or 192.0.2.10:6443")
        return
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        report.error(name, f"port {port} is outside 1-65535", "expected e.g. api.example.com:6443")


def _check_checksum_overrides(checksums, report):
    for component, versions in checksums.items():
        if not isinstance(versions, dict):
            report.error(f"kubeforge_download_checksums.{component}", "must map versions to {arch: sha256}")
            continue
        for version, arches in versions.items():
            if not isinstance(arches, dict):
                report.error(f"kubeforge_download_checksums.{component}.{version}", "must map arch to sha256")
                continue
            for arch, digest in arches.items():
                text = str(digest)
                if text.startswith("sha256:"):
                    text = text[len("sha256:"):]
                if not re.match(r"^[0-9a-f]{64}$", text):
                    report.error(f"kubeforge_download_checksums.{component}.{version}.{arch}",
                                 f"{digest!r} is not a sha256", "expected 64 lowercase hex digits, optionally after 'sha256:'")


def _check_versions(settings, given, table, report):
    supported = [str(m) for m in table.get("supported_kubernetes_minors") or []]
    name = "kubeforge_kubernetes_version"
    if settings[name] is None:
        settings[name] = table.get("default_kubernetes_version")
    version = parse_version(settings[name])
    if version is None:
        report.error(name, f"{settings[name]!r} is not a version", "expected X.Y.Z, e.g. 1.36.4")
        minor = None
    else:
        settings[name] = "%d.%d.%d" % version
        minor = "%d.%d" % version[:2]
        if supported and minor not in supported:
            report.error(name, f"{settings[name]} is not supported (minor {minor})",
                         f"supported minors: {', '.join(supported)}")
        elif table:
            known = _component_versions(table, "kubelet") | _overridden(settings, "kubelet")
            if known and settings[name] not in known:
                report.error(name, f"{settings[name]} has no known checksum",
                             f"known {minor} releases: {', '.join(_sorted_versions(v for v in known if v.startswith(minor + '.')))}"
                             " (or add it to kubeforge_download_checksums)")
    defaults = (table.get("kubernetes_defaults") or {}).get(minor) or {}
    for setting, component in VERSION_COMPONENTS.items():
        if settings[setting] is None:
            settings[setting] = defaults.get(component)
            if settings[setting] is None:
                if table and minor in [str(m) for m in table.get("supported_kubernetes_minors") or []]:
                    report.error(setting, f"has no default for Kubernetes {minor}", "set it explicitly")
                continue
        parsed = parse_version(settings[setting])
        if parsed is None:
            report.error(setting, f"{settings[setting]!r} is not a version", "expected X.Y.Z")
            continue
        settings[setting] = "%d.%d.%d" % parsed
        if table and setting in given:
            known = _component_versions(table, component) | _overridden(settings, component)
            if settings[setting] not in known:
                newest = _sorted_versions(known)[-5:]
                report.error(setting, f"{settings[setting]} is not in the versions table and has no checksum override",
                             f"known: {', '.join(newest)}{' ...' if len(known) > 5 else ''}; or add "
                             f"kubeforge_download_checksums.{component}.{settings[setting]}")


def _overridden(settings, component):
    overrides = settings.get("kubeforge_download_checksums")
    if not isinstance(overrides, dict):
        return set()
    versions = overrides.get(component)
    return {str(v) for v in versions} if isinstance(versions, dict) else set()


def _sorted_versions(versions):
    return sorted(versions, key=lambda v: parse_version(v) or (0, 0, 0))


def _check_hosts(groups, hosts, cluster_hosts, report):
    seen = {}
    for host in sorted(cluster_hosts):
        if not is_rfc1123_name(host):
            fixed = re.sub(r"[^a-z0-9.-]", "-", host.lower()).strip("-.")
            report.error(f"host {host}", "name is not a lowercase RFC 1123 name (Kubernetes uses it as the node name)",
                         f"use lowercase letters, digits, '-' and '.', e.g. {fixed or 'node-1'}")
        hostvars = hosts.get(host, {})
        key, address = _host_address(hostvars)
        if isinstance(address, str):
            report.error(f"host {host}", f"ip {address!r} is not an IP address", "expected e.g. 192.0.2.11")
            continue
        if address is not None:
            seen.setdefault(address, []).append(host)
    for address, names in sorted(seen.items(), key=lambda item: str(item[0])):
        if len(names) > 1:
            report.error(f"hosts {', '.join(names)}", f"share the address {address}",
                         "give each host its own ansible_host or ip")


def _check_networks(settings, groups, hosts, cluster_hosts, report):
    nets = {}
    for name in ("kubeforge_pod_cidr", "kubeforge_service_cidr"):
        try:
            nets[name] = ipaddress.ip_network(str(settings[name]).strip(), strict=True)
        except ValueError as exc:
            report.error(name, f"{settings[name]!r} is not a valid CIDR ({exc})",
                         "expected a network address and prefix, e.g. 10.233.64.0/18")
    pod, svc = nets.get("kubeforge_pod_cidr"), nets.get("kubeforge_service_cidr")
    if pod and svc and pod.version == svc.version and pod.overlaps(svc):
        report.error("kubeforge_pod_cidr", f"{pod} overlaps kubeforge_service_cidr {svc}",
                     "choose ranges that do not overlap, e.g. 10.233.64.0/18 and 10.233.0.0/18")
    if svc:
        problem = network.service_range_error(str(svc))
        if problem:
            report.error("kubeforge_service_cidr", problem)
    mask = _as_int(settings["kubeforge_node_cidr_mask"])
    if pod and mask is not None:
        if mask <= pod.prefixlen:
            report.error("kubeforge_node_cidr_mask", f"/{mask} is not longer than kubeforge_pod_cidr's /{pod.prefixlen}",
                         f"expected a prefix between /{pod.prefixlen + 1} and /{pod.max_prefixlen - 2}")
        elif mask > pod.max_prefixlen - 2:
            report.error("kubeforge_node_cidr_mask", f"/{mask} leaves no room for pods",
                         f"expected at most /{pod.max_prefixlen - 2} (24 is usual for IPv4)")
        else:
            capacity = 2 ** (mask - pod.prefixlen)
            nodes = len(set(groups.get("k8s_cluster") or []))
            if nodes > capacity:
                report.error("kubeforge_pod_cidr",
                             f"{pod} holds {capacity} node ranges of /{mask}, fewer than the {nodes} hosts in k8s_cluster",
                             f"use a range of /{mask - (nodes - 1).bit_length()} or larger, or a longer kubeforge_node_cidr_mask")
    for host in sorted(cluster_hosts):
        _key, address = _host_address(hosts.get(host, {}))
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            continue
        for name, net in nets.items():
            if address.version == net.version and address in net:
                report.error(name, f"{net} contains the address {address} of host {host}",
                             "choose a range that no host address falls in")


def _check_etcd(groups, settings, report):
    members = groups.get("etcd") or []
    if not members:
        report.error("group etcd", "has no host; the cluster state needs at least one etcd member",
                     "add 1, 3 or 5 hosts (usually the control planes)")
    elif len(members) % 2 == 0:
        allow = _as_bool(settings["kubeforge_etcd_allow_even_members"])
        if not allow:
            report.error("group etcd", f"has {len(members)} members; an even number tolerates no more failures "
                         f"than {len(members) - 1} members and needs a larger quorum",
                         "use an odd number (1, 3, 5), or set kubeforge_etcd_allow_even_members: true "
                         "for a transition")


def normalize_table(table):
    """The parts of the versions table (versions.yml at the top of the collection) that the
    checks read, in the shape ``check_inventory`` takes."""
    if not isinstance(table, dict) or "__download_components" not in table:
        return table if isinstance(table, dict) else {}
    components = {}
    for name, spec in (table.get("__download_components") or {}).items():
        by_arch = {}
        for version, arches in ((spec or {}).get("checksums") or {}).items():
            for arch in arches or {}:
                by_arch.setdefault(arch, {})[str(version)] = arches[arch]
        for version in (spec or {}).get("versions") or []:
            for arch in table.get("__download_architectures") or ["amd64"]:
                by_arch.setdefault(arch, {})[str(version)] = "published"
        components[name] = {"checksums": by_arch}
    return {
        "supported_kubernetes_minors": [str(m) for m in table.get("__download_supported_kubernetes_minors") or []],
        "default_kubernetes_version": table.get("__download_default_kubernetes_version"),
        "kubernetes_defaults": {str(k): v for k, v in (table.get("__download_kubernetes_defaults") or {}).items()},
        "components": components,
    }
