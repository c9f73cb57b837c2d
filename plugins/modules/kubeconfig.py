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
    description: Path of the kubeconfig. Written with mode C(0600) unless O(mode) says otherwise.
    type: path
    required: true
  cluster_name:
    description: Name of the cluster entry.
    type: str
    default: kubernetes
  server:
    description: URL of the API server, for example C(https://192.0.2.10:6443).
    type: str
    required: true
  ca_cert_path:
    description: CA certificate that signed the API server's certificate, on the host.
    type: path
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
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: >-
      Shows server, cluster, user, context and the client certificate's subject, not_after and
      fingerprint; never the key.
  platform:
    platforms: posix
  safe_file_operations:
    description: Writes files through a temporary file and an atomic move, keeping owner, group and mode.
    support: full
requirements:
  - PyYAML (python3-yaml) on the host
  - cryptography 36.0 or newer on the host
seealso:
  - module: kubeforge.cluster.certificate
author:
  - kubeforge.cluster contributors (@kubeforge)
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
"""

RETURN = r"""
dest:
  description: Path of the kubeconfig.
  returned: always
  type: str
  sample: /etc/kubernetes/admin.conf
context:
  description: Name of the current context.
  returned: always
  type: str
  sample: kubernetes-admin@kubernetes
server:
  description: The API server URL written.
  returned: always
  type: str
  sample: https://192.0.2.10:6443
reason:
  description: Why the file was (or would be) written; empty when it already said the same.
  returned: always
  type: str
  sample: "server differs: 'https://192.0.2.10:6443' -> 'https://192.0.2.20:6443'"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import kubeconfig, pki


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            cluster_name=dict(type='str', default='kubernetes'),
            server=dict(type='str', required=True),
            ca_cert_path=dict(type='path', required=True),
            user_name=dict(type='str', required=True),
            client_cert_path=dict(type='path', required=True),
            client_key_path=dict(type='path', required=True, no_log=False),
            embed_client=dict(type='bool', default=True),
            context_name=dict(type='str'),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if not kubeconfig.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML (python3-yaml)'), exception=kubeconfig.YAML_IMPORT_ERROR)
    if not pki.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=pki.CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    if params['mode'] is None:
        params['mode'] = '0600'
    try:
        plan = kubeconfig.plan_kubeconfig(
            params['dest'], params['cluster_name'], params['server'], params['ca_cert_path'],
            params['user_name'], params['client_cert_path'], params['client_key_path'],
            context_name=params['context_name'], embed_client=params['embed_client'], check_mode=module.check_mode,
        )
    except kubeconfig.KubeconfigError as exc:
        module.fail_json(msg=str(exc))
    changed = pki.apply_plan(module, plan, attribute_paths=[params['dest']])
    result = plan.public_result()
    result.update(changed=changed, dest=params['dest'], reason=plan.reason)
    if module._diff:
        result['diff'] = {'before': plan.before, 'after': plan.after,
                          'before_header': params['dest'], 'after_header': params['dest']}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
