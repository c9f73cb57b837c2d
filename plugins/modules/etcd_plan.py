#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_plan
short_description: Plan the etcd role's work from the inventory and the members' answers
version_added: 0.1.0
description:
  - Runs on the controller only (an action plugin); no module runs on any host and no connection is
    opened. The members were asked before, each with M(kubeforge.cluster.etcd_member); their
    registered results are the input.
  - Decides, for one entry point of the etcd role (I(mode)), what to do - which members start
    together as a new cluster, start again, join one at a time (learner first), are restarted or
    upgraded in which order (the leader last), which member is removed, where the snapshot is taken,
    which host holds the etcd CA and which hosts need a copy of it.
  - Decides every refusal before anything changes - a step that would leave fewer healthy voting
    members than a quorum, a version change outside the upgrade entry point, a skipped minor version,
    an unasked downgrade, a second CA, a host that changed its address, a run under C(--limit) that
    leaves out members that must take part, and more. When anything is refused the task fails with
    every refusal at once, each naming the member and why, and returns no plan.
  - Warnings (a member outside the inventory, an even number of voting members after a removal) are
    reported as Ansible warnings.
options:
  mode:
    description: The entry point of the role that asks.
    type: str
    required: true
    choices: [converge, upgrade, remove, backup, restore]
  target_version:
    description: The etcd version every member is to run; needed for C(converge) and C(upgrade).
    type: str
  allow_downgrade:
    description: C(upgrade) - accept a lower version (the same minor version only).
    type: bool
    default: false
  force:
    description: C(restore) - plan to stop etcd and move the data aside on hosts that run it or hold data.
    type: bool
    default: false
  ca_rotating:
    description:
      - C(converge) - a phase of the etcd CA's rotation runs; the CA host's CA files are copied to every
        other member of the run instead of refusing members that hold another version of them.
    type: bool
    default: false
  remove:
    description: C(remove) - the host (or member name, or member id in hex) to take out of the cluster.
    type: str
    default: ""
  etcd_hosts:
    description: The inventory's etcd group, in inventory order.
    type: list
    elements: str
    required: true
  play_hosts:
    description: The hosts of this run (C(ansible_play_hosts)); the others were asked by delegation.
    type: list
    elements: str
    required: true
  hosts:
    description:
      - By inventory name, every etcd host (and a host being removed) with C(member_name),
        C(address), C(peer_url) and C(client_url).
    type: dict
    required: true
  probes:
    description:
      - By inventory name, the result that an M(kubeforge.cluster.etcd_member) task registered for
        that host. A result that is unreachable, failed, or lacks the module's keys counts as an
        unreachable host; a skipped or missing one as a host that was not asked.
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Reads only; plans and refuses in check mode as in a real run.
"""

EXAMPLES = r"""
- name: Read each member
  kubeforge.cluster.etcd_member:
    data_dir: /var/lib/etcd
    pki_dir: /etc/kubernetes/pki/etcd
    endpoint: https://127.0.0.1:2379
    cluster: true
  register: member

- name: Plan a rolling upgrade (fails with every refusal at once)
  kubeforge.cluster.etcd_plan:
    mode: upgrade
    target_version: 3.5.30
    etcd_hosts: "{{ groups['etcd'] }}"
    play_hosts: "{{ ansible_play_hosts }}"
    hosts:
      etcd1: {member_name: etcd1, address: 192.0.2.11, peer_url: "https://192.0.2.11:2380", client_url: "https://192.0.2.11:2379"}
      etcd2: {member_name: etcd2, address: 192.0.2.12, peer_url: "https://192.0.2.12:2380", client_url: "https://192.0.2.12:2379"}
      etcd3: {member_name: etcd3, address: 192.0.2.13, peer_url: "https://192.0.2.13:2380", client_url: "https://192.0.2.13:2379"}
    probes: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'member'))) }}"
  run_once: true
  register: etcd_plan

- name: Upgrade in this order
  ansible.builtin.debug:
    msg: "{{ etcd_plan.plan.upgrade }}"
  run_once: true
"""

RETURN = r"""
plan:
  description:
    - What to do. Always C(mode), C(cluster_exists), C(view_from) (the host whose view of the cluster
      was read), C(members), C(leader) (host), C(order) (member hosts, the leader last), C(voters),
      C(healthy_voters), C(anchor) (a healthy voting member to run etcdctl on), C(errors) (empty) and
      C(warnings); then by mode the keys below.
    - C(converge) - C(bootstrap), C(start), C(join) (one entry per joining host, in order, with
      C(host), C(member_name), C(peer_url), C(client_url), C(member_id), C(is_learner), C(needs_add)),
      C(initial_cluster) and C(initial_state) by host, C(ca).
    - C(upgrade) - C(upgrade) (hosts, the leader last), C(current) (versions), C(snapshot_host).
    - C(remove) - C(member), C(move_leader_to), C(voters_after), C(already_removed).
    - C(backup) - C(snapshot_host). C(restore) - C(initial_cluster), C(wipe), C(ca).
  returned: success
  type: dict
  sample:
    mode: converge
    cluster_exists: true
    view_from: etcd1
    leader: etcd1
    order: [etcd2, etcd3, etcd1]
    voters: 3
    healthy_voters: 3
    anchor: etcd1
    bootstrap: []
    start: []
    join: []
    initial_cluster: {}
    initial_state: {}
    ca: {host: etcd1, copy_to: [], exists: true}
    members:
      - {id_hex: bdae9bbc11dd390d, name: etcd1, host: etcd1, endpoint: "https://192.0.2.11:2379",
         peer_urls: ["https://192.0.2.11:2380"], is_learner: false, healthy: true, error: "", version: 3.5.30}
    errors: []
    warnings: []
probes:
  description: By host, the member's answer as the plan read it (the etcd_member keys), null where none.
  returned: success
  type: dict
  sample:
    etcd1: {initialized: true, data_dir_empty: false, service: {active: true, stale: []}}
    etcd4: null
errors:
  description: Every refusal, each naming the member and why; the task fails when there is one.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      refusing to change the etcd version: every member must be healthy first, and etcd2 is not:
      etcd2 (id 1d9f0c6e2b7a4f13, https://192.0.2.12:2379): etcd is not running there (systemd: inactive/dead).
      Nothing was changed; start or repair it and run again
"""
