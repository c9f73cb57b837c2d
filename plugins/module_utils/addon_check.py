# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The inventory's addon settings and image overrides, checked on the controller before any host
changes (part of ``inventory_check.check_inventory``).

The addons role's variables (``addons_*``) are checked against its argument spec (an unknown name
is an error with the closest known ones), their types, and the DNS upstreams as addresses;
``kubeforge_images`` against the collection's image table (``images.yml``).
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_check, images
from ansible_collections.kubeforge.cluster.plugins.module_utils.component_config import did_you_mean

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADDONS_SPEC = os.path.join(_ROOT, "roles", "addons", "meta", "argument_specs.yml")
NETWORK_SPEC = os.path.join(_ROOT, "roles", "network", "meta", "argument_specs.yml")
IMAGE_TABLE = os.path.join(_ROOT, "images.yml")
# The roles whose variables are checked here: prefix -> (role, its argument specs).
ROLES = {"addons_": ("addons", ADDONS_SPEC), "network_": ("network", NETWORK_SPEC)}
# Integer settings with a range narrower than "not negative": name -> (lowest, highest, what).
RANGES = {
    "network_flannel_vni": (1, 16777215, "a VXLAN network identifier (24 bits)"),
    "network_flannel_port": (1, 65535, "a UDP port"),
    "network_flannel_rollout_timeout": (1, 86400, "seconds"),
}
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$")
_cache = {}


def _load(path, *keys):
    if path not in _cache:
        import yaml  # only the controller calls this, and ansible-core brings PyYAML there

        with open(path, encoding="utf-8") as handle:
            _cache[path] = yaml.safe_load(handle)
    data = _cache[path]
    for key in keys:
        data = data[key]
    return data


def addon_options():
    """name -> option spec of the addons role."""
    return role_options("addons_")


def role_options(prefix):
    """name -> option spec of the role whose variables start with ``prefix``."""
    return _load(ROLES[prefix][1], "argument_specs", "main", "options")


def image_table():
    return _load(IMAGE_TABLE, "images")


def upstream_error(value):
    """Why ``value`` is no resolver address (IP, IP:port, [IPv6]:port), or ''."""
    text = str(value).strip()
    host, port = text, None
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", text) or re.match(r"^([0-9.]+):(\d+)$", text)
    if match:
        host, port = match.group(1), match.group(2)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "is not an IP address (names cannot be resolved before DNS runs)"
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} is outside 1-65535"
    return ""


def _type_error(value, spec):
    kind = spec.get("type", "str")
    if kind == "bool":
        return "" if isinstance(value, bool) or str(value).lower() in ("true", "false", "yes", "no") else \
            "is not a boolean (expected true or false)"
    if kind == "int":
        try:
            number = int(str(value))
        except ValueError:
            return "is not an integer"
        return "" if number >= 0 else "must not be negative"
    if kind == "list":
        return "" if isinstance(value, list) else f"must be a list, got {type(value).__name__}"
    if kind in ("str", "path"):
        return "" if isinstance(value, (str, int, float)) else f"must be a string, got {type(value).__name__}"
    return ""


def check(hosts, settings, report):
    """Errors for every bad addon or network variable any host sets, and for kubeforge_images."""
    names = sorted({name for variables in hosts.values() for name in variables if str(name).startswith(tuple(ROLES))})
    for name, where, value in component_check.values_by_host(hosts, names):
        subject = component_check.host_subject(name, where)
        prefix = next(prefix for prefix in ROLES if name.startswith(prefix))
        options = role_options(prefix)
        if name not in options:
            hint = did_you_mean(name, sorted(options)).lstrip("; ")
            report.error(subject, f"is not a setting of the {ROLES[prefix][0]} role",
                         hint or f"expected one of: {', '.join(sorted(options))}")
            continue
        problem = _type_error(value, options[name])
        if problem:
            report.error(subject, f"{value!r} {problem}", str(options[name].get("description", ""))[:120])
            continue
        choices = options[name].get("choices")
        if choices and value not in choices:
            report.error(subject, f"{value!r} is not offered", f"expected one of: {', '.join(map(str, choices))}")
            continue
        if name in RANGES:
            low, high, what = RANGES[name]
            if not low <= int(str(value)) <= high:
                report.error(subject, f"{value} is outside {low}-{high}", f"expected {what}")
            continue
        if name == "addons_dns_upstreams":
            for item in value:
                why = upstream_error(item)
                if why:
                    report.error(subject, f"{item!r} {why}", "expected e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53")
        elif name == "addons_coredns_replicas" and int(str(value)) < 1:
            report.error(subject, "must be at least 1 (pods need cluster DNS)",
                         "turn CoreDNS off with addons_coredns_enabled: false instead")
        elif name == "addons_metrics_server_resolution" and not _DURATION.match(str(value)):
            report.error(subject, f"{value!r} is not a duration", "expected e.g. 15s or 1m")
        elif name == "addons_local_path_dir" and not str(value).startswith("/"):
            report.error(subject, f"{value!r} is not an absolute path", "expected e.g. /opt/local-path-provisioner")
    for subject, rule, accepted in images.check_overrides(settings.get("kubeforge_images") or {}, image_table()):
        report.error(subject, rule, accepted)


def undigested_images(overrides):
    """Keys of the images that, with ``overrides`` (kubeforge_images) applied, have no digest."""
    overrides = overrides if isinstance(overrides, dict) else {}
    return [key for key, entry in sorted(image_table().items())
            if not images.merged(entry, overrides.get(key) if isinstance(overrides.get(key), dict) else {})["digest"]]
