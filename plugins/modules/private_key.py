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
  - With O(keys), one call ensures many keys on the host (for example every certificate key of a
    control plane), which costs one task instead of one per key.
  - Needs the Python C(cryptography) library (36.0 or newer) on the host.
options:
  path:
    description:
      - Where the private key (PEM, unencrypted) is kept.
      - Exactly one of O(path) and O(keys) is required.
    type: path
  keys:
    description:
      - Many keys at once, each with its own O(keys[].path) and O(keys[].cert_path); O(key_type) and the
        owner and group apply to all of them.
      - The result is then RV(private_keys), one entry per key, in the same order.
      - Every key is checked before any is written, so an error changes none of them.
    type: list
    elements: dict
    suboptions:
      path:
        description: Where this private key is kept.
        type: path
        required: true
      cert_path:
        description: Path of the certificate that goes with this key; read only.
        type: path
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
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
    details: When the key is absent, reports changed and returns no public key.
notes:
  - The key file is always C(0600); O(mode) is ignored for it. O(owner) and O(group) apply.
seealso:
  - module: kubeforge.cluster.certificate_batch
  - module: kubeforge.cluster.certificate
"""

EXAMPLES = r"""
- name: Kubelet serving key on every node (the certificate is signed by certificate_batch)
  kubeforge.cluster.private_key:
    path: /var/lib/kubelet/pki/kubelet.key
    cert_path: /var/lib/kubelet/pki/kubelet.crt
  register: kubelet_key

- name: Every key of a control plane in one task
  kubeforge.cluster.private_key:
    keys:
      - path: /etc/kubernetes/pki/apiserver.key
        cert_path: /etc/kubernetes/pki/apiserver.crt
      - path: /etc/kubernetes/pki/front-proxy-client.key
        cert_path: /etc/kubernetes/pki/front-proxy-client.crt
  register: control_plane_keys

- name: An RSA key, owned by etcd
  kubeforge.cluster.private_key:
    path: /etc/kubernetes/pki/etcd/peer.key
    key_type: rsa-2048
    owner: etcd
    group: etcd
"""

RETURN = r"""
private_keys:
  description:
    - With O(keys), one entry per key in the order given, each with C(path), C(public_key), C(key_type),
      C(reason), C(changed), and with C(cert_path) also C(certificate) and C(certificate_matches_key).
    - The single-key return values below are then absent.
  returned: when O(keys) is set
  type: list
  elements: dict
  sample: [{"path": "/etc/kubernetes/pki/apiserver.key", "public_key": "-----BEGIN PUBLIC KEY-----...",
            "key_type": "ecdsa-p256", "reason": "", "changed": false, "certificate": null,
            "certificate_matches_key": false}]
public_key:
  description: The public key (PEM, SubjectPublicKeyInfo). Null in check mode when the key does not exist yet.
  returned: without O(keys)
  type: str
  sample: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...\n-----END PUBLIC KEY-----\n"
key_type:
  description: Type of the key.
  returned: without O(keys)
  type: str
  sample: ecdsa-p256
reason:
  description: Why the key was (or would be) generated; empty when it was kept.
  returned: without O(keys)
  type: str
  sample: "no private key at /var/lib/kubelet/pki/kubelet.key"
certificate:
  description: The certificate at O(cert_path) (PEM), or null when it is absent or corrupted.
  returned: when O(cert_path) is set (without O(keys))
  type: str
  sample: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
certificate_matches_key:
  description: Whether the certificate at O(cert_path) certifies this key.
  returned: when O(cert_path) is set (without O(keys))
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki, requirements


def _plan(module, path, cert_path):
    try:
        plan, _key = pki.plan_private_key(path, module.params['key_type'], cert_path=cert_path,
                                          check_mode=module.check_mode)
    except files.FileError as exc:
        return None, str(exc)
    return plan, None


def _apply(module, plan, path):
    for warning in plan.warnings:
        module.warn(warning)
    changed = files.apply_plan(module, plan, secret_paths=[path])
    result = plan.public_result()
    result.update(changed=changed, reason=plan.reason)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path'),
            keys=dict(type='list', elements='dict', no_log=False, options=dict(
                path=dict(type='path', required=True),
                cert_path=dict(type='path'),
            )),
            key_type=dict(type='str', default='ecdsa-p256', choices=list(pki.KEY_TYPES)),
            cert_path=dict(type='path'),
        ),
        mutually_exclusive=[('path', 'keys'), ('keys', 'cert_path')],
        required_one_of=[('path', 'keys')],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    requirements.require(module, ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    if params['keys'] is None:
        plan, error = _plan(module, params['path'], params['cert_path'])
        if error:
            module.fail_json(msg=error)
        module.exit_json(**_apply(module, plan, params['path']))
    try:
        plans = files.plan_all('keys', 'path', params['keys'],
                               lambda entry: _plan(module, entry['path'], entry['cert_path']))
    except files.FileError as exc:
        module.fail_json(msg=str(exc))
    results = []
    for entry, plan in zip(params['keys'], plans):
        result = _apply(module, plan, entry['path'])
        result['path'] = entry['path']
        if entry['cert_path'] is None:
            result.pop('certificate', None)
            result.pop('certificate_matches_key', None)
        results.append(result)
    module.exit_json(changed=any(r['changed'] for r in results), private_keys=results)


if __name__ == '__main__':
    main()
