#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: reset_host
short_description: Remove from a host what the collection put there, in one step
version_added: 0.1.0
description:
  - Takes a host back to what it was before the collection, removing only what the options name (the reset
    role passes its one list, C(roles/reset/vars/main.yml)), and reports each thing it removed.
  - In this order - stops O(services) in the order given; removes every container of containerd (pods through
    the CRI with C(crictl), so their networks are torn down, then any task left with C(ctr)) and stops
    containerd (a containerd that is stopped while its containers still run is started for that); disables
    every unit that is enabled; unmounts what matches O(unmount), deepest first; deletes the network devices
    O(interfaces), the routes of O(route_protocols), the iptables rules and chains of
    O(iptables_chain_prefixes) and O(iptables_comments) (one C(iptables-restore --noflush) per family, IPv4 and
    IPv6) and the nftables tables O(nftables_tables); removes the unit files and the links that enable them,
    the files the artifacts record O(artifacts_state) lists, O(paths), and then O(empty_dirs) that are empty;
    removes O(users); and runs C(systemctl daemon-reload) once when a unit changed.
  - Each step looks first and acts only on what it finds, so a second run changes nothing.
  - Nothing is removed across a mount point - a listed directory that is a mount point is emptied and kept, and
    one that still holds a mount the patterns do not name is refused. A listed path that is a symbolic link is
    removed as a link.
