#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubeconfig
short_description: Write a kubeconfig for a cluster, a user and a client certificate
version_added: 0.1.0
description:
  - Writes a kubeconfig (C(apiVersion v1), C(kind Config)) with one cluster, one user and one context,
    which becomes the current context.
  - The cluster CA is read from O(ca_cert_path) on the host and embedded as C(certificate-authority-data).
  - The client certificate and key are read from O(client_cert_path) and O(client_key_path) on the host
    and embedded (the default), or referenced by path with O(embed_client=false), as the kubelet does
    for certificates it rotates itself.
  - The file is only rewritten when its meaning changes, not its formatting. The existing file is parsed
    and compared after normalisation (order, layout and base64 wrapping do not count).
  - The output is written by the collection's own deterministic YAML emitter, so it does not depend on
    the PyYAML version. PyYAML is still needed on the host to read the existing file (the os role
    installs C(python3-yaml)), and the Python C(cryptography) library to check the certificates.
options:
  dest:
    description:
      - Path of the kubeconfig. Written with mode C(0600) unless O(mode) says otherwise.
      - Exactly one of O(dest) and O(kubeconfigs) is required; with O(dest), O(server), O(user_name),
        O(client_cert_path) and O(client_key_path) are required too.
    type: path
  kubeconfigs:
    description:
      - Many kubeconfigs of one cluster CA at once (for example every kubeconfig of a control plane),
        which costs one task instead of one per file. Each entry takes the options of a single
        kubeconfig; O(ca_cert_path) and the file options (owner, group, mode) apply to all, and the
        per-file options (O(server), O(user_name), O(client_cert_path), O(client_key_path),
        O(context_name)) are refused at the top level.
      - Every file is checked before any is written, so an error changes none of them.
      - The result is then RV(kubeconfigs), one entry per file, in the same order.
    type: list
    elements: dict
    suboptions:
      dest:
        description: Path of this kubeconfig.
        type: path
        required: true
      cluster_name:
        description: Name of the cluster entry.
        type: str
        default: kubernetes
      server:
        description: URL of the API server.
        type: str
        required: true
      user_name:
        description: Name of the user entry.
        type: str
        required: true
      client_cert_path:
        description: Client certificate, on the host.
        type: path
        required: true
      client_key_path:
        description: Client private key, on the host.
        type: path
        required: true
      embed_client:
        description: Embed the client certificate and key (see O(embed_client)).
        type: bool
        default: true
      context_name:
        description: Name of the context. Defaults to C(USER@CLUSTER).
        type: str
  cluster_name:
    description: Name of the cluster entry.
    type: str
    default: kubernetes
  server:
    description: URL of the API server, for example C(https://192.0.2.10:6443).
    type: str
  ca_cert_path:
    description: CA certificate that signed the API server's certificate, on the host.
    type: path
    required: true
  user_name:
    description: Name of the user entry.
    type: str
  client_cert_path:
    description: Client certificate, on the host.
    type: path
  client_key_path:
    description: Client private key, on the host.
    type: path
  embed_client:
    description:
      - Embed the client certificate and key (C(client-certificate-data), C(client-key-data)). When false,
        reference them by path (C(client-certificate), C(client-key)); the files need not exist yet.
    type: bool
    default: true
  context_name:
    description: Name of the context. Defaults to C(USER@CLUSTER).
    type: str
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: >-
      Shows server, cluster, user, context and the client certificate's subject, not_after and
      fingerprint; never the key.
requirements:
  - PyYAML (python3-yaml) on the host
  - cryptography 36.0 or newer on the host
seealso:
  - module: kubeforge.cluster.certificate
"""

EXAMPLES = r"""
- name: Kubeconfig for the controller manager
  kubeforge.cluster.kubeconfig:
    dest: /etc/kubernetes/controller-manager.conf
    server: https://127.0.0.1:6443
    ca_cert_path: /etc/kubernetes/pki/ca.crt
    user_name: system:kube-controller-manager
    client_cert_path: /etc/kubernetes/pki/controller-manager.crt
    client_key_path: /etc/kubernetes/pki/controller-manager.key

- name: Kubelet kubeconfig that references the certificate the kubelet rotates
  kubeforge.cluster.kubeconfig:
    dest: /etc/kubernetes/kubelet.conf
    server: https://localhost:6443
    ca_cert_path: /etc/kubernetes/pki/ca.crt
    user_name: default-auth
    client_cert_path: /var/lib/kubelet/pki/kubelet-client-current.pem
    client_key_path: /var/lib/kubelet/pki/kubelet-client-current.pem
    embed_client: false

- name: Every kubeconfig of a control plane in one task
  kubeforge.cluster.kubeconfig:
    ca_cert_path: /etc/kubernetes/pki/ca.crt
    kubeconfigs:
      - dest: /etc/kubernetes/scheduler.conf
        server: https://192.0.2.10:6443
        user_name: system:kube-scheduler
        client_cert_path: /etc/kubernetes/pki/kubeconfig/scheduler.crt
        client_key_path: /etc/kubernetes/pki/kubeconfig/scheduler.key
      - dest: /etc/kubernetes/admin.conf
        server: https://192.0.2.10:6443
        user_name: kubernetes-admin
        client_cert_path: /etc/kubernetes/pki/kubeconfig/admin.crt
        client_key_path: /etc/kubernetes/pki/kubeconfig/admin.key
"""

RETURN = r"""
kubeconfigs:
  description:
    - With O(kubeconfigs), one entry per file in the order given, each with C(dest), C(context), C(server),
      C(reason) and C(changed). The single-file return values below are then absent.
    - In diff mode, the diff holds the summary of every file that changes, keyed by its path.
  returned: when O(kubeconfigs) is set
  type: list
  elements: dict
  sample: [{"dest": "/etc/kubernetes/admin.conf", "context": "kubernetes-admin@kubernetes",
            "server": "https://192.0.2.10:6443", "reason": "", "changed": false}]
dest:
  description: Path of the kubeconfig.
  returned: without O(kubeconfigs)
  type: str
  sample: /etc/kubernetes/admin.conf
context:
  description: Name of the current context.
  returned: without O(kubeconfigs)
  type: str
  sample: kubernetes-admin@kubernetes
server:
  description: The API server URL written.
  returned: without O(kubeconfigs)
  type: str
  sample: https://192.0.2.10:6443
reason:
  description: Why the file was (or would be) written; empty when it already said the same.
  returned: without O(kubeconfigs)
  type: str
  sample: "server differs: 'https://192.0.2.10:6443' -> 'https://192.0.2.20:6443'"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, kubeconfig, pki, requirements


ENTRY_KEYS = ('dest', 'cluster_name', 'server', 'user_name', 'client_cert_path', 'client_key_path', 'embed_client',
              'context_name')


def _plan(module, entry):
    try:
        return kubeconfig.plan_kubeconfig(
            entry['dest'], entry['cluster_name'], entry['server'], module.params['ca_cert_path'],
            entry['user_name'], entry['client_cert_path'], entry['client_key_path'],
            context_name=entry['context_name'], embed_client=entry['embed_client'], check_mode=module.check_mode,
        ), None
    except kubeconfig.KubeconfigError as exc:
        return None, ('%s: %s' % (entry['dest'], exc)) if module.params['kubeconfigs'] else str(exc)


def _apply(module, plan, entry):
    changed = files.apply_plan(module, plan, attribute_paths=[entry['dest']])
    result = plan.public_result()
    result.update(changed=changed, dest=entry['dest'], reason=plan.reason)
    return result


def main():
    entry_options = dict(
        dest=dict(type='path', required=True),
        cluster_name=dict(type='str', default='kubernetes'),
        server=dict(type='str', required=True),
        user_name=dict(type='str', required=True),
        client_cert_path=dict(type='path', required=True),
        client_key_path=dict(type='path', required=True, no_log=False),
        embed_client=dict(type='bool', default=True),
        context_name=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path'),
            kubeconfigs=dict(type='list', elements='dict', options=entry_options),
            cluster_name=dict(type='str', default='kubernetes'),
            server=dict(type='str'),
            ca_cert_path=dict(type='path', required=True),
            user_name=dict(type='str'),
            client_cert_path=dict(type='path'),
            client_key_path=dict(type='path', no_log=False),
            embed_client=dict(type='bool', default=True),
            context_name=dict(type='str'),
        ),
        mutually_exclusive=[('dest', 'kubeconfigs')] + [('kubeconfigs', key) for key in (
            'server', 'user_name', 'client_cert_path', 'client_key_path', 'context_name')],
        required_one_of=[('dest', 'kubeconfigs')],
        required_by={'dest': ('server', 'user_name', 'client_cert_path', 'client_key_path')},
        add_file_common_args=True,
        supports_check_mode=True,
    )
    requirements.require(module, ('PyYAML (python3-yaml)', kubeconfig.HAS_YAML, kubeconfig.YAML_IMPORT_ERROR),
                         ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    if params['mode'] is None:
        params['mode'] = '0600'
    if params['kubeconfigs'] is None:
        entry = {key: params[key] for key in ENTRY_KEYS}
        plan, error = _plan(module, entry)
        if error:
            module.fail_json(msg=error)
        result = _apply(module, plan, entry)
        if module._diff:
            result['diff'] = {'before': plan.before, 'after': plan.after,
                              'before_header': params['dest'], 'after_header': params['dest']}
        module.exit_json(**result)
    try:
        plans = files.plan_all('kubeconfigs', 'dest', params['kubeconfigs'], lambda entry: _plan(module, entry))
    except files.FileError as exc:
        module.fail_json(msg=str(exc))
    results, before, after = [], {}, {}
    for entry, plan in zip(params['kubeconfigs'], plans):
        result = _apply(module, plan, entry)
        results.append(result)
        if result['changed']:
            before[entry['dest']] = plan.before
            after[entry['dest']] = plan.after
    output = dict(changed=any(r['changed'] for r in results), kubeconfigs=results)
    if module._diff:
        output['diff'] = {'before': before, 'after': after}
    module.exit_json(**output)


if __name__ == '__main__':
    main()
