# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The inventory's settings of the Kubernetes components, checked on the controller before any host changes.

Part of the inventory check (``inventory_check.check_inventory``): flags of kube-apiserver,
kube-controller-manager, kube-scheduler and kubelet against the flags the programs of the target
minor accept (``schemas/kubernetes_programs.py``, read from their ``--help``); configuration
overrides through the same schemas ``component_config`` writes them with; feature gates and
admission plugins against the target minor; the API server's extra SANs. Only what the inventory
sets is checked: the roles' own defaults are tested with the roles.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_config, flags
from ansible_collections.kubeforge.cluster.plugins.module_utils.component_config import did_you_mean
from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import minor_of
from ansible_collections.kubeforge.cluster.plugins.module_utils.schemas.kubernetes_programs import PROGRAMS, RELEASES

# variable -> program whose flags it holds
FLAG_VARIABLES = {
    "control_plane_apiserver_flags": "kube-apiserver",
    "control_plane_controller_manager_flags": "kube-controller-manager",
    "control_plane_scheduler_flags": "kube-scheduler",
    "node_kubelet_flags": "kubelet",
}
# variable -> configuration kind its overrides are merged into
CONFIG_VARIABLES = {
    "node_kubelet_config": "KubeletConfiguration",
    "node_kube_proxy_config": "KubeProxyConfiguration",
    "control_plane_scheduler_config": "KubeSchedulerConfiguration",
}
# Flags the roles set from settings of their own: setting them through the flag dicts would make two
# sources of one value (the role's variable wins silently, or the flag does), so they are refused.
OWNED_FLAGS = {
    "kube-apiserver": {
        "enable-admission-plugins": "control_plane_admission_plugins",
        "feature-gates": "control_plane_feature_gates",
        "encryption-provider-config": "control_plane_encryption",
        "audit-policy-file": "control_plane_audit_log",
        "admission-control-config-file": "control_plane_pod_security",
        "authentication-config": "control_plane_anonymous_paths",
    },
    "kube-controller-manager": {"feature-gates": "control_plane_feature_gates"},
    "kube-scheduler": {"feature-gates": "control_plane_feature_gates", "config": "control_plane_scheduler_config"},
    "kubelet": {"config": "node_kubelet_config"},
}
# Admission plugins that undo Pod Security or do not exist any more, and why.
ADMISSION_CONFLICTS = {
    "AlwaysAdmit": "admits every request, which makes every other admission check (PodSecurity among them) moot",
    "PodSecurityPolicy": "was removed in Kubernetes 1.25; PodSecurity admission replaces it",
    "SecurityContextDeny": "was removed in Kubernetes 1.30; PodSecurity admission replaces it",
}
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
ROLE_VARIABLE_PREFIXES = ("control_plane_", "node_", "pki_apiserver_", "addons_", "network_")
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def programs(version):
    """What the programs of ``version``'s minor accept (with ``release``, the build they were read
    from), or None for a minor not read here."""
    minor = minor_of(version)
    return dict(PROGRAMS[minor], release=RELEASES[minor]) if minor in PROGRAMS else None


def check_components(hosts, settings, report):
    """Every check of this file, for the variables ``hosts`` (name -> variables) set."""
    facts = programs(settings.get("kubeforge_kubernetes_version"))
    for name, where, value in values_by_host(hosts, FLAG_VARIABLES):
        _check_flags(name, where, value, FLAG_VARIABLES[name], _allow_unknown(hosts, where), facts, report)
    for name, where, value in values_by_host(hosts, CONFIG_VARIABLES):
        _check_config(name, where, value, CONFIG_VARIABLES[name], facts, report)
    for name, where, value in values_by_host(hosts, ["control_plane_feature_gates"]):
        _check_feature_gates(name, where, value, facts, report)
    for name, where, value in values_by_host(hosts, ["control_plane_admission_plugins"]):
        _check_admission_plugins(name, where, value, facts, report)
    for name, where, value in values_by_host(hosts, ["control_plane_pod_security"]):
        _check_pod_security(name, where, value, report)
    for name, where, value in values_by_host(hosts, ["control_plane_apiserver_flags"]):
        if isinstance(value, dict):
            _check_disabled_pod_security(name, value, report)
    for name, where, value in values_by_host(hosts, ["pki_apiserver_extra_sans"]):
        _check_sans(name, where, value, report)


def values_by_host(hosts, names):
    """(name, where, value) for each distinct value a variable has among ``hosts``; ``where`` names
    the hosts (these are per-host variables: a worker may carry its own kubelet settings)."""
    for name in names:
        seen = {}
        for host in sorted(hosts):
            if name in hosts[host]:
                seen.setdefault(repr(hosts[host][name]), (hosts[host][name], []))[1].append(host)
        for value, where in seen.values():
            yield name, where, value


def host_subject(name, where):
    hosts = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
    return f"{name} (on {hosts})"


def _allow_unknown(hosts, where):
    value = hosts[where[0]].get("control_plane_flags_allow_unknown") or []
    return [str(v).lstrip("-") for v in value] if isinstance(value, list) else []


