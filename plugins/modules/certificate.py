#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: certificate
short_description: Ensure a private key and an X.509 certificate for a Kubernetes cluster
version_added: 0.1.0
description:
  - Ensures a private key and a certificate on the host where it runs, laid out and shaped the way
    kubeadm does it (C(/etc/kubernetes/pki/...)).
  - With O(usage=ca) and no CA paths it creates a self-signed root CA. Otherwise the certificate is
    signed by the CA whose certificate and key are at O(ca_cert_path) and O(ca_key_path) on the same host
    (with O(usage=ca) that makes an intermediate CA).
  - The certificate is re-issued only when it no longer matches the request (subject CN and O, SANs,
    usages, issuer, key mismatch, not signed by the given CA) or expires within O(renew_before_days).
    The result says why in RV(reason).
  - A present, valid private key of the requested O(key_type) is never regenerated; renewal re-signs
    the existing key.
  - A corrupted leaf certificate is re-issued. A corrupted CA certificate or CA key is an error that
    names the file.
  - An existing CA is never replaced. When it would need re-issuing, the module reports
    RV(needs_renewal=true), the reason and a warning, and changes nothing, unless O(force=true).
  - Key usages follow what Kubernetes components and kubeadm expect. CA - keyCertSign, cRLSign,
    digitalSignature, basicConstraints CA:true (critical). Leaves - digitalSignature (plus
    keyEncipherment for RSA keys), extended key usage serverAuth and/or clientAuth,
    basicConstraints CA:false, subject and authority key identifiers.
  - Needs the Python C(cryptography) library (36.0 or newer) on the host.
options:
  path:
    description: Where the certificate (PEM) is kept.
    type: path
    required: true
  key_path:
    description:
      - Where the private key (PEM, unencrypted) is kept. It is always written with mode C(0600);
        O(owner) and O(group) apply to it as well.
    type: path
    required: true
  common_name:
    description: Subject common name (CN).
    type: str
    required: true
  organizations:
    description: Subject organizations (O), for example C(system:masters) or C(system:nodes).
    type: list
    elements: str
    default: []
  dns_names:
    description: DNS subject alternative names.
    type: list
    elements: str
    default: []
  ip_addresses:
    description: IP subject alternative names (IPv4 or IPv6).
    type: list
    elements: str
    default: []
  usage:
    description:
      - V(ca) for a certificate authority, V(server) for TLS servers, V(client) for TLS clients,
        V(server+client) for both (etcd members).
    type: str
    required: true
    choices: [ca, server, client, server+client]
  key_type:
    description: Type of the private key that is generated when none is present.
    type: str
    default: ecdsa-p256
    choices: [ecdsa-p256, rsa-2048, rsa-3072, rsa-4096]
  validity_days:
    description:
      - Validity of a newly issued certificate, in days; fractions are allowed (V(0.01) is about 14 minutes).
        Defaults to 3650 for CAs and 365 otherwise.
    type: float
  renew_before_days:
    description:
      - Re-issue the certificate when it expires within this many days (fractions allowed). Must be smaller
        than O(validity_days).
    type: float
    default: 30
  ca_cert_path:
    description: Certificate of the signing CA, on the host. Required unless O(usage=ca).
    type: path
  ca_key_path:
    description: Private key of the signing CA, on the host. Required unless O(usage=ca).
    type: path
  force:
    description:
      - Re-issue the certificate even when it matches the request, and allow replacing an existing
        CA certificate. The private key is still kept when it is valid and of the requested type.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
  - kubeforge.cluster.attributes.libraries
attributes:
  check_mode:
    support: full
    details: Compares and reports what would change; writes nothing and generates no key.
  diff_mode:
    support: full
    details: Shows parsed fields (subject, SANs, usages, issuer, not_after, serial), never key material.
notes:
  - O(mode) applies to the certificate only; the key is always C(0600).
  - Missing parent directories are created with mode C(0755).
seealso:
  - module: kubeforge.cluster.private_key
  - module: kubeforge.cluster.certificate_batch
"""

EXAMPLES = r"""
- name: Cluster CA
  kubeforge.cluster.certificate:
    path: /etc/kubernetes/pki/ca.crt
    key_path: /etc/kubernetes/pki/ca.key
    common_name: kubernetes-ca
    usage: ca

