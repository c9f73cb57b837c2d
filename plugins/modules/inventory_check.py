#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: inventory_check
short_description: Validate the whole inventory on the controller before any host is contacted
version_added: 0.1.0
description:
  - Runs on the controller only (an action plugin); no module runs on any host and no connection is
    opened, so it also works when the hosts do not exist yet.
  - Reads the groups C(kube_control_plane), C(kube_node), C(etcd), C(k8s_cluster) and each cluster
    host's C(kubeforge_*) variables, C(ip) and C(ansible_host), and reports every error at once,
    each naming the host or variable, the rule, and what would be accepted.
  - Checks the groups (a control plane, an odd number of etcd members, every node in
    C(k8s_cluster)), host names (lowercase RFC 1123), duplicate addresses, the pod and service
    ranges (valid, not overlapping each other or a host, large enough for every node, a service
    range kube-apiserver accepts), the Kubernetes and component versions against the versions
    table, the runtime and network plugin, and C(kubeforge_*) names that are not settings.
  - Returns every cluster-wide setting with its default applied.
options:
  table_file:
    description: The versions table (C(versions.yml) at the top of the collection).
    type: path
  table:
    description: The versions table as data, instead of I(table_file).
    type: dict
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Reads only.
"""

EXAMPLES = r"""
- name: Check the inventory (controller only)
  kubeforge.cluster.inventory_check:
    table_file: "{{ role_path }}/../../versions.yml"
  run_once: true
  register: inventory
"""

RETURN = r"""
settings:
  description: Every cluster-wide setting, with defaults applied and versions resolved.
  returned: success
  type: dict
  sample:
    kubeforge_kubernetes_version: 1.36.4
    kubeforge_pod_cidr: 10.233.64.0/18
    kubeforge_etcd_version: 3.6.9
errors:
  description: Every error found.
  returned: always
  type: list
  elements: str
  sample: ["group etcd: has 2 members; ..."]
hosts:
  description: How many hosts the cluster groups hold.
  returned: always
  type: int
  sample: 6
"""
