#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: private_key
short_description: Ensure a private key on a node and return its public key
version_added: 0.1.0
description:
  - First step of issuing certificates whose keys never leave their host. It runs on every node
    (in parallel), ensures a private key at O(path) and returns the public key. The CA host then signs
    all nodes' certificates in one M(kubeforge.cluster.certificate_batch) task, and the returned
    certificates are written back on the nodes.
  - The key is written with mode C(0600). A key that is present, valid and of the requested
    O(key_type) is never regenerated. An absent, corrupted or differently typed key is replaced by a
    new one.
  - With O(cert_path), it also returns the certificate currently at that path (or null when it is
    absent or corrupted) and whether it belongs to the key, so the CA host can decide what to re-issue.
  - Needs the Python C(cryptography) library (36.0 or newer) on the host.
options:
  path:
    description: Where the private key (PEM, unencrypted) is kept.
    type: path
    required: true
  key_type:
    description: Type of the key generated when none (or one of another type) is present.
    type: str
    default: ecdsa-p256
    choices: [ecdsa-p256, rsa-2048, rsa-3072, rsa-4096]
  cert_path:
    description: Path of the certificate that goes with the key; read only, never written here.
    type: path
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: When the key is absent, reports changed and returns no public key.
  diff_mode:
    support: none
  platform:
    platforms: posix
  safe_file_operations:
    description: Writes files through a temporary file and an atomic move, keeping owner, group and mode.
    support: full
notes:
  - The key file is always C(0600); O(mode) is ignored for it. O(owner) and O(group) apply.
seealso:
  - module: kubeforge.cluster.certificate_batch
  - module: kubeforge.cluster.certificate
author:
  - kubeforge.cluster contributors (@kubeforge)
"""

EXAMPLES = r"""
- name: Kubelet serving key on every node (the certificate is signed by certificate_batch)
  kubeforge.cluster.private_key:
    path: /var/lib/kubelet/pki/kubelet.key
    cert_path: /var/lib/kubelet/pki/kubelet.crt
  register: kubelet_key

- name: An RSA key, owned by etcd
  kubeforge.cluster.private_key:
    path: /etc/kubernetes/pki/etcd/peer.key
    key_type: rsa-2048
    owner: etcd
    group: etcd
"""

RETURN = r"""
public_key:
  description: The public key (PEM, SubjectPublicKeyInfo). Null in check mode when the key does not exist yet.
  returned: always
  type: str
  sample: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...\n-----END PUBLIC KEY-----\n"
key_type:
  description: Type of the key.
  returned: always
  type: str
  sample: ecdsa-p256
reason:
  description: Why the key was (or would be) generated; empty when it was kept.
  returned: always
  type: str
  sample: "no private key at /var/lib/kubelet/pki/kubelet.key"
certificate:
  description: The certificate at O(cert_path) (PEM), or null when it is absent or corrupted.
  returned: when O(cert_path) is set
  type: str
  sample: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
certificate_matches_key:
  description: Whether the certificate at O(cert_path) certifies this key.
  returned: when O(cert_path) is set
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            key_type=dict(type='str', default='ecdsa-p256', choices=list(pki.KEY_TYPES)),
            cert_path=dict(type='path'),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if not pki.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=pki.CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    try:
        plan, _key = pki.plan_private_key(params['path'], params['key_type'], cert_path=params['cert_path'],
                                          check_mode=module.check_mode)
    except pki.PKIError as exc:
        module.fail_json(msg=str(exc))
    for warning in plan.warnings:
        module.warn(warning)
    changed = pki.apply_plan(module, plan, secret_paths=[params['path']])
    result = plan.public_result()
    result.update(changed=changed, reason=plan.reason)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
