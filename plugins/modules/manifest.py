#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: manifest
short_description: Apply or delete Kubernetes objects with server-side apply, and wait until they are ready
version_added: 0.1.0
description:
  - Applies the Kubernetes objects in O(definitions) with server-side apply, or deletes them, talking to
    the API server directly from the host the task runs on (typically a control plane node). It needs
    neither kubectl nor a Kubernetes Python package; PyYAML is used only to read the kubeconfig.
  - >-
    Change detection is exact. Each object is first applied with C(dryRun=All) and the server's answer
    (with every default and admission change) is compared with the live object, leaving out C(status),
    C(metadata.managedFields), C(resourceVersion), C(uid), C(generation) and C(creationTimestamp). The
    set of fields that O(field_manager) owns is compared as well, so taking a field over from another
    manager counts as a change. Only a difference leads to a real apply, so a re-run with nothing to do
    reports no change.
  - Objects are applied in the order given. Put Namespaces and CustomResourceDefinitions before the
    objects that need them. When an object's kind is defined by a CustomResourceDefinition applied
    earlier in the same task, the module waits (up to O(wait_timeout)) until the API server serves that
    kind, whatever O(wait) says.
  - Kinds are resolved through API discovery (C(/api/v1), C(/apis/GROUP/VERSION)), once per group and
    version in a run. A kind the server does not serve is an error naming apiVersion and kind, except with
    O(state=absent), where objects of a kind that is not served cannot exist and are reported C(absent).
  - >-
    Connection failures (connection refused, reset, timeouts), HTTP 429 and 5xx answers are retried
    with bounded backoff for up to O(api_timeout) seconds per request, so a task survives an API server
    restart; a 500 only three times, since the API server also answers 500 to some requests it will never
    accept. Any other error fails the task with the object and the API server's message, for example
    C(Deployment kube-system/x: 422 Unprocessable Entity: Deployment.apps "x" is invalid:
    spec.replicas: Invalid value: -1 ...). Objects handled before the failure are returned in RV(objects).
  - Warnings the API server sends (for example about deprecated APIs) are shown as task warnings.
