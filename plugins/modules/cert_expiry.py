#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cert_expiry
short_description: Report when every certificate and kubeconfig of a host expires
version_added: 0.1.0
description:
  - Reads, on the host where it runs, every certificate the cluster PKI puts there - the CAs of its groups,
    kube-apiserver's, the front proxy's, the kubelet's client and serving certificates, etcd's - and the
    client certificate of every kubeconfig (C(admin.conf), C(super-admin.conf), C(controller-manager.conf),
    C(scheduler.conf), C(kubelet.conf), C(kube-proxy.conf)), embedded or referenced by path.
  - Which files a host holds comes from the collection's one certificate catalogue, by the host's groups
    (O(control_planes), O(nodes), O(etcd_hosts)), so the paths are those the pki and etcd roles write.
  - Returns one row per file with its expiry, the time left, the CA that signed it (and whether the CA
    certificate on this host verifies the signature), and the rows within O(fail_within) of expiry, which
    a check fails on. A missing or unreadable file counts as within.
  - With O(services=true) it also reads, through systemd, which services (etcd, kube-apiserver,
    kube-controller-manager, kube-scheduler, kubelet, kube-proxy) started before one of their certificate,
    key or kubeconfig files last changed, so they still use the old certificate until restarted.
  - Only reads; never changes anything. Used by C(playbooks/certs.yml).
  - Needs the Python C(cryptography) library (36.0 or newer) and PyYAML on the host, which the os role installs.
options:
  host:
    description: The host's inventory name, as in the groups below.
    type: str
    required: true
  control_planes:
    description:
      - The control planes (group C(kube_control_plane)), in inventory order (the first one holds
        C(super-admin.conf)).
    type: list
    elements: str
    default: []
  nodes:
    description: The nodes (group C(kube_node)).
    type: list
    elements: str
    default: []
  etcd_hosts:
    description: The etcd members (group C(etcd)).
    type: list
    elements: str
    default: []
  fail_within:
    description:
      - The threshold. A duration in days, hours and minutes (V(7d), V(12h), V(90m), V(1d12h), V(0.5d)); a bare
        number is days.
    type: str
    default: 7d
  services:
    description: Also read which services started before their certificate files changed.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode changes nothing about what it does.
notes:
  - Unlike the modules that write certificates, this one fails on a host without C(cryptography) or PyYAML,
    in check mode too, since there is nothing to report without them.
seealso:
  - module: kubeforge.cluster.certificate_batch
  - module: kubeforge.cluster.kubeconfig
"""

EXAMPLES = r"""
- name: Read every certificate of the host
  kubeforge.cluster.cert_expiry:
    host: "{{ inventory_hostname }}"
    control_planes: "{{ groups['kube_control_plane'] | default([]) }}"
    nodes: "{{ groups['kube_node'] | default([]) }}"
    etcd_hosts: "{{ groups['etcd'] | default([]) }}"
    fail_within: 30d
  register: expiry

- name: Say which services still use an old certificate
  ansible.builtin.debug:
    msg: "{{ expiry.restart }}"
"""

RETURN = r"""
host:
  description: O(host), so that results gathered from many hosts say whose they are.
  returned: always
  type: str
  sample: cp1
rows:
  description:
    - One entry per certificate and kubeconfig, in the catalogue's order. C(kind) is V(ca), V(certificate) or
      V(kubeconfig); C(name) the catalogue's name (C(etcd/server)) or the kubeconfig's file name; C(ca) the CA
      family (V(kubernetes), V(front-proxy), V(etcd)) and C(ca_path) its certificate on this host; C(subject)
      and C(issuer) are common names (C(issuer) is V(self-signed) for a root CA); C(seconds_left) is negative
      once expired and null when the file is missing or unreadable; C(left) says it as V(364d), V(5h 12m),
      V(14m) or V(expired 2d ago); C(status) is V(ok), V(within <fail_within>), V(expired), V(missing) or
      V(unreadable); C(problem) says what else is wrong (unreadable, not signed by this host's CA, the copy
      beside an embedded kubeconfig certificate differs); C(inside) is the threshold decision; C(order) sorts
      the rows by time left, missing and unreadable first.
  returned: always
  type: list
  elements: dict
  sample:
    - host: cp1
      name: apiserver
      kind: certificate
      path: /etc/kubernetes/pki/apiserver.crt
      ca: kubernetes
      ca_path: /etc/kubernetes/pki/ca.crt
      client_certificate: null
      subject: kube-apiserver
      issuer: kubernetes-ca
      not_after: "2027-11-25T18:27:00Z"
      expires: "2027-11-25 18:27"
      seconds_left: 31449600
      left: 364d
      signed_by_ca: true
      status: ok
      problem: ""
      copy_seconds_left: null
      inside: false
      order: 31449600
failing:
  description: The rows within O(fail_within) of expiry, expired, missing or unreadable.
  returned: always
  type: list
  elements: dict
  sample: []
longest_left:
  description:
    - The longest time left (seconds) of the leaf certificates of each CA family on this host, copies beside
      kubeconfigs included. A renewal window longer than this re-issues every one of them.
  returned: always
  type: dict
  sample: {kubernetes: 31449600, front-proxy: 31449600, etcd: 31449000}
threshold_seconds:
  description: O(fail_within) in seconds.
  returned: always
  type: int
  sample: 604800
services:
  description:
    - The services that read certificates on this host, with their systemd state and C(stale), the files
      changed after the running process started. Empty with O(services=false).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: kube-apiserver, active: true, state: active/running, stale: [/etc/kubernetes/pki/apiserver.crt]}
restart:
  description: Names of the services whose C(stale) list is not empty; a restart would load the new certificates.
  returned: always
  type: list
  elements: str
  sample: [kube-apiserver]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeforge.cluster.plugins.module_utils import cert_expiry, etcd_member, pki


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type='str', required=True),
            control_planes=dict(type='list', elements='str', default=[]),
            nodes=dict(type='list', elements='str', default=[]),
            etcd_hosts=dict(type='list', elements='str', default=[]),
            fail_within=dict(type='str', default='7d'),
            services=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    for label, present, error in (('cryptography', pki.HAS_CRYPTOGRAPHY, pki.CRYPTOGRAPHY_IMPORT_ERROR),
                                  ('PyYAML', cert_expiry.HAS_YAML, cert_expiry.YAML_IMPORT_ERROR)):
        if not present:
            module.fail_json(msg=missing_required_lib(label), exception=error)
    params = module.params
    run = None
    if params['services']:
        def run_command(argv):
            return module.run_command(argv, handle_exceptions=False)

        run = etcd_member.command_runner(run_command, module.get_bin_path('timeout'))
    try:
        result = cert_expiry.report(params['host'], params['control_planes'], params['nodes'],
                                    params['etcd_hosts'], params['fail_within'], run=run)
    except cert_expiry.CertExpiryError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