- name: API server serving certificate
  kubeforge.cluster.certificate:
    path: /etc/kubernetes/pki/apiserver.crt
    key_path: /etc/kubernetes/pki/apiserver.key
    ca_cert_path: /etc/kubernetes/pki/ca.crt
    ca_key_path: /etc/kubernetes/pki/ca.key
    common_name: kube-apiserver
    usage: server
    dns_names: [cp1, kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local]
    ip_addresses: [10.233.0.1, 192.0.2.10]

- name: etcd member certificate (server and client)
  kubeforge.cluster.certificate:
    path: /etc/kubernetes/pki/etcd/server.crt
    key_path: /etc/kubernetes/pki/etcd/server.key
    ca_cert_path: /etc/kubernetes/pki/etcd/ca.crt
    ca_key_path: /etc/kubernetes/pki/etcd/ca.key
    common_name: kube-etcd
    usage: server+client
    dns_names: [etcd1, localhost]
    ip_addresses: [192.0.2.11, 127.0.0.1]
"""

RETURN = r"""
reason:
  description: Why the certificate was (or would be) issued, or why a CA needs re-issuing; empty when it matches.
  returned: always
  type: str
  sample: "SANs differ: added IP 10.0.0.5"
needs_renewal:
  description:
    - Whether the certificate at O(path) still needs re-issuing after this run. True for a CA that was
      kept, and in check mode for anything that would be issued.
  returned: always
  type: bool
  sample: false
not_after:
  description: End of validity (ISO 8601, UTC) of the certificate now at O(path), or that would be issued.
  returned: always
  type: str
  sample: "2027-11-25T18:27:00Z"
serial:
  description: Serial number (lowercase hex). Null in check mode when a certificate would be issued.
  returned: always
  type: str
  sample: "3f2a9c0e5b7d41e8a0c6f1d2b3a49587"
fingerprint:
  description: SHA-256 of the DER certificate (lowercase hex). Null in check mode when a certificate would be issued.
  returned: always
  type: str
  sample: "9b1d2c6f4e0a8d3b7c5e1f2a6d9c8b7e4f3a2d1c0b9e8f7a6d5c4b3a2f1e0d9c"
subject:
  description: Subject (RFC 4514).
  returned: always
  type: str
  sample: "CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins"
sans:
  description: Subject alternative names.
  returned: always
  type: list
  elements: str
  sample: ["DNS:cp1", "DNS:kubernetes", "IP:10.233.0.1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki, requirements


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            key_path=dict(type='path', required=True, no_log=False),
            common_name=dict(type='str', required=True),
            organizations=dict(type='list', elements='str', default=[]),
            dns_names=dict(type='list', elements='str', default=[]),
            ip_addresses=dict(type='list', elements='str', default=[]),
            usage=dict(type='str', required=True, choices=list(pki.USAGES)),
            key_type=dict(type='str', default='ecdsa-p256', choices=list(pki.KEY_TYPES)),
            validity_days=dict(type='float'),
            renew_before_days=dict(type='float', default=pki.DEFAULT_RENEW_BEFORE_DAYS),
            ca_cert_path=dict(type='path'),
            ca_key_path=dict(type='path', no_log=False),
            force=dict(type='bool', default=False),
        ),
        required_together=[('ca_cert_path', 'ca_key_path')],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    requirements.require(module, ('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR))
    params = module.params
    try:
        request = pki.Request(
            common_name=params['common_name'],
            organizations=params['organizations'],
            dns_names=params['dns_names'],
            ip_addresses=params['ip_addresses'],
            usage=params['usage'],
            validity_days=params['validity_days'],
            renew_before_days=params['renew_before_days'],
            what=params['path'],
        )
        plan = pki.plan_certificate(
            params['path'], params['key_path'], request, params['key_type'],
            ca_cert_path=params['ca_cert_path'], ca_key_path=params['ca_key_path'],
            force=params['force'], check_mode=module.check_mode,
        )
    except files.FileError as exc:
        module.fail_json(msg=str(exc))

    for warning in plan.warnings:
        module.warn(warning)
    changed = files.apply_plan(module, plan, attribute_paths=[params['path']], secret_paths=[params['key_path']])
    result = plan.public_result()
    result.update(changed=changed, reason=plan.reason, needs_renewal=plan.needs_renewal)
    if module._diff:
        result['diff'] = {'before': plan.before or {}, 'after': plan.after or {},
                          'before_header': params['path'], 'after_header': params['path']}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
