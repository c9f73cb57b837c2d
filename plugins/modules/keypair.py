#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: keypair
short_description: Ensure the service-account signing key pair
version_added: 0.1.0
description:
  - Ensures a private key at O(path) (mode C(0600)) and its public key at O(public_path) (mode C(0644)
    unless O(mode) says otherwise), as kube-controller-manager (C(--service-account-private-key-file))
    and kube-apiserver (C(--service-account-key-file), C(--service-account-signing-key-file)) use them.
  - A present, valid private key is never regenerated, because that would invalidate every
    service-account token signed with it. A corrupted private key is an error naming the file. A
    present key of another type than O(key_type) is kept, with a warning.
  - The public file is rewritten when it is absent, corrupted or does not match the private key.
  - Needs the Python C(cryptography) library (36.0 or newer) on the host.
options:
  path:
    description: Where the private key (PEM, unencrypted) is kept.
    type: path
    required: true
  public_path:
    description: Where the public key (PEM, SubjectPublicKeyInfo) is kept.
    type: path
    required: true
  key_type:
    description: Type of the key generated when none is present.
    type: str
    default: rsa-2048
    choices: [rsa-2048, rsa-3072, rsa-4096, ecdsa-p256]
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
    details: Reports what would be written; when the key does not exist yet, returns no public key.
notes:
  - O(mode) applies to the public key only; the private key is always C(0600).
"""

EXAMPLES = r"""
- name: Service-account signing keys
  kubeforge.cluster.keypair:
    path: /etc/kubernetes/pki/sa.key
    public_path: /etc/kubernetes/pki/sa.pub
"""

RETURN = r"""
public_key:
  description: The public key (PEM). Null in check mode when the key does not exist yet.
  returned: always
  type: str
  sample: "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA...\n-----END PUBLIC KEY-----\n"
fingerprint:
  description: SHA-256 of the DER public key (lowercase hex). Null when the key does not exist yet.
  returned: always
  type: str
  sample: "4b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
key_type:
  description: Type of the private key.
  returned: always
  type: str
  sample: rsa-2048
reason:
  description: What was (or would be) written and why; empty when nothing changed.
  returned: always
  type: str
  sample: "no private key at /etc/kubernetes/pki/sa.key"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki, requirements


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            public_path=dict(type='path', required=True),
            key_type=dict(type='str', default='rsa-2048', choices=['rsa-2048', 'rsa-3072', 'rsa-4096', 'ecdsa-p256']),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    requirements.require(module, ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    if params['mode'] is None:
        params['mode'] = '0644'
    try:
        plan = pki.plan_keypair(params['path'], params['public_path'], params['key_type'],
                                check_mode=module.check_mode)
    except files.FileError as exc:
        module.fail_json(msg=str(exc))
    for warning in plan.warnings:
        module.warn(warning)
    changed = files.apply_plan(module, plan, attribute_paths=[params['public_path']], secret_paths=[params['path']])
    result = plan.public_result()
    result.update(changed=changed, reason=plan.reason)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
