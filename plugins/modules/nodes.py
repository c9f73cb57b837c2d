#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nodes
short_description: Register nodes through the API with their pod ranges, labels and taints, or wait until they are Ready
version_added: 0.1.0
description:
  - Applies the labels, taints and (with O(pod_cidr)) the pod range of each node in O(nodes) with server-side
    apply, talking to the API server directly from the host the task runs on (a control plane). A node that
    is not registered yet is created with that state, so that it has its range and taints before its
    kubelet first reports; the kubelet then takes the object over as its own.
  - Pod ranges - a node that has one keeps it (the API refuses to change it); the others get the lowest free
    ranges of prefix O(node_cidr_mask) inside O(pod_cidr), in the order of O(order). All of them are returned
    in RV(pod_cidrs), for the nodes the task names and every other node the API knows.
  - Taints - the node gets the taints given, plus those Kubernetes itself manages (C(node.kubernetes.io/*),
    C(node.cloudprovider.kubernetes.io/*)); any other taint it carries is removed. Labels given are set,
    labels this module set earlier and no longer given are removed; labels of others stay.
  - Each node is first applied with C(dryRun=All); only a difference in its labels, taints or range leads to a
    real apply, so a re-run with nothing to do reports no change.
  - O(wait_ready) waits until the named nodes report Ready and fails, naming each node that does not and the
    reason its Ready condition gives.
  - Needs PyYAML on the target to read the kubeconfig; nothing else but the Python standard library.
options:
  nodes:
    description: Nodes to register, each with C(name), C(labels) (a mapping) and C(taints).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The node's name (its kubelet's C(--hostname-override)).
        type: str
        required: true
      labels:
        description: Labels of the node.
        type: dict
        default: {}
      taints:
        description: Taints, as C(key=value:Effect), C(key:Effect) or mappings with C(key), C(value), C(effect).
        type: list
        elements: raw
        default: []
  order:
    description: Node names in the order new pod ranges are handed out (the inventory's); nodes of O(nodes) not in it come last.
    type: list
    elements: str
    default: []
  pod_cidr:
    description: The cluster's pod range. Without it, pod ranges are left alone.
    type: str
  node_cidr_mask:
    description: Prefix length of each node's range.
    type: int
    default: 24
  wait_ready:
    description: Node names to wait for until each reports Ready (after registering O(nodes), if any).
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to wait for O(wait_ready).
    type: int
    default: 300
  kubeconfig:
    description: Kubeconfig with the API server and a client certificate allowed to change nodes.
    type: path
    default: /etc/kubernetes/admin.conf
  server:
    description: API server URL replacing the kubeconfig's.
    type: str
  api_timeout:
    description: Seconds one request may take including its retries (the API server may be restarting).
    type: int
    default: 120
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Dry runs only; the result says what would be created or changed. Where O(kubeconfig) does not exist
      yet (the plan of a first install), every node is reported as it would be created, with the ranges a
      first registration hands out, and nothing is contacted.
"""

EXAMPLES = r"""
- name: Register the nodes
  kubeforge.cluster.nodes:
    nodes:
      - {name: cp1, labels: {node-role.kubernetes.io/control-plane: ""},
         taints: ["node-role.kubernetes.io/control-plane:NoSchedule"]}
      - {name: w1, labels: {disk: ssd}}
    order: [cp1, cp2, w1]
    pod_cidr: 10.233.64.0/18
    node_cidr_mask: 24
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true

- name: Wait for them
  kubeforge.cluster.nodes:
    wait_ready: [cp1, w1]
    wait_timeout: 300
"""

RETURN = r"""
nodes:
  description: What happened to each node of O(nodes) - C(created), C(configured) or C(unchanged).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "w1", "action": "configured"}]
pod_cidrs:
  description: Pod range of every node (those named and those the API knows), when O(pod_cidr) is given.
  returned: always
  type: dict
  sample: {"cp1": "10.233.64.0/24", "w1": "10.233.65.0/24"}
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, kube_nodes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str', required=True),
                labels=dict(type='dict', default={}),
                taints=dict(type='list', elements='raw', default=[]),
            )),
            order=dict(type='list', elements='str', default=[]),
            pod_cidr=dict(type='str'),
            node_cidr_mask=dict(type='int', default=24),
            wait_ready=dict(type='list', elements='str', default=[]),
            wait_timeout=dict(type='int', default=300),
            kubeconfig=dict(type='path', default='/etc/kubernetes/admin.conf'),
            server=dict(type='str'),
            api_timeout=dict(type='int', default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if module.check_mode and not os.path.exists(params['kubeconfig']):
        try:
            changed, results, cidrs = kube_nodes.planned_without_cluster(
                params['nodes'], params['order'], params['pod_cidr'], params['node_cidr_mask'])
        except kube_nodes.NodesError as exc:
            module.fail_json(msg=str(exc), nodes=[])
        module.warn('%s does not exist yet (no cluster here to ask): every node is reported as it would be '
                    'registered' % params['kubeconfig'])
        module.exit_json(changed=changed, nodes=results, pod_cidrs=cidrs)
    # the plan without a cluster needs no PyYAML: a new host may not have it yet
    if not kube_api.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=kube_api.YAML_IMPORT_ERROR)
    try:
        settings = kube_api.load_kubeconfig(params['kubeconfig'], server=params['server'])
        client = kube_api.Client(settings, timeout=params['api_timeout'], user_agent='kubeforge.cluster.nodes')
    except kube_api.KubeConfigError as exc:
        module.fail_json(msg=str(exc))
    nodes = kube_nodes.Nodes(client)
    changed, results, cidrs = False, [], {}
    try:
        if params['nodes']:
            changed, results, cidrs = nodes.register(params['nodes'], params['order'], params['pod_cidr'],
                                                     params['node_cidr_mask'], check_mode=module.check_mode)
        elif params['pod_cidr']:
            cidrs = {name: (node.get('spec') or {}).get('podCIDR')
                     for name, node in nodes.list().items() if (node.get('spec') or {}).get('podCIDR')}
        if params['wait_ready'] and not module.check_mode:
            nodes.wait_ready(params['wait_ready'], params['wait_timeout'])
    except (kube_nodes.NodesError, kube_api.ApiError, kube_api.ConnectionFailed) as exc:
        module.fail_json(msg=str(exc), nodes=results)
    finally:
        client.close()
    module.exit_json(changed=changed, nodes=results, pod_cidrs=cidrs)


if __name__ == '__main__':
    main()