options:
  definitions:
    description:
      - The objects, each a mapping with C(apiVersion), C(kind) and C(metadata.name), and
        C(metadata.namespace) for a namespaced kind (default O(namespace)). A C(namespace) given for a
        cluster-wide kind is ignored.
      - A C(kind=List) object (C(apiVersion=v1)) is expanded into its C(items), and empty entries are skipped,
        so the documents of a multi-document YAML file (C(from_yaml_all | list)) can be passed as they are.
      - With O(state=absent), only C(apiVersion), C(kind) and C(metadata) (name, namespace) are used.
    type: list
    elements: raw
    default: []
  state:
    description:
      - V(present) applies O(definitions).
      - V(absent) deletes the objects named in O(definitions) and, with O(selector) and O(kinds), every
        object of those kinds in all namespaces that carries those labels. Deletion propagates in the
        background (dependents are removed by the garbage collector).
    type: str
    choices: [present, absent]
    default: present
  namespace:
    description: Namespace of objects of a namespaced kind that name none.
    type: str
    default: default
  labels:
    description:
      - Labels set on every applied object, replacing a label of the same key in the definition. Use them
        to mark what a task installed, so that O(state=absent) with O(selector) removes exactly that.
      - Values must be strings.
    type: dict
    default: {}
  selector:
    description:
      - A label selector (C(app.kubernetes.io/part-of=dns,app.kubernetes.io/managed-by=kubeforge)) for
        O(state=absent); needs O(kinds).
    type: str
  kinds:
    description: The kinds that O(selector) looks through, in the order they are deleted.
    type: list
    elements: dict
    suboptions:
      apiVersion:
        description: The kind's apiVersion, for example C(apps/v1).
        type: str
        required: true
      kind:
        description: The kind, for example C(Deployment).
        type: str
        required: true
  kubeconfig:
    description:
      - The kubeconfig that says where the API server is and how to authenticate - client certificates
        (embedded C(client-certificate-data) and C(client-key-data), or C(client-certificate) and
        C(client-key) paths) or a bearer C(token), and the cluster's C(certificate-authority-data) or
        C(certificate-authority). Relative paths are relative to the kubeconfig's directory.
      - Embedded client credentials are written to a private temporary directory only while the TLS
        context loads them, and removed at once.
    type: path
    default: /etc/kubernetes/admin.conf
  context:
    description: The kubeconfig context to use; default its C(current-context).
    type: str
  server:
    description:
      - URL of the API server, instead of the one in the kubeconfig, for example C(https://127.0.0.1:6443)
        to reach this host's own API server. The certificate is still verified against the kubeconfig's CA.
    type: str
  field_manager:
    description: The field manager name of the server-side apply.
    type: str
    default: kubeforge
  force_conflicts:
    description:
      - Take over fields that another field manager owns. When V(false), a conflict fails the task with the
        API server's list of conflicting fields.
    type: bool
    default: true
  field_validation:
    description:
      - How the API server treats fields that its schema does not know. V(Strict) fails (catching a misspelt
        field before anything is written), V(Warn) applies and shows a warning, V(Ignore) drops them silently.
    type: str
    choices: [Strict, Warn, Ignore]
    default: Strict
  wait:
    description:
      - After applying, wait until every object is ready, by its kind. Deployment - the controller has
        observed the latest generation, and updated, ready and available replicas equal the desired ones,
        with no old replicas left. StatefulSet - ready and available replicas as desired and the rollout
        done (respecting a partition). DaemonSet - C(desiredNumberScheduled), C(updatedNumberScheduled) and
        C(numberAvailable) equal. CustomResourceDefinition - C(Established). APIService - C(Available).
        Job - C(Complete). Pod - C(Ready). Namespace - phase C(Active). Other kinds are ready once they exist.
      - A Deployment past its progress deadline, a failed Job and a terminated Pod fail at once.
      - With O(state=absent), wait until the deleted objects are gone (their finalizers have run).
      - Objects that were unchanged are waited for as well.
    type: bool
    default: false
  wait_timeout:
    description:
      - >-
        Seconds to wait in total for O(wait), and for the kinds of a CustomResourceDefinition applied in the
        same task to be served. A timeout fails with every object not ready yet and what was last observed,
        for example C(Deployment kube-system/coredns: 1 of 2 replicas available after 300 s).
    type: int
    default: 300
  api_timeout:
    description:
      - Seconds one API request is retried while the API server is unreachable, overloaded (429) or
        failing (5xx), before the task fails.
    type: int
    default: 120
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Check mode sends only reads and dry runs (C(dryRun=All)), never a write, and reports exactly what
      the server would do. Where an object cannot be dry-run because an earlier object of the same task
      would create what it needs (its Namespace, or the CustomResourceDefinition of its kind), it is
      reported as C(created) as given, with a warning. Nothing is waited for in check mode. Where O(kubeconfig)
      does not exist yet (the plan of a first install, before any API server runs), every object is
      reported as C(created), with a warning, and nothing is contacted.
  diff_mode:
    support: full
    details: >-
      One diff per created, configured or deleted object, as YAML of the live object and of the
      server's dry-run answer, without C(status) and volatile metadata. The values in a Secret's C(data)
      and C(stringData) (and a C(kubectl.kubernetes.io/last-applied-configuration) annotation on a Secret)
      are replaced by a marker, C(<hidden: hmac-sha256 0123456789abcdef>), that differs when the value
      differs; its key is random per run, so markers cannot be compared across runs or against guesses.
requirements:
  - PyYAML on the target, to read the kubeconfig.
notes:
  - Secret values are never returned, and the module hides them in its output; still set C(no_log) on
    tasks that carry Secrets, because callbacks may show a task's arguments.
  - Objects are applied one at a time, each with a GET and a dry-run PATCH, and a real PATCH only when
    something changes.
seealso:
  - module: kubeforge.cluster.kubeconfig
  - name: Server-side apply
    description: How the API server merges applied configuration and tracks field ownership.
    link: https://kubernetes.io/docs/reference/using-api/server-side-apply/
"""

EXAMPLES = r"""
- name: CoreDNS
  kubeforge.cluster.manifest:
    definitions: "{{ lookup('ansible.builtin.template', 'coredns.yaml.j2') | ansible.builtin.from_yaml_all | list }}"
    labels:
      app.kubernetes.io/managed-by: kubeforge
      app.kubernetes.io/part-of: kubeforge-dns
    wait: true
  run_once: true

- name: A CustomResourceDefinition and an object of its kind, in one task
  kubeforge.cluster.manifest:
    definitions:
      - apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: pools.network.example.com}
        spec:
          group: network.example.com
          scope: Cluster
          names: {kind: Pool, plural: pools, singular: pool, listKind: PoolList}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  properties:
                    spec:
                      type: object
                      properties:
                        cidr: {type: string}
      - apiVersion: network.example.com/v1
        kind: Pool
        metadata: {name: default}
        spec: {cidr: 10.233.64.0/18}

