# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Ansible inventory (YAML) for the nodes of a test bed cluster.

Written without a YAML library: every scalar is emitted as a JSON string, which YAML reads as a
double-quoted string, so the output parses the same with any YAML 1.1 or 1.2 loader.
"""

import json

from .layout import INVENTORY_GROUPS, LayoutError, validate_cluster_name

SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
PYTHON_INTERPRETER = "/usr/bin/python3"


def _q(value):
    return json.dumps(str(value))


def render_inventory(cluster, hosts, private_key_file):
    """Return the inventory text.

    ``hosts`` is a list of mappings with ``name``, ``address``, ``suite`` and ``groups`` (a list
    of kube_control_plane / kube_node / etcd), in the order they should appear.
    """
    validate_cluster_name(cluster)
    seen = set()
    for host in hosts:
        if host["name"] in seen:
            raise LayoutError(f"host {host['name']!r} appears twice")
        seen.add(host["name"])
        for group in host["groups"]:
            if group not in INVENTORY_GROUPS:
                raise LayoutError(f"host {host['name']!r}: unknown group {group!r}")
        if not host.get("address"):
            raise LayoutError(f"host {host['name']!r} has no address")

    lines = [
        f"# Test bed cluster {cluster!s}: written by `hack/testbed up`, rewritten on every run.",
        "all:",
        "  vars:",
        f"    ansible_user: {_q('root')}",
        f"    ansible_ssh_private_key_file: {_q(private_key_file)}",
        f"    ansible_ssh_common_args: {_q(SSH_COMMON_ARGS)}",
        f"    ansible_python_interpreter: {_q(PYTHON_INTERPRETER)}",
        f"    testbed_cluster: {_q(cluster)}",
    ]
    if hosts:
        lines.append("  hosts:")
        for host in hosts:
            lines += [
                f"    {host['name']}:",
                f"      ansible_host: {_q(host['address'])}",
                f"      ip: {_q(host['address'])}",
                f"      testbed_suite: {_q(host['suite'])}",
            ]
    else:
        lines.append("  hosts: {}")
    lines.append("  children:")
    for group in INVENTORY_GROUPS:
        members = [host["name"] for host in hosts if group in host["groups"]]
        if members:
            lines.append(f"    {group}:")
            lines.append("      hosts:")
            lines += [f"        {name}: {{}}" for name in members]
        else:
            lines.append(f"    {group}: {{}}")
    lines += [
        "    k8s_cluster:",
        "      children:",
        "        kube_control_plane: {}",
        "        kube_node: {}",
    ]
    return "\n".join(lines) + "\n"
