#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ca_rotation
short_description: Move a CA one phase through its rotation (trust, sign, finish)
version_added: 0.1.0
description:
  - Rotates the CA whose trust file is O(cert_path) and whose signing key is O(key_path), on the host that
    holds the CA, one phase per call. The signer is always the first certificate of the trust file.
  - C(trust) creates a new CA (key and self-signed certificate, at C(<name>-new.crt) and C(<name>-new.key)
    beside the CA) and makes the trust file hold the old CA then the new one; nothing signs with the new
    CA yet.
  - C(sign) makes the new CA the signer - its key replaces O(key_path), the trust file becomes the new CA
    then the old one, and the C(-new) files go; the old CA's key is gone from then on. Leaves the old CA
    signed still verify; the pki role re-issues them.
  - C(finish) leaves only the new CA in the trust file.
  - The state is read from the files alone, so a phase that was interrupted is completed by running it
    again, and a phase already reached changes nothing. A phase asked out of order fails, saying which
    phase comes next.
  - Copying the files to the other hosts, re-issuing the leaves and restarting the services is the
    playbook's (C(playbooks/certs.yml) with C(certs_action=rotate-ca)).
  - Needs the Python C(cryptography) library (36.0 or newer) on the host.
options:
  cert_path:
    description: The CA's trust file (one certificate, two during a rotation).
    type: path
    required: true
  key_path:
    description: The CA's signing key.
    type: path
    required: true
  phase:
    description: The phase to reach.
    type: str
    required: true
    choices: [trust, sign, finish]
  common_name:
    description: The common name of the new CA (phase C(trust)).
    type: str
    required: true
  key_type:
    description: The type of the new CA's key.
    type: str
    default: ecdsa-p256
    choices: [rsa-2048, rsa-3072, rsa-4096, ecdsa-p256]
  validity_days:
    description: How long the new CA is valid.
    type: float
    default: 3650
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
    details: Says which state the phase would reach and why; in phase C(trust) it describes the CA it would
      create without generating a key.
notes:
  - Keys are written with mode C(0600), certificates with C(0644), both owned by root. No key material is
    ever returned.
"""

EXAMPLES = r"""
- name: Trust a new cluster CA beside the old one
  kubeforge.cluster.ca_rotation:
    cert_path: /etc/kubernetes/pki/ca.crt
    key_path: /etc/kubernetes/pki/ca.key
    phase: trust
    common_name: kubernetes-ca
"""

RETURN = r"""
before:
  description: The state the files were in - C(single), C(trusting), C(signing), or an interrupted phase
    (C(trust-started), C(sign-started)).
  returned: always
  type: str
  sample: single
state:
  description: The state reached (C(trusting) after trust, C(signing) after sign, C(single) after finish).
  returned: always
  type: str
  sample: trusting
reason:
  description: What was (or would be) done, or why nothing was.
  returned: always
  type: str
  sample: a new CA created beside the old one, both trusted
new_ca:
  description: The new CA (subject, not_after, fingerprint) when phase trust created or completed it.
  returned: when phase is trust and the state changed
  type: dict
removed:
  description: The files removed (the C(-new) files, in phase sign).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import ca_rotation, files, pki, requirements


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cert_path=dict(type='path', required=True),
            key_path=dict(type='path', required=True),
            phase=dict(type='str', required=True, choices=list(ca_rotation.PHASES)),
            common_name=dict(type='str', required=True),
            key_type=dict(type='str', default='ecdsa-p256', choices=['rsa-2048', 'rsa-3072', 'rsa-4096',
                                                                     'ecdsa-p256']),
            validity_days=dict(type='float', default=3650),
        ),
        supports_check_mode=True,
    )
    requirements.require(module, ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    try:
        plan = ca_rotation.plan(params['phase'], params['cert_path'], params['key_path'], params['common_name'],
                                params['key_type'], params['validity_days'], check_mode=module.check_mode)
    except (ca_rotation.RotationError, files.FileError) as exc:
        module.fail_json(msg=str(exc))
    removed = [path for path in plan['remove'] if os.path.exists(path)]
    changed = plan['before'] != plan['after']
    if not module.check_mode:
        # keys first: an interruption leaves a state the next run recognises (ca_rotation.read_state)
        for path in sorted(plan['write'], key=lambda p: (p not in plan['secret'], p)):
            files.write_file(module, path, plan['write'][path], secret=path in plan['secret'],
                             mode=None if path in plan['secret'] else 0o644)
        for path in removed:
            files.unlink_quietly(path)
    result = dict(changed=changed, before=plan['before'], state=plan['after'], reason=plan['reason'],
                  removed=removed)
    if plan['new_ca']:
        result['new_ca'] = {key: plan['new_ca'].get(key) for key in ('subject', 'not_after', 'fingerprint')}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
