#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_drain
short_description: Cordon and drain a node, make it schedulable again, or delete its Node object
version_added: 0.1.0
description:
  - O(state=drained) cordons the node and evicts its pods through the eviction API, so that every
    PodDisruptionBudget is kept. DaemonSet pods and static pods stay. A pod that no controller would
    recreate elsewhere is refused before anything changes, unless O(force).
  - An eviction a budget refuses is tried again every 2 seconds until O(timeout); then the task fails naming
    each pod still on the node and the budget that holds it. The node stays cordoned and no pod is deleted
    past its budget, unless O(disable_eviction) (which deletes pods instead of evicting them).
  - The cordon carries the annotation C(kubeforge.io/cordoned-for). O(state=schedulable) lifts only such a
    cordon; a node that was cordoned by someone else stays cordoned, and the result says so.
  - O(state=absent) deletes the Node object (drain it first).
  - Talks to the API server directly from the host the task runs on (a control plane); needs PyYAML there to
    read the kubeconfig.
options:
  node:
    description: The node's name.
    type: str
    required: true
  state:
    description: What the node should be.
    type: str
    choices: [drained, schedulable, absent]
    default: drained
  timeout:
    description: Seconds a drain may take before it stops (evictions refused by budgets are retried until then).
    type: int
    default: 300
  force:
    description: Also evict pods that no controller would recreate (they are gone for good).
    type: bool
    default: false
  disable_eviction:
    description: Delete the pods instead of evicting them, which ignores PodDisruptionBudgets.
    type: bool
    default: false
  grace_period:
    description: Seconds each pod gets to stop; -1 keeps the pod's own terminationGracePeriodSeconds.
    type: int
    default: -1
  skip_unready:
    description:
      - With O(state=drained), leave a node that is not Ready as it is (its kubelet is gone, so none of its pods
        can stop cleanly; deleting the Node object removes them), and accept a node that is not registered at
        all (an etcd-only host). RV(skipped) says so.
    type: bool
    default: false
  reason:
    description: Why the node is cordoned (the value of the annotation).
    type: str
    default: drain
  kubeconfig:
    description: Kubeconfig with the API server and a client certificate allowed to change nodes and evict pods.
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
    details: Reads only; the result lists the pods that would be evicted and whether the node would be cordoned.
"""

EXAMPLES = r"""
- name: Drain a worker before its upgrade
  kubeforge.cluster.node_drain:
    node: w1
    timeout: 300
    reason: upgrade
  delegate_to: "{{ groups['kube_control_plane'][0] }}"

- name: Make it schedulable again
  kubeforge.cluster.node_drain:
    node: w1
    state: schedulable
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
"""

RETURN = r"""
cordoned:
  description: Whether this task cordoned the node (false when it already was).
  returned: O(state=drained)
  type: bool
  sample: true
evicted:
  description: The pods (C(namespace/name)) evicted, or that would be.
  returned: O(state=drained)
  type: list
  elements: str
  sample: ["default/web-5d9c7b7f6-2xk8q"]
left:
  description: The pods a drain leaves on the node, each with why.
  returned: O(state=drained)
  type: list
  elements: dict
  sample: [{"pod": "kube-system/kube-flannel-ds-7xq2z", "reason": "DaemonSet kube-flannel-ds"}]
seconds:
  description: How long the evictions took.
  returned: O(state=drained)
  type: float
  sample: 4.2
skipped:
  description: Why a drain with O(skip_unready) left the node alone, or empty.
  returned: O(state=drained)
  type: str
  sample: "node w2 is not Ready: not drained (its pods go when the Node object does)"
note:
  description: Why a node stays cordoned after O(state=schedulable), or empty.
  returned: O(state=schedulable)
  type: str
  sample: "w1 was cordoned before this run, not by it: it stays cordoned"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, kube_drain


def main():
    module = AnsibleModule(
        argument_spec=dict(
            node=dict(type='str', required=True),
            state=dict(type='str', choices=['drained', 'schedulable', 'absent'], default='drained'),
            timeout=dict(type='int', default=300),
            force=dict(type='bool', default=False),
            disable_eviction=dict(type='bool', default=False),
            grace_period=dict(type='int', default=-1),
            reason=dict(type='str', default='drain'),
            skip_unready=dict(type='bool', default=False),
            kubeconfig=dict(type='path', default='/etc/kubernetes/admin.conf'),
            server=dict(type='str'),
            api_timeout=dict(type='int', default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not kube_api.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=kube_api.YAML_IMPORT_ERROR)
    try:
        settings = kube_api.load_kubeconfig(params['kubeconfig'], server=params['server'])
        client = kube_api.Client(settings, timeout=params['api_timeout'], user_agent='kubeforge.cluster.node_drain')
    except kube_api.KubeConfigError as exc:
        module.fail_json(msg=str(exc))
    drainer = kube_drain.Drainer(client)
    try:
        if params['state'] == 'drained':
            result = drainer.drain(params['node'], params['timeout'], force=params['force'],
                                   disable_eviction=params['disable_eviction'], grace_period=params['grace_period'],
                                   reason=params['reason'], check_mode=module.check_mode,
                                   skip_unready=params['skip_unready'])
            module.exit_json(changed=result['cordoned'] or bool(result['evicted']), **result)
        if params['state'] == 'schedulable':
            changed, note = drainer.uncordon(params['node'], check_mode=module.check_mode)
            module.exit_json(changed=changed, note=note)
        module.exit_json(changed=drainer.delete_node(params['node'], check_mode=module.check_mode))
    except (kube_drain.DrainError, kube_api.ApiError, kube_api.ConnectionFailed) as exc:
        module.fail_json(msg=str(exc))
    finally:
        client.close()


if __name__ == '__main__':
    main()
