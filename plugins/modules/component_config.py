#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: component_config
short_description: Write a component's configuration file from structured data, validated against upstream schemas
version_added: 0.1.0
description:
  - Writes the configuration file of a Kubernetes component, containerd or etcd from a dict (the role's
    defaults in O(config), the user's changes in O(overrides)), after validating it against schema data the
    collection carries, generated from upstream documentation and source (C(hack/gen-schemas)).
  - >-
    Every problem is reported at once, each with the path of the field and, for an unknown field, the
    closest valid names, for example C(KubeletConfiguration: unknown field .cgroupDrivr; did you mean
    cgroupDriver?) or C(KubeletConfiguration: .maxPods must be an integer, got 'many').
  - The output is deterministic (sorted keys, the collection's own YAML and TOML writers), so a re-run
    never rewrites an unchanged file; the comparison is byte for byte.
  - For the Kubernetes kinds, C(apiVersion) and C(kind) are set by the module. Nested structs, lists and
    maps of structs are checked field by field; embedded members are inlined. Types the upstream pages only
    name get these checks - durations (C(meta/v1.Duration)) must be Go duration strings such as C(10s),
    quantities such as C(100Mi), taints must have a known effect, times must be RFC 3339. Fields marked
    required upstream are not enforced, since the components default most of them.
  - Where a field wants an integer, a number or a boolean, text that spells exactly one (C("110"), C("true"))
    is accepted and written as that type, as for typed module options; templates render to text in
    ansible-core before 2.19. Other text is an error.
  - For kube-scheduler, the C(args) of a profile's C(pluginConfig) are checked when their kind (given, or
    C(<plugin name>Args)) is one the schema knows.
  - B(containerd) (O(kind=containerd)). The file is TOML with C(version = 2) for containerd 1.6 and 1.7 and
    C(version = 3) for 2.x, chosen from O(containerd_version). The validation rule is exact. Top-level keys
    and the tables they hold (C(grpc), C(debug), C(metrics), ...) are checked against containerd's own
    C(Config) type of that minor release. Under C(plugins), a plugin section must be one the schema data
    lists for that config version (version 2 - C(io.containerd.grpc.v1.cri); version 3 -
    C(io.containerd.cri.v1.images), C(io.containerd.cri.v1.runtime), C(io.containerd.grpc.v1.cri),
    C(io.containerd.transfer.v1.local)). Inside a plugin section every key and table the data documents is
    checked (types taken from the documented examples); runtime names under C(containerd.runtimes) are free.
    Any other key, at any depth, fails unless its path (or a parent path) is in O(allow_unknown), which
    turns the failure into a warning and skips validation below that path. A key of the other config version
    is reported as such, with its new place when the data knows it.
  - B(etcd) (O(kind=etcd)). The file is etcd's C(--config-file) YAML, keys are the flag names without dashes,
    checked against the flag list of etcd 3.5 or 3.6 (O(etcd_version)). etcd reads this file leniently and
    silently ignores a key it does not know, so the module also knows where the file differs from the flags
    - the TLS flags live under C(client-transport-security) and C(peer-transport-security) (C(cert-file),
    C(key-file), C(client-cert-auth), C(trusted-ca-file), ...), the socket flags under C(socket-options),
    a few flags (C(client-crl-file), C(peer-crl-file)) cannot be set in the file at all, and durations
    are integers of nanoseconds.
  - O(allow_unknown) is the documented way past gaps in the schema data, for example a field added by a
    Kubernetes release newer than the data.
options:
  kind:
    description: What the file configures.
    type: str
    required: true
    choices:
      - KubeletConfiguration
      - KubeProxyConfiguration
      - KubeSchedulerConfiguration
      - EncryptionConfiguration
      - Policy
      - AdmissionConfiguration
      - AuthenticationConfiguration
      - AuthorizationConfiguration
      - containerd
      - etcd
  dest:
    description: Path of the file to write.
    type: path
    required: true
  config:
    description: The configuration (typically the role's defaults).
    type: dict
    default: {}
  overrides:
    description:
      - Deep-merged onto O(config) - mappings merge key by key, lists and scalars replace, and a null value
        deletes the key.
    type: dict
    default: {}
  containerd_version:
    description: Version of containerd that reads the file, for example C(1.7.24) or C(2.1.4). Required for O(kind=containerd).
    type: str
  etcd_version:
    description: Version of etcd that reads the file, for example C(3.5.16) or C(3.6.4). Required for O(kind=etcd).
    type: str
  allow_unknown:
    description:
      - Dotted field paths that pass validation with a warning instead of failing, for example
        C(someFieldOfANewerRelease), C(profiles.pluginConfig.args) or C(plugins."io.containerd.nri.v1.nri").
        A path covers everything below it; list indices are ignored (C(a[0].b) and C(a.b) are the same).
        Segments that are not plain names are double-quoted.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
  - kubeforge.cluster.attributes.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: >-
      Shows the text before and after. For EncryptionConfiguration every C(secret) value is replaced by a
      short one-way marker, and secrets are never returned.
notes:
  - O(mode) defaults to C(0600) for EncryptionConfiguration and C(0644) otherwise.
  - Secrets of an EncryptionConfiguration are masked in everything the module returns; still set
    C(no_log) on such tasks, because the task's own arguments are shown by callbacks.
seealso:
  - module: kubeforge.cluster.kubeconfig
"""

EXAMPLES = r"""
- name: Kubelet configuration
  kubeforge.cluster.component_config:
    kind: KubeletConfiguration
    dest: /var/lib/kubelet/config.yaml
    config:
      authentication:
        anonymous: {enabled: false}
        webhook: {enabled: true}
        x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
      authorization: {mode: Webhook}
      cgroupDriver: systemd
      clusterDNS: [10.233.0.10]
      clusterDomain: cluster.local
    overrides: "{{ kubelet_config_overrides | default({}) }}"
  register: kubelet_config
  notify: Restart kubelet

- name: containerd 2.x configuration
  kubeforge.cluster.component_config:
    kind: containerd
    containerd_version: 2.1.4
    dest: /etc/containerd/config.toml
    config:
      plugins:
        io.containerd.cri.v1.runtime:
          containerd:
            runtimes:
              runc:
                runtime_type: io.containerd.runc.v2
                options: {SystemdCgroup: true}
        io.containerd.cri.v1.images:
          pinned_images: {sandbox: "registry.k8s.io/pause:3.10"}
          registry: {config_path: /etc/containerd/certs.d}
        io.containerd.nri.v1.nri:
          disable: false
    allow_unknown:
      - plugins."io.containerd.nri.v1.nri"

- name: etcd member configuration
  kubeforge.cluster.component_config:
    kind: etcd
    etcd_version: 3.5.16
    dest: /etc/etcd/etcd.conf.yml
    config:
      name: etcd1
      data-dir: /var/lib/etcd
      listen-client-urls: https://192.0.2.11:2379,https://127.0.0.1:2379
      advertise-client-urls: https://192.0.2.11:2379
      client-transport-security:
        cert-file: /etc/kubernetes/pki/etcd/server.crt
        key-file: /etc/kubernetes/pki/etcd/server.key
        client-cert-auth: true
        trusted-ca-file: /etc/kubernetes/pki/etcd/ca.crt

- name: Encryption at rest
  kubeforge.cluster.component_config:
    kind: EncryptionConfiguration
    dest: /etc/kubernetes/encryption-config.yaml
    config:
      resources:
        - resources: [secrets]
          providers:
            - aescbc:
                keys:
                  - name: key1
                    secret: "{{ encryption_key }}"
            - identity: {}
  no_log: true
"""

RETURN = r"""
dest:
  description: Path of the file.
  returned: always
  type: str
  sample: /var/lib/kubelet/config.yaml
checksum:
  description: SHA-256 of the file's content (as written, or as it would be written in check mode), for handlers.
  returned: always
  type: str
  sample: "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
kind:
  description: The kind written.
  returned: always
  type: str
  sample: KubeletConfiguration
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_config, files


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type='str', required=True, choices=list(component_config.KINDS)),
            dest=dict(type='path', required=True),
            config=dict(type='dict', default={}),
            overrides=dict(type='dict', default={}),
            containerd_version=dict(type='str'),
            etcd_version=dict(type='str'),
            allow_unknown=dict(type='list', elements='str', default=[]),
        ),
        required_if=[('kind', 'containerd', ('containerd_version',)), ('kind', 'etcd', ('etcd_version',))],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    params = module.params
    kind = params['kind']
    secret = kind in component_config.SECRET_KINDS
    if secret:
        module.no_log_values.update(component_config.encryption_secrets(params['config']))
        module.no_log_values.update(component_config.encryption_secrets(params['overrides']))
    if params['mode'] is None:
        params['mode'] = '0600' if secret else '0644'
    try:
        prepared = component_config.prepare(
            kind, params['config'], params['overrides'], allow_unknown=params['allow_unknown'],
            containerd_version=params['containerd_version'], etcd_version=params['etcd_version'],
        )
    except component_config.ConfigError as exc:
        module.fail_json(msg='%d problem(s) in the %s configuration:\n%s' % (len(exc.errors), kind, '\n'.join(exc.errors)),
                         errors=exc.errors)
    module.no_log_values.update(prepared.secrets)
    for warning in prepared.warnings:
        module.warn(warning)

    dest = params['dest']
    try:
        current = files.read_file(dest)
    except files.FileError as exc:
        module.fail_json(msg=str(exc))
    content = prepared.content.encode('utf-8')
    plan = files.Plan()
    if current != content:
        plan.files[dest] = content
        if secret:
            plan.secret.add(dest)
    changed = files.apply_plan(module, plan, attribute_paths=[dest])
    result = dict(changed=changed, dest=dest, checksum=prepared.checksum, kind=kind)
    if module._diff:
        before = current.decode('utf-8', errors='replace') if current is not None else ''
        after = prepared.content
        if secret:
            before = component_config.mask_secrets(before)
            after = component_config.mask_secrets(after)
        result['diff'] = {'before': before, 'after': after, 'before_header': dest, 'after_header': dest}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