- name: Turn the DNS addon off - remove everything it installed
  kubeforge.cluster.manifest:
    state: absent
    selector: app.kubernetes.io/part-of=kubeforge-dns,app.kubernetes.io/managed-by=kubeforge
    kinds:
      - {apiVersion: apps/v1, kind: Deployment}
      - {apiVersion: v1, kind: Service}
      - {apiVersion: v1, kind: ConfigMap}
      - {apiVersion: v1, kind: ServiceAccount}
      - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding}
      - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole}
    wait: true

- name: A Secret (values never shown in the diff)
  kubeforge.cluster.manifest:
    definitions:
      - apiVersion: v1
        kind: Secret
        metadata: {name: registry-auth, namespace: kube-system}
        stringData:
          password: "{{ registry_password }}"
  no_log: true
"""

RETURN = r"""
objects:
  description:
    - Every object handled, in order, with what was done (or, in check mode, would be done) - V(created),
      V(configured) (changed), V(unchanged), V(deleted), or V(absent) (not there to delete, or its deletion
      already under way).
    - C(namespace) is null for cluster-wide kinds.
    - Also returned when the task fails, with the objects handled before the failure.
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: ServiceAccount, namespace: kube-system, name: coredns, action: unchanged}
    - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, namespace: null, name: "system:coredns", action: created}
    - {apiVersion: apps/v1, kind: Deployment, namespace: kube-system, name: coredns, action: configured}
diff:
  description:
    - With C(--diff), one entry per created, configured or deleted object, with C(before) and C(after) as
      YAML text (empty for an object that does not exist) and the object in C(before_header) and
      C(after_header). Secret values are replaced by markers.
  returned: when diff mode is on
  type: list
  elements: dict
  sample:
    - before_header: Deployment kube-system/coredns
      after_header: Deployment kube-system/coredns
      before: "apiVersion: apps/v1\nkind: Deployment\n..."
      after: "apiVersion: apps/v1\nkind: Deployment\n..."
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, manifest


def main():
    module = AnsibleModule(
        argument_spec=dict(
            definitions=dict(type='list', elements='raw', default=[]),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            namespace=dict(type='str', default='default'),
            labels=dict(type='dict', default={}),
            selector=dict(type='str'),
            kinds=dict(type='list', elements='dict', options=dict(
                apiVersion=dict(type='str', required=True),
                kind=dict(type='str', required=True),
            )),
            kubeconfig=dict(type='path', default='/etc/kubernetes/admin.conf'),
            context=dict(type='str'),
            server=dict(type='str'),
            field_manager=dict(type='str', default='kubeforge'),
            force_conflicts=dict(type='bool', default=True),
            field_validation=dict(type='str', choices=['Strict', 'Warn', 'Ignore'], default='Strict'),
            wait=dict(type='bool', default=False),
            wait_timeout=dict(type='int', default=300),
            api_timeout=dict(type='int', default=120),
        ),
        required_together=[('selector', 'kinds')],
        supports_check_mode=True,
    )
    params = module.params
    module.no_log_values.update(manifest.secret_values(params['definitions']))
    if params['state'] == 'present' and params['selector']:
        module.fail_json(msg='selector and kinds delete objects; they need state=absent')
    if params['state'] == 'absent' and not params['definitions'] and not params['selector']:
        module.fail_json(msg='state=absent needs definitions, or selector and kinds, to know what to delete')

    if module.check_mode and not os.path.exists(params['kubeconfig']):
        try:
            result = manifest.planned_without_cluster(params['definitions'], params['labels'], params['state'],
                                                      params['namespace'])
        except manifest.ManifestError as exc:
            module.fail_json(msg=str(exc), objects=[])
        module.warn('%s does not exist yet (no cluster here to ask): every object is reported as it would be '
                    'created' % params['kubeconfig'])
        module.exit_json(**result)
    # the plan without a cluster needs no PyYAML: a new host may not have it yet
    if not kube_api.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=kube_api.YAML_IMPORT_ERROR)
    try:
        settings = kube_api.load_kubeconfig(params['kubeconfig'], params['context'], params['server'])
        client = kube_api.Client(settings, timeout=params['api_timeout'], user_agent='kubeforge.cluster.manifest')
    except kube_api.KubeConfigError as exc:
        module.fail_json(msg=str(exc), objects=[])
    try:
        result, warnings = manifest.run(
            client, definitions=params['definitions'], state=params['state'], selector=params['selector'],
            kinds=params['kinds'], labels=params['labels'], wait=params['wait'],
            field_manager=params['field_manager'], force_conflicts=params['force_conflicts'],
            field_validation=params['field_validation'], namespace=params['namespace'],
            check_mode=module.check_mode, want_diff=module._diff, wait_timeout=params['wait_timeout'],
        )
    except manifest.ManifestError as exc:
        module.fail_json(msg=str(exc), objects=exc.objects)
    finally:
        client.close()
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
