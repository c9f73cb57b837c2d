#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_plan
short_description: Decide a Kubernetes upgrade or downgrade from what the cluster runs
version_added: 0.1.0
description:
  - Asks every control plane's kube-apiserver for its version (C(/version), directly, not through a load
    balancer) and the API for every node's kubelet version, container runtime and Ready condition, then
    decides what moving the cluster to O(target) means - which control planes and which other nodes change,
    in which direction - or refuses.
  - Refusals, all reported at once and before anything changes - an API server that does not answer; a node
    of O(nodes) that is not Ready or not registered; a minor skipped (from the oldest API server); a downgrade
    without O(allow_downgrade) or of more than one minor; kubelets more than three minors behind O(target).
  - When O(kubeconfig) does not exist and no control plane has anything listening at its API server's
    address, Kubernetes is not installed yet - the plan moves nothing (RV(installed) is false) and says so;
    when something does listen there, the missing kubeconfig is an error.
  - Reads only; never changes anything.
options:
  target:
    description: The Kubernetes version the cluster should run.
    type: str
    required: true
  apiservers:
    description: Each control plane of the inventory with the URL of its own kube-apiserver.
    type: dict
    required: true
  nodes:
    description: Every node of the inventory (the k8s_cluster group), control planes included.
    type: list
    elements: str
    required: true
  allow_downgrade:
    description: Accept a target below what the cluster runs (by one minor at most).
    type: bool
    default: false
  runtime_target:
    description: The containerd version the nodes should run; a node running another one is also planned.
    type: str
  kubeconfig:
    description: Kubeconfig with a client certificate allowed to read nodes.
    type: path
    default: /etc/kubernetes/admin.conf
  api_timeout:
    description: Seconds one request may take including its retries.
    type: int
    default: 20
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Reads only, in check mode as in a real run.
"""

EXAMPLES = r"""
- name: Plan the move to 1.36.4
  kubeforge.cluster.upgrade_plan:
    target: 1.36.4
    apiservers: {cp1: "https://10.0.0.11:6443", cp2: "https://10.0.0.12:6443"}
    nodes: [cp1, cp2, w1, w2]
  delegate_to: cp1
  run_once: true
  register: plan
"""

RETURN = r"""
direction:
  description: C(upgrade), C(downgrade), C(runtime) (only the container runtime moves) or C(none).
  returned: always
  type: str
  sample: upgrade
from:
  description: The newest version an API server runs.
  returned: always
  type: str
  sample: 1.35.8
target:
  description: O(target), normalised.
  returned: always
  type: str
  sample: 1.36.4
control_planes:
  description: Control planes that change, in inventory order.
  returned: always
  type: list
  elements: str
  sample: [cp1, cp2]
workers:
  description: Other nodes that change, in inventory order.
  returned: always
  type: list
  elements: str
  sample: [w1, w2]
versions:
  description: What each host runs now.
  returned: always
  type: dict
  sample: {"cp1": {"kube-apiserver": "1.35.8", "kubelet": "1.35.8", "runtime": "containerd://2.3.4"}}
refusals:
  description: Why the plan is refused (the task fails when there is any).
  returned: always
  type: list
  elements: str
  sample: []
installed:
  description: Whether Kubernetes runs on the control planes (false - nothing to move).
  returned: always
  type: bool
  sample: true
summary:
  description: The plan in one line.
  returned: always
  type: str
  sample: "upgrade from 1.35.8 to 1.36.4: control planes cp1, cp2, then workers w1, w2"
"""

import copy
import os
import socket
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, upgrade_plan


def _node_view(node):
    status = node.get('status') or {}
    ready = {c.get('type'): c for c in status.get('conditions') or []}.get('Ready') or {}
    info = status.get('nodeInfo') or {}
    return {'kubelet': info.get('kubeletVersion'), 'runtime': info.get('containerRuntimeVersion'),
            'ready': ready.get('status') == 'True',
            'reason': ready.get('message') or ready.get('reason') or 'no Ready condition'}


def _listening(url, timeout=3):
    """Whether anything accepts a TCP connection at the host and port of ``url``."""
    parsed = urlsplit(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _not_installed(module, params):
    """No kubeconfig: fine when no API server listens either (Kubernetes not installed), else an error."""
    listening = [host for host, url in params['apiservers'].items() if _listening(url)]
    if listening:
        module.fail_json(msg='kubeconfig %s does not exist, but something listens at the kube-apiserver address of '
                             '%s: restore the kubeconfig (install.yml writes it) before an upgrade'
                             % (params['kubeconfig'], ', '.join(listening)))
    result = upgrade_plan.plan(params['target'], {}, {}, [], params['nodes'])
    result['installed'] = False
    result['summary'] = ('Kubernetes is not installed (no %s, no kube-apiserver listening on %s): nothing of it '
                         'moves; install.yml installs it' % (params['kubeconfig'], ', '.join(params['apiservers'])))
    module.exit_json(changed=False, **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            target=dict(type='str', required=True),
            apiservers=dict(type='dict', required=True),
            nodes=dict(type='list', elements='str', required=True),
            allow_downgrade=dict(type='bool', default=False),
            runtime_target=dict(type='str'),
            kubeconfig=dict(type='path', default='/etc/kubernetes/admin.conf'),
            api_timeout=dict(type='int', default=20),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not kube_api.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=kube_api.YAML_IMPORT_ERROR)
    if not os.path.exists(params['kubeconfig']):
        _not_installed(module, params)
    versions, nodes = {}, {}
    try:
        # one read of the kubeconfig; each API server is asked at its own URL
        settings = kube_api.load_kubeconfig(params['kubeconfig'])
        for host, url in params['apiservers'].items():
            own = copy.copy(settings)
            own.server = url
            client = kube_api.Client(own, timeout=params['api_timeout'], user_agent='kubeforge.cluster.upgrade_plan')
            try:
                versions[host] = client.request('GET', '/version').get('gitVersion')
                if not nodes:
                    nodes = {item['metadata']['name']: _node_view(item)
                             for item in client.request('GET', '/api/v1/nodes').get('items') or []}
            except (kube_api.ApiError, kube_api.ConnectionFailed) as exc:
                versions[host] = {'error': str(exc)}
            finally:
                client.close()
        result = upgrade_plan.plan(params['target'], versions, nodes, list(params['apiservers']), params['nodes'],
                                   params['allow_downgrade'], params['runtime_target'])
    except (kube_api.KubeConfigError, upgrade_plan.PlanError) as exc:
        module.fail_json(msg=str(exc))
    result['installed'] = True
    result['summary'] = upgrade_plan.summary(result)
    if result['refusals']:
        module.fail_json(msg=result['summary'], **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
