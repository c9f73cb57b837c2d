"""The addons role's settings, checked with the inventory before any host changes."""

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import addon_check
from ansible_collections.kubeforge.cluster.plugins.module_utils.inventory_check import Report


def errors(variables, settings=None, hosts=("cp1", "w1")):
    report = Report()
    addon_check.check({host: dict(variables) for host in hosts}, settings or {}, report)
    return report.errors


@pytest.mark.parametrize("prefix", sorted(addon_check.ROLES))
def test_the_role_defaults_pass(prefix):
    import os

    import yaml
    spec = addon_check.ROLES[prefix][1]
    with open(os.path.join(os.path.dirname(spec), "..", "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    assert set(defaults) == set(addon_check.role_options(prefix))
    assert errors(defaults) == []


@pytest.mark.parametrize("variables, expected", [
    ({"addons_coredns_enable": True},
     "addons_coredns_enable (on cp1, w1): is not a setting of the addons role; did you mean addons_coredns_enabled"),
    ({"addons_flannel": True}, "addons_flannel (on cp1, w1): is not a setting of the addons role; expected one of: "),
    ({"addons_dns_upstreams": ["dns.example.com"]}, "'dns.example.com' is not an IP address"),
    ({"addons_dns_upstreams": ["192.0.2.53:70000"]}, "port 70000 is outside 1-65535"),
    ({"addons_dns_upstreams": "192.0.2.53"}, "'192.0.2.53' must be a list, got str"),
    ({"addons_coredns_replicas": 0}, "must be at least 1"),
    ({"addons_coredns_replicas": "two"}, "'two' is not an integer"),
    ({"addons_coredns_enabled": "maybe"}, "'maybe' is not a boolean"),
    ({"addons_metrics_server_resolution": "15 seconds"}, "'15 seconds' is not a duration"),
    ({"addons_local_path_dir": "volumes"}, "'volumes' is not an absolute path"),
    ({"network_flannel_backnd": "vxlan"},
     "network_flannel_backnd (on cp1, w1): is not a setting of the network role; did you mean network_flannel_backend"),
    ({"network_flannel_backend": "udp"}, "network_flannel_backend (on cp1, w1): 'udp' is not offered; expected one of: vxlan"),
    ({"network_flannel_vni": 16777216}, "network_flannel_vni (on cp1, w1): 16777216 is outside 1-16777215"),
    ({"network_flannel_port": 0}, "network_flannel_port (on cp1, w1): 0 is outside 1-65535; expected a UDP port"),
    ({"network_bridge_mtu": "big"}, "'big' is not an integer"),
])
def test_bad_addon_settings_are_named(variables, expected):
    found = errors(variables)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize("upstream", ["192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:53"])
def test_resolver_addresses_are_accepted(upstream):
    assert addon_check.upstream_error(upstream) == ""


def test_image_overrides_are_checked_against_the_collection_table():
    found = errors({}, {"kubeforge_images": {"coredns": {"name": "registry.example.com/coredns"}}})
    assert found == ["kubeforge_images.coredns: gives neither a tag nor a digest; add tag (e.g. v1.14.2) or digest "
                     "(sha256:<64 hex>), or both"]
