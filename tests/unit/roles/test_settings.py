# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The cluster-wide settings: one documented home, and the sample inventory in step with it."""

from __future__ import annotations

import os

import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import inventory_check as ic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SAMPLE = os.path.join(ROOT, "inventory", "sample", "group_vars", "all", "kubeforge.yml")


def spec_options():
    with open(ic.SETTINGS_SPEC, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["argument_specs"]["settings"]["options"]


def test_the_sample_inventory_lists_every_setting_with_its_default():
    with open(SAMPLE, encoding="utf-8") as handle:
        sample = yaml.safe_load(handle)
    assert sorted(sample) == sorted(spec_options())
    for name, value in sample.items():
        assert value == ic.SETTINGS[name][0], name


def test_every_setting_is_documented_with_a_type_and_a_description():
    for name, option in spec_options().items():
        assert option.get("type") in ("str", "int", "bool", "dict"), name
        assert option.get("description"), name
        if ic.SETTING_KINDS[name] == "choice":
            assert option.get("choices"), name
            assert option.get("default") in option["choices"], name


def test_the_checks_take_their_defaults_from_the_documented_home():
    groups = {"kube_control_plane": ["cp1"], "kube_node": [], "etcd": ["cp1"], "k8s_cluster": ["cp1"]}
    _errors, _warnings, settings = ic.check_inventory(groups, {"cp1": {"ansible_host": "192.0.2.1"}})
    for name, option in spec_options().items():
        if "default" in option:
            assert settings[name] == option["default"], name
