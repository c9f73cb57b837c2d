#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kernel_settings
short_description: Kernel features, sysctls and swap for a Kubernetes node in one step
version_added: 0.1.0
description:
  - Makes sure kernel features are available, loading the module when a feature is missing and
    accepting a feature built into the kernel (checked by the feature itself, for example the
    overlay file system or the bridge netfilter sysctls). Lists them in I(modules_file) so they
    are loaded at boot.
  - Writes I(sysctl) to I(sysctl_file) and applies every value that differs from the running kernel.
  - Turns swap off and comments swap entries out of I(fstab) so it stays off.
  - In a container, the kernel is the host's. Host-wide sysctls (those outside C(net.)) and swap are
    left alone and reported in C(notes); a value that cannot be written is reported, not failed.
options:
  modules:
    description: Kernel features to have, by module name.
    type: list
    elements: str
    default: []
  modules_file:
    description: File listing I(modules) for systemd-modules-load; empty to write none.
    type: path
    default: /etc/modules-load.d/kubeforge.conf
  sysctl:
    description: Sysctl names and values.
    type: dict
    default: {}
  sysctl_file:
    description: File holding I(sysctl) for systemd-sysctl at boot; empty to write none.
    type: path
    default: /etc/sysctl.d/99-kubeforge.conf
  swap_off:
    description: Turn swap off now and at boot.
    type: bool
    default: true
  fstab:
    description: The file system table whose swap entries are commented out.
    type: path
    default: /etc/fstab
  container:
    description:
      - Whether the host is a container (C(kubeforge_host.container) from preflight_host).
        Detected when not given.
    type: bool
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Compares everything and reports what would change; loads, writes and applies nothing.
  diff_mode:
    support: full
    details: Shows the files that would change and the running sysctl values that would be set.
"""

EXAMPLES = r"""
- name: Prepare the kernel for containers and Kubernetes networking
  kubeforge.cluster.kernel_settings:
    modules: [overlay, br_netfilter]
    sysctl:
      net.ipv4.ip_forward: 1
      net.bridge.bridge-nf-call-iptables: 1
"""

RETURN = r"""
modules:
  description: Each feature and how it was found (present, loaded).
  returned: always
  type: dict
  sample: {overlay: present, br_netfilter: loaded}
sysctl:
  description: Each sysctl with the wanted value, the value found and what was done.
  returned: always
  type: dict
  sample: {net.ipv4.ip_forward: {value: "1", current: "0", state: applied}}
swap:
  description: Active swap devices found.
  returned: always
  type: dict
  sample: {active: []}
notes:
  description: What was left alone, and why.
  returned: always
  type: list
  elements: str
  sample: ["sysctl vm.overcommit_memory: host-wide, left to the machine running this container (is 0, wanted 1)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, host_facts
from ansible_collections.kubeforge.cluster.plugins.module_utils import kernel_settings as ks

HEADER = ["Managed by kubeforge.cluster (os role): Kubernetes node kernel settings."]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            modules=dict(type="list", elements="str", default=[]),
            modules_file=dict(type="path", default="/etc/modules-load.d/kubeforge.conf"),
            sysctl=dict(type="dict", default={}),
            sysctl_file=dict(type="path", default="/etc/sysctl.d/99-kubeforge.conf"),
            swap_off=dict(type="bool", default=True),
            fstab=dict(type="path", default="/etc/fstab"),
            container=dict(type="bool"),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params, header=HEADER)
    container = params["container"]
    if container is None:
        container = bool(host_facts.detect_container())
    apply = not module.check_mode
    plan = ks.Plan(params, container)
    try:
        plan.modules((lambda name: module.run_command(["modprobe", name])) if apply else None)
        plan.sysctls(apply)
        plan.swap((lambda: module.run_command(["swapoff", "-a"])) if apply else None)
        if apply:
            for path, (_before, after) in plan.files.items():
                files.write_file(module, path, after.encode("utf-8"), mode=0o644)
    except (ks.KernelError, OSError) as exc:
        module.fail_json(msg=str(exc), **plan.result)

    diff = [dict(before_header=path, after_header=path, before=before or "", after=after)
            for path, (before, after) in sorted(plan.files.items())]
    runtime = {k: v for k, v in plan.result["sysctl"].items() if v.get("state") in ("applied", "would set")}
    if runtime:
        diff.append(dict(
            before_header="running kernel (sysctl)", after_header="running kernel (sysctl)",
            before="".join(f"{k} = {v['current']}\n" for k, v in sorted(runtime.items())),
            after="".join(f"{k} = {v['value']}\n" for k, v in sorted(runtime.items()))))
    for note in plan.notes:
        module.warn(note)
    module.exit_json(changed=plan.changed, notes=plan.notes, diff=diff, **plan.result)


if __name__ == "__main__":
    main()