options:
  services:
    description:
      - systemd units to stop, in this order (C(.service) is added to a name without a suffix). Each one's unit
        file in O(unit_dir), and its links in C(*.wants) and C(*.requires) there, are removed.
    type: list
    elements: str
    default: []
  unit_dir:
    description: Where the unit files are.
    type: path
    default: /etc/systemd/system
  containerd:
    description:
      - containerd, whose containers are removed before it is stopped (after every unit of O(services)). Left
        out, no container is touched.
    type: dict
    suboptions:
      service:
        description: Its systemd unit; removed like those of O(services).
        type: str
        default: containerd
      address:
        description: Its socket.
        type: path
        default: /run/containerd/containerd.sock
      state_dir:
        description: Its state directory (where it keeps the running tasks).
        type: path
        default: /run/containerd
      ctr:
        description: The C(ctr) program.
        type: path
        default: /usr/local/bin/ctr
      crictl:
        description: The C(crictl) program; when it is missing, containers are removed with C(ctr) alone.
        type: path
        default: /usr/local/bin/crictl
  unmount:
    description:
      - Mount points to unmount, as shell patterns matched against the whole path, where C(*) also matches C(/)
        (C(/var/lib/kubelet/*) is everything mounted below C(/var/lib/kubelet), not the directory itself).
    type: list
    elements: str
    default: []
  unmount_self_binds:
    description:
      - Directories to unmount where they are bound onto themselves (the kubelet binds its root directory onto
        itself when the file system holding it is not shared). A file system mounted there from elsewhere (a
        volume of its own) stays mounted, and the directory is emptied, not removed.
    type: list
    elements: path
    default: []
  interfaces:
    description: Network devices to delete (C(ip link delete)).
    type: list
    elements: str
    default: []
  route_protocols:
    description: IPv4 routes of these protocol numbers are removed (C(ip route flush proto N)).
    type: list
    elements: int
    default: []
  iptables_chain_prefixes:
    description:
      - Chains whose names start with one of these are flushed and deleted, in every table of C(iptables) and
        C(ip6tables), with every rule elsewhere that jumps or goes to them.
    type: list
    elements: str
    default: []
  iptables_comments:
    description: Rules outside those chains that carry one of these comments (C(-m comment)) are deleted.
    type: list
    elements: str
    default: []
  nftables_tables:
    description: nftables tables to delete, as family and name (C(ip kube-proxy)).
    type: list
    elements: str
    default: []
  artifacts_state:
    description:
      - The record of the binaries the collection installed (M(kubeforge.cluster.artifacts)); every file it lists
        below O(artifacts_dirs) is removed. Read before anything changes; one that cannot be read stops the
        module before any change.
    type: path
  artifacts_dirs:
    description: The directories files of O(artifacts_state) may be in; a file listed elsewhere is kept, with a warning.
    type: list
    elements: path
    default: []
  paths:
    description:
      - Files and directories to remove (directories with everything in them). Absolute, with at least two
        components before any wildcard; glob patterns (C(*) does not match C(/)) are expanded.
    type: list
    elements: str
    default: []
  empty_dirs:
    description: Directories to remove when nothing is left in them (deepest first).
    type: list
    elements: path
    default: []
  users:
    description: Local users to remove (C(userdel)).
    type: list
    elements: str
    default: []
notes:
  - Needs root. Programs are found on the host (C(systemctl), C(umount), C(ip), C(iptables-save),
    C(iptables-restore), C(nft), C(userdel)); a step whose program is missing has nothing of its kind to remove,
    except that a missing C(systemctl) is reported as a warning.
  - Each program run is bounded (coreutils C(timeout), 300 seconds, where the host has it).
seealso:
  - module: kubeforge.cluster.artifacts
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Looks at everything and returns what would be stopped, unmounted and removed; changes nothing.
  diff_mode:
    support: full
    details: One entry per path removed (present, then absent), and one listing the services, containers, mounts and network objects.
"""

EXAMPLES = r"""
- name: Remove the cluster from the host
  kubeforge.cluster.reset_host:
    services: [kubelet, kube-proxy, kube-apiserver, etcd]
    containerd: {}
    unmount: [/var/lib/kubelet/*, /run/containerd/*]
    interfaces: [cni0, flannel.1]
    iptables_chain_prefixes: [KUBE-, FLANNEL, CNI-]
    nftables_tables: [ip kube-proxy, ip6 kube-proxy]
    artifacts_state: /var/lib/kubeforge/artifacts.json
    artifacts_dirs: [/usr/local/bin, /usr/local/sbin, /opt/cni/bin]
    paths: [/etc/kubernetes/pki, /var/lib/kubelet, /var/lib/kubeforge]
    empty_dirs: [/etc/kubernetes]
    users: [etcd]
"""

RETURN = r"""
msg:
  description: What was (or would be) done, counted.
  returned: always
  type: str
  sample: "stopped 9 services; unmounted 52 mounts; removed 14 pods, 31 containers, 2 network devices, 318 firewall rules and chains, 58 paths, 1 user"
stopped:
  description: The units stopped, in order (containerd last).
  returned: always
  type: list
  elements: str
  sample: [kubelet.service, kube-proxy.service, etcd.service, containerd.service]
disabled:
  description: The units disabled.
  returned: always
  type: list
  elements: str
  sample: [kubelet.service, containerd.service]
pods:
  description: The pods removed through the CRI.
  returned: always
  type: list
  elements: str
  sample: [4f0c9d1a2b3e]
containers:
  description: The containerd tasks removed with C(ctr) (or, containerd being stopped, found), as C(namespace/id).
  returned: always
  type: list
  elements: str
  sample: [k8s.io/4f0c9d1a2b3e]
unmounted:
  description: The mount points unmounted, deepest first.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~projected/kube-api-access-x7k2p]
interfaces:
  description: The network devices deleted.
  returned: always
  type: list
  elements: str
  sample: [cni0, flannel.1]
routes:
  description: The routes removed, as C(ip route) shows them, with their protocol.
  returned: always
  type: list
  elements: str
  sample: ["10.233.65.0/24 via 192.168.50.12 dev eth0 (proto 77)"]
firewall:
  description: Each iptables rule and chain and nftables table removed, as the command that removes it alone.
  returned: always
  type: list
  elements: str
  sample: ["iptables -t nat -D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
           "iptables -t nat -X KUBE-SERVICES", "nft delete table ip kube-proxy"]
removed:
  description: The files and directories removed (a directory with everything in it), then the empty directories.
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/kubelet.service, /usr/local/bin/kubelet, /var/lib/kubelet, /etc/kubernetes]
users:
  description: The users removed.
  returned: always
  type: list
  elements: str
  sample: [etcd]
daemon_reload:
  description: Whether systemd reloaded its units (once, at the end).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import reset_host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            services=dict(type="list", elements="str", default=[]),
            unit_dir=dict(type="path", default="/etc/systemd/system"),
            containerd=dict(type="dict", options=dict(
                service=dict(type="str", default="containerd"),
                address=dict(type="path", default="/run/containerd/containerd.sock"),
                state_dir=dict(type="path", default="/run/containerd"),
                ctr=dict(type="path", default="/usr/local/bin/ctr"),
                crictl=dict(type="path", default="/usr/local/bin/crictl"),
            )),
            unmount=dict(type="list", elements="str", default=[]),
            unmount_self_binds=dict(type="list", elements="path", default=[]),
            interfaces=dict(type="list", elements="str", default=[]),
            route_protocols=dict(type="list", elements="int", default=[]),
            iptables_chain_prefixes=dict(type="list", elements="str", default=[]),
            iptables_comments=dict(type="list", elements="str", default=[]),
            nftables_tables=dict(type="list", elements="str", default=[]),
            artifacts_state=dict(type="path"),
            artifacts_dirs=dict(type="list", elements="path", default=[]),
            paths=dict(type="list", elements="str", default=[]),
            empty_dirs=dict(type="list", elements="path", default=[]),
            users=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )

    def run_command(argv, data):
        return module.run_command(argv, data=data, handle_exceptions=False)

    run = reset_host.command_runner(run_command, module.get_bin_path("timeout"))
    reset = reset_host.Reset(module.params, run, module.get_bin_path, check_mode=module.check_mode)
    try:
        result = reset.reset()
    except reset_host.ResetError as exc:
        # what was done before the failure is part of the answer
        module.fail_json(msg=str(exc), changed=reset.changed, **reset.result)
    for warning in reset.warnings:
        module.warn(warning)
    module.exit_json(changed=reset.changed, msg=reset_host.summary(result, module.check_mode),
                     diff=reset_host.diff(result), **result)


if __name__ == "__main__":
    main()
