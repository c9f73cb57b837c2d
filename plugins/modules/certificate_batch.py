#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: certificate_batch
short_description: Sign many nodes' certificates in one task on the CA host
version_added: 0.1.0
description:
  - Runs once on the host that holds the CA key (delegated). Each request carries a node's public key
    (from M(kubeforge.cluster.private_key)) and its current certificate; the module decides, with the
    same comparison as M(kubeforge.cluster.certificate), whether to (re)issue it, and returns the new
    certificates. N nodes cost one task.
  - Nothing secret passes in or out, only public keys and certificates. The CA key is read on the CA
    host and never returned.
  - A request is re-issued when there is no current certificate, it is corrupted, or it no longer
    matches (key mismatch, subject CN or O, SANs, usages, issued by another CA, within
    C(renew_before_days) of expiry).
  - All invalid requests are reported together and then nothing is issued.
  - Needs the Python C(cryptography) library (36.0 or newer) on the CA host.
options:
  ca_cert_path:
    description: Certificate of the signing CA, on the host where the module runs.
    type: path
    required: true
  ca_key_path:
    description: Private key of the signing CA, on the host where the module runs.
    type: path
    required: true
  requests:
    description: The certificates to ensure.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: Key of this request in RV(certificates), unique in the batch, e.g. C(node1/kubelet-server).
        type: str
        required: true
      public_key:
        description:
          - The node's public key (PEM). May be null only in check mode (the node key does not exist yet).
        type: str
      current_certificate:
        description: The certificate the node has now (PEM), or null.
        type: str
      common_name:
        description: Subject common name (CN).
        type: str
        required: true
      organizations:
        description: Subject organizations (O).
        type: list
        elements: str
        default: []
      dns_names:
        description: DNS subject alternative names.
        type: list
        elements: str
        default: []
      ip_addresses:
        description: IP subject alternative names.
        type: list
        elements: str
        default: []
      usage:
        description: Usage of the certificate.
        type: str
        default: client
        choices: [server, client, server+client]
      validity_days:
        description: Validity of a newly issued certificate, in days; fractions are allowed (V(0.01) is about 14 minutes).
        type: float
        default: 365
      renew_before_days:
        description: Re-issue when the current certificate expires within this many days (fractions allowed).
        type: float
        default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
    details: Returns the reasons, with C(certificate=null), and issues nothing.
seealso:
  - module: kubeforge.cluster.private_key
  - module: kubeforge.cluster.certificate
"""

EXAMPLES = r"""
- name: Node keys (every node, in parallel)
  kubeforge.cluster.private_key:
    path: /var/lib/kubelet/pki/kubelet.key
    cert_path: /var/lib/kubelet/pki/kubelet.crt
  register: node_key

- name: Sign all kubelet serving certificates on the first control plane
  kubeforge.cluster.certificate_batch:
    ca_cert_path: /etc/kubernetes/pki/ca.crt
    ca_key_path: /etc/kubernetes/pki/ca.key
    requests: "{{ kubelet_requests }}"
  vars:
    kubelet_requests: >-
      {%- set out = [] -%}
      {%- for host in ansible_play_hosts -%}
      {%- set _ = out.append({
            'id': host,
            'public_key': hostvars[host].node_key.public_key,
            'current_certificate': hostvars[host].node_key.certificate,
            'common_name': 'system:node:' ~ host,
            'organizations': ['system:nodes'],
            'dns_names': [host],
            'ip_addresses': [hostvars[host].ip | default(hostvars[host].ansible_host)],
            'usage': 'server'}) -%}
      {%- endfor -%}
      {{ out }}
  delegate_to: "{{ groups['kube_control_plane'][0] }}"
  run_once: true
  register: signed

- name: Write the certificates that were issued
  ansible.builtin.copy:
    content: "{{ signed.certificates[inventory_hostname].certificate }}"
    dest: /var/lib/kubelet/pki/kubelet.crt
    mode: "0644"
  when: inventory_hostname in signed.certificates and not ansible_check_mode
"""

RETURN = r"""
certificates:
  description:
    - The certificates issued in this run (or that would be, in check mode), by request id.
      Requests whose certificate still matches are not in it.
  returned: always
  type: dict
  sample:
    node1:
      certificate: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
      reason: "SANs differ: added IP 10.0.0.5"
      not_after: "2027-11-25T18:27:00Z"
      serial: "6d2f0a9b1c3e4f5a6b7c8d9e0f1a2b3c"
unchanged:
  description: Ids of the requests whose current certificate still matches.
  returned: always
  type: list
  elements: str
  sample: ["node2", "node3"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki, requirements

REQUEST_OPTIONS = dict(
    id=dict(type='str', required=True),
    public_key=dict(type='str', no_log=False),
    current_certificate=dict(type='str'),
    common_name=dict(type='str', required=True),
    organizations=dict(type='list', elements='str', default=[]),
    dns_names=dict(type='list', elements='str', default=[]),
    ip_addresses=dict(type='list', elements='str', default=[]),
    usage=dict(type='str', default='client', choices=['server', 'client', 'server+client']),
    validity_days=dict(type='float', default=pki.DEFAULT_LEAF_DAYS),
    renew_before_days=dict(type='float', default=pki.DEFAULT_RENEW_BEFORE_DAYS),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_cert_path=dict(type='path', required=True),
            ca_key_path=dict(type='path', required=True, no_log=False),
            requests=dict(type='list', elements='dict', required=True, options=REQUEST_OPTIONS),
        ),
        supports_check_mode=True,
    )
    requirements.require(module, ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    reason = None
    try:
        ca = pki.CA(params['ca_cert_path'], params['ca_key_path'])
    except pki.MissingFileError as exc:
        if not module.check_mode:
            module.fail_json(msg=str(exc))
        # Check mode on a fresh cluster: the CA is created by an earlier task that did not run.
        ca = None
        reason = '%s (yet); it would be issued once it does' % exc
    except files.FileError as exc:
        module.fail_json(msg=str(exc))
    if ca is None:
        certificates, unchanged, errors = pki.plan_batch_without_ca(params['requests'], reason)
    else:
        certificates, unchanged, errors = pki.issue_batch(ca, params['requests'], check_mode=module.check_mode)
    if errors:
        module.fail_json(msg='%d invalid request(s): %s' % (len(errors), '; '.join(errors)), errors=errors)
    module.exit_json(changed=bool(certificates), certificates=certificates, unchanged=unchanged)


if __name__ == '__main__':
    main()
