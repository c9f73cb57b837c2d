#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_host
short_description: Read the facts the collection needs about a host and check that it can run a node
version_added: 0.1.0
description:
  - Reads, in one pass and with the standard library only, what the roles need to know about a host
    (operating system and family, architecture, container or machine, cgroup version, memory, CPUs,
    swap, time service, the versions the download engine installed, managed programs still running
    a binary that was replaced since they started) and returns it as the C(kubeforge_host) fact.
  - Checks the host and fails with every problem at once; problems that do not stop an install
    (memory and CPU below the recommendation, unsynchronized clock, cgroup v1) are warnings.
  - A port is in use only when a program other than its expected owners listens on it, so a re-run
    on a working node passes.
  - Changes nothing on the host.
options:
  ports:
    description:
      - Ports this host needs. Each item has C(port), C(purpose) and C(owners), the program names
        allowed to hold the port already (the component that is meant to listen there).
    type: list
    elements: dict
    default: []
  min_memory_mb:
    description: Recommended memory; less is a warning.
    type: int
    default: 1024
  min_cpus:
    description: Recommended CPUs; fewer is a warning.
    type: int
    default: 1
  encryption_config:
    description:
      - The control plane's EncryptionConfiguration. When the file exists, the result names the key
        that encrypts new writes by its provider, name and a fingerprint (never the key), so that
        control planes holding different keys are refused before anything changes.
    type: path
  kernel_needs:
    description:
      - Kernel modules the host must have, by name, each with what needs it, for example C(vxlan) with
        C(flannel's vxlan backend). A module counts when it is loaded or built in (C(/sys/module/<name>)) or installed
        (C(modules.dep) or C(modules.builtin) of the running kernel); one missing is an error naming it.
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Reads only; behaves the same in check mode.
"""

EXAMPLES = r"""
- name: Check the host and read its facts
  kubeforge.cluster.preflight_host:
    min_memory_mb: 2048
    min_cpus: 2
    ports:
      - {port: 6443, purpose: kube-apiserver, owners: [kube-apiserver]}
      - {port: 2379, purpose: etcd clients, owners: [etcd]}
"""

RETURN = r"""
ansible_facts:
  description: Facts about the host.
  returned: always
  type: dict
  contains:
    kubeforge_host:
      description: What the roles read about the host.
      type: dict
      sample:
        os_id: debian
        os_family: Debian
        os_version: "12"
        os_major: "12"
        os_codename: bookworm
        os_pretty: Debian GNU/Linux 12 (bookworm)
        machine: x86_64
        arch: amd64
        container: podman
        cgroup_version: 2
        memory_mb: 3925
        cpus: 2
        kernel: 6.1.0-26-amd64
        systemd: true
        swaps: []
        time_sync: {service: chronyd, synchronized: true}
        artifacts: {containerd: 2.1.9, runc: 1.3.6, etcd: 3.6.9}
        stale_programs: []
        python_libraries: {apt: true, cryptography: true, yaml: true}
        cni_configs: [10-kubeforge-bridge.conflist]
        kernel_modules: {vxlan: true}
        encryption_key: {provider: secretbox, name: key1, fingerprint: "sha256:8d1a3f0c2b4e6a79"}
errors:
  description: The problems that make the host unusable.
  returned: always
  type: list
  elements: str
  sample: ["port 6443 (kube-apiserver) is in use by nginx"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import encryption, host_facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ports=dict(type="list", elements="dict", default=[]),
            min_memory_mb=dict(type="int", default=1024),
            min_cpus=dict(type="int", default=1),
            encryption_config=dict(type="path"),
            kernel_needs=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )

    def run_command(argv):
        return module.run_command(argv)

    needs = module.params["kernel_needs"]
    facts = host_facts.gather(run_command, modules=sorted(needs))
    errors, warnings = host_facts.evaluate(
        facts, module.params["ports"], module.params["min_memory_mb"], module.params["min_cpus"], kernel_needs=needs)
    if module.params["encryption_config"]:
        try:
            facts["encryption_key"] = encryption.held_key(module.params["encryption_config"])
        except encryption.EncryptionError as exc:
            errors.append(str(exc))
    for warning in warnings:
        module.warn(warning)
    result = dict(changed=False, ansible_facts=dict(kubeforge_host=facts), errors=errors)
    if errors:
        module.fail_json(msg="host check failed: " + "; ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
