# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Inventory rendering of the test bed, read back with PyYAML and with Ansible itself."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from testbed.inventory import SSH_COMMON_ARGS, render_inventory
from testbed.layout import LayoutError, expand_spec

KEY = "/var/tmp/kubeforge-testbed/ssh/id_ed25519"


def hosts_for(cluster, spec, first=2):
    return [
        {"name": node.name, "address": f"10.88.0.{first + index}", "suite": node.suite, "groups": list(node.groups)}
        for index, node in enumerate(expand_spec(cluster, spec))
    ]


def test_probe_layout_round_trips_through_yaml():
    text = render_inventory("probe", hosts_for("probe", "3:cp+etcd@bookworm,2:worker@trixie"), KEY)
    data = yaml.safe_load(text)
    all_ = data["all"]
    assert all_["vars"] == {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": KEY,
        "ansible_ssh_common_args": SSH_COMMON_ARGS,
        "ansible_python_interpreter": "/usr/bin/python3",
        "testbed_cluster": "probe",
    }
    assert list(all_["hosts"]) == ["probe-cp1", "probe-cp2", "probe-cp3", "probe-w1", "probe-w2"]
    assert all_["hosts"]["probe-w2"] == {
        "ansible_host": "10.88.0.6",
        "ip": "10.88.0.6",
        "testbed_suite": "trixie",
    }
    children = all_["children"]
    assert list(children["kube_control_plane"]["hosts"]) == ["probe-cp1", "probe-cp2", "probe-cp3"]
    assert list(children["etcd"]["hosts"]) == ["probe-cp1", "probe-cp2", "probe-cp3"]
    assert list(children["kube_node"]["hosts"]) == ["probe-w1", "probe-w2"]
    assert children["k8s_cluster"] == {"children": {"kube_control_plane": {}, "kube_node": {}}}


def test_empty_groups_are_still_listed():
    data = yaml.safe_load(render_inventory("e", hosts_for("e", "3:etcd"), KEY))
    children = data["all"]["children"]
    assert children["kube_control_plane"] == {}
    assert children["kube_node"] == {}
    assert list(children["etcd"]["hosts"]) == ["e-etcd1", "e-etcd2", "e-etcd3"]


def test_no_hosts_at_all():
    data = yaml.safe_load(render_inventory("empty", [], KEY))
    assert data["all"]["hosts"] == {}
    assert set(data["all"]["children"]) == {"kube_control_plane", "kube_node", "etcd", "k8s_cluster"}


def test_awkward_values_are_quoted():
    odd_key = '/tmp/a dir: with "quotes" # and hash/key'
    data = yaml.safe_load(render_inventory("q", hosts_for("q", "1:cp"), odd_key))
    assert data["all"]["vars"]["ansible_ssh_private_key_file"] == odd_key


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([{"name": "a", "address": "10.0.0.1", "suite": "bookworm", "groups": ["etcd"]}] * 2, "appears twice"),
        ([{"name": "a", "address": "10.0.0.1", "suite": "bookworm", "groups": ["masters"]}], "unknown group 'masters'"),
        ([{"name": "a", "address": "", "suite": "bookworm", "groups": ["etcd"]}], "has no address"),
    ],
)
def test_invalid_hosts(hosts, message):
    with pytest.raises(LayoutError, match=message):
        render_inventory("x", hosts, KEY)


def _ansible_inventory():
    candidate = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    return candidate if os.path.exists(candidate) else shutil.which("ansible-inventory")


@pytest.mark.skipif(_ansible_inventory() is None, reason="ansible-inventory is not installed")
def test_ansible_reads_the_inventory(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(render_inventory("probe", hosts_for("probe", "2:cp+etcd,1:etcd,2:worker@trixie"), KEY))
    proc = subprocess.run(
        [_ansible_inventory(), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(
            os.environ, ANSIBLE_INVENTORY_UNPARSED_WARNING="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true"
        ),
    )
    data = json.loads(proc.stdout)
    assert sorted(data["kube_control_plane"]["hosts"]) == ["probe-cp1", "probe-cp2"]
    assert sorted(data["etcd"]["hosts"]) == ["probe-cp1", "probe-cp2", "probe-etcd1"]
    assert sorted(data["kube_node"]["hosts"]) == ["probe-w1", "probe-w2"]
    assert sorted(data["k8s_cluster"]["children"]) == ["kube_control_plane", "kube_node"]
    hostvars = data["_meta"]["hostvars"]["probe-w2"]
    assert hostvars["ansible_host"] == hostvars["ip"] == "10.88.0.6"
    assert hostvars["testbed_suite"] == "trixie"
    assert hostvars["ansible_user"] == "root"