def _check_flags(name, where, value, program, allow, facts, report):
    subject = host_subject(name, where)
    if not isinstance(value, dict):
        report.error(subject, f"must be a mapping of flag names to values, got {type(value).__name__}",
                     "expected e.g. {profiling: false}")
        return
    known = set(facts["flags"][program]) if facts else flags.known_flags(program)
    for flag in sorted(value, key=str):
        bare = str(flag).lstrip("-")
        owner = OWNED_FLAGS.get(program, {}).get(bare)
        if owner:
            report.error(f"{name}.{bare}", f"is set by the role from {owner}", f"set {owner} instead")
        elif bare not in known and bare not in allow:
            hint = did_you_mean(bare, ["--" + k for k in known])
            release = f"{program} {facts['release']}" if facts else program
            report.error(f"{name}.{bare}", f"is not a flag of {release}{hint}",
                         "a flag name without dashes, or list it in control_plane_flags_allow_unknown")
        else:
            try:
                flags.render_value(value[flag], bare)
            except flags.FlagError as exc:
                report.error(f"{name}.{bare}", "; ".join(exc.errors))


def _check_config(name, where, value, kind, facts, report):
    subject = host_subject(name, where)
    if not isinstance(value, dict):
        report.error(subject, f"must be a mapping of {kind} fields, got {type(value).__name__}")
        return
    try:
        component_config.prepare(kind, overrides=value)
    except component_config.ConfigError as exc:
        for error in exc.errors:
            report.error(subject, error.replace(f"{kind}: ", "", 1))
    gates = value.get("featureGates")
    if isinstance(gates, dict):
        _check_feature_gates(f"{name}.featureGates", where, gates, facts, report)


def _check_feature_gates(name, where, value, facts, report):
    subject = host_subject(name, where)
    if not isinstance(value, dict):
        report.error(subject, f"must map feature gate names to true or false, got {type(value).__name__}")
        return
    known = (facts or {}).get("feature_gates") or {}
    for gate in sorted(value, key=str):
        if not isinstance(value[gate], bool):
            report.error(f"{name}.{gate}", f"{value[gate]!r} is not true or false")
        if known and gate not in known:
            report.error(f"{name}.{gate}", f"is not a feature gate of Kubernetes {facts['release']}"
                         + did_you_mean(str(gate), known),
                         "a gate of the target release (kube-apiserver --help lists them), or remove it")


def _check_admission_plugins(name, where, value, facts, report):
    subject = host_subject(name, where)
    if not isinstance(value, list):
        report.error(subject, f"must be a list of admission plugin names, got {type(value).__name__}")
        return
    known = set((facts or {}).get("admission_plugins") or [])
    for plugin in value:
        if plugin in ADMISSION_CONFLICTS:
            report.error(subject, f"{plugin} {ADMISSION_CONFLICTS[plugin]}", "remove it from the list")
        elif known and plugin not in known:
            report.error(subject, f"{plugin!r} is not an admission plugin of kube-apiserver {facts['release']}"
                         + did_you_mean(str(plugin), known))


def _check_pod_security(name, where, value, report):
    subject = host_subject(name, where)
    if not isinstance(value, dict):
        report.error(subject, "must be a mapping with enforce, audit, warn and exempt_namespaces")
        return
    unknown = sorted(set(value) - {"enforce", "audit", "warn", "exempt_namespaces"})
    if unknown:
        report.error(subject, f"has unknown keys {', '.join(map(str, unknown))}",
                     "expected enforce, audit, warn and exempt_namespaces")
    for mode in ("enforce", "audit", "warn"):
        if mode in value and value[mode] not in POD_SECURITY_LEVELS:
            report.error(f"{name}.{mode}", f"{value[mode]!r} is not a Pod Security level",
                         f"expected one of: {', '.join(POD_SECURITY_LEVELS)}")


def _check_disabled_pod_security(name, value, report):
    disabled = value.get("disable-admission-plugins") or value.get("--disable-admission-plugins")
    if isinstance(disabled, str):
        disabled = disabled.split(",")
    if isinstance(disabled, list) and "PodSecurity" in [str(p).strip() for p in disabled]:
        report.error(f"{name}.disable-admission-plugins",
                     "turns PodSecurity admission off while control_plane_pod_security configures it",
                     "to admit every pod, set control_plane_pod_security.enforce: privileged instead")


def _check_sans(name, where, value, report):
    subject = host_subject(name, where)
    if not isinstance(value, list):
        report.error(subject, f"must be a list of DNS names and IP addresses, got {type(value).__name__}")
        return
    for san in value:
        text = str(san).strip()
        try:
            ipaddress.ip_address(text)
            continue
        except ValueError:
            pass
        if not (_DNS_NAME.match(text) and len(text) <= 253) or re.match(r"^[0-9.]+$", text):
            report.error(subject, f"{san!r} is neither an IP address nor a lowercase DNS name",
                         "expected e.g. api.example.com, *.example.com or 192.0.2.10")
