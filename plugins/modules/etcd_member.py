#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_member
short_description: Read what an etcd member host holds and what its cluster says
version_added: 0.1.0
description:
  - Reads, without changing anything, what the etcd role decides from, on one etcd host - whether
    the data directory holds a member, the etcd CA files, the installed binary, systemd's view of the
    service and the inputs changed after the running etcd started, the etcd user, the role's
    directories and settings files, and, when etcd runs, the health and status of the local member
    and (with I(cluster)) the member list with every member's health and status.
  - The controller-side M(kubeforge.cluster.etcd_plan) makes the plan from these answers.
  - With I(wait), reads again every two seconds until this member and every member of its cluster are
    healthy (and, with I(want_version), this member runs that version), and fails after I(wait)
    seconds naming each member that is not.
  - Asks the members with C(etcdctl) and the health-check client certificate of I(pki_dir); every
    call is bounded (coreutils C(timeout) where the host has it).
options:
  data_dir:
    description: etcd's data directory.
    type: path
    required: true
  pki_dir:
    description:
      - Directory of the etcd CA (C(ca.crt), C(ca.key)) and of the health-check client certificate
        (C(healthcheck-client.crt), C(healthcheck-client.key)).
    type: path
    required: true
  bin_dir:
    description: Directory of C(etcd), C(etcdctl) and C(etcdutl).
    type: path
    default: /usr/local/bin
  unit:
    description: The systemd unit of etcd.
    type: str
    default: etcd.service
  endpoint:
    description: This member's client URL as the host itself reaches it.
    type: str
    required: true
  inputs:
    description:
      - Files the running etcd read when it started (settings, unit, certificates, binary). Those
        changed after that start are returned in RV(service.stale).
    type: list
    elements: path
    default: []
  user:
    description: The user etcd runs as (returned in RV(user)).
    type: str
    default: etcd
  directories:
    description: Directories to return the owner, group and mode of (RV(directories)).
    type: list
    elements: path
    default: []
  files:
    description: Files to return the sha256, owner, group and mode of (RV(files)).
    type: list
    elements: path
    default: []
  cluster:
    description: Also read the member list and every member's health and status (RV(cluster)).
    type: bool
    default: false
  wait:
    description:
      - Seconds to wait until this member and every member of its cluster are healthy; C(0) reads
        once and never fails for an unhealthy member. Implies I(cluster).
    type: int
    default: 0
  want_version:
    description: With I(wait), also wait until this member runs this etcd version.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Reads as in a real run. A I(wait) is not waited for in check mode: nothing was started or
      restarted for it, so the task reports itself skipped (with C(msg) saying so) instead of failing.
"""

EXAMPLES = r"""
- name: Read the member and its cluster
  kubeforge.cluster.etcd_member:
    data_dir: /var/lib/etcd
    pki_dir: /etc/kubernetes/pki/etcd
    endpoint: https://127.0.0.1:2379
    inputs: [/etc/etcd/etcd.env, /etc/systemd/system/etcd.service, /usr/local/bin/etcd]
    directories: [/etc/etcd, /var/lib/etcd]
    cluster: true
  register: member

- name: Wait until this member runs 3.5.30 and every member is healthy
  kubeforge.cluster.etcd_member:
    data_dir: /var/lib/etcd
    pki_dir: /etc/kubernetes/pki/etcd
    endpoint: https://127.0.0.1:2379
    wait: 180
    want_version: 3.5.30
"""

RETURN = r"""
initialized:
  description: The data directory holds a member (a WAL file); etcd ignores the bootstrap settings then.
  returned: always
  type: bool
  sample: true
data_dir_empty:
  description: Nothing at all is in the data directory (or it does not exist).
  returned: always
  type: bool
  sample: false
ca:
  description: The sha256 of the etcd CA files, null where a file is absent.
  returned: always
  type: dict
  sample: {cert: 9f2b5c0d..., key: 41d7a8e3...}
  contains:
    cert:
      description: sha256 of C(ca.crt).
      type: str
      sample: 9f2b5c0d7a6e4f3b2a1908c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7
    key:
      description: sha256 of C(ca.key).
      type: str
      sample: 41d7a8e3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271
binary:
  description: The installed etcd.
  returned: always
  type: dict
  sample: {version: 3.5.30, etcdctl: true, etcdutl: true}
  contains:
    version:
      description: What C(etcd --version) says, null when it does not run.
      type: str
      sample: 3.5.30
    etcdctl:
      description: C(etcdctl) is there and executable.
      type: bool
      sample: true
    etcdutl:
      description: C(etcdutl) is there and executable (etcd 3.5 and newer).
      type: bool
      sample: true
service:
  description: systemd's view of etcd.
  returned: always
  type: dict
  sample:
    loaded: true
    active: true
    state: active/running
    enabled: true
    need_daemon_reload: false
    pid: 4242
    started_at: 1795640000.42
    stale: []
  contains:
    loaded:
      description: systemd knows the unit.
      type: bool
      sample: true
    active:
      description: The unit is active.
      type: bool
      sample: true
    state:
      description: Active state and sub-state.
      type: str
      sample: active/running
    enabled:
      description: The unit starts at boot.
      type: bool
      sample: true
    need_daemon_reload:
      description: The unit file changed since systemd read it.
      type: bool
      sample: false
    pid:
      description: The main process, C(0) when none.
      type: int
      sample: 4242
    started_at:
      description: When the main process started, in seconds since the epoch; null when none runs.
      type: float
      sample: 1795640000.42
    stale:
      description:
        - The I(inputs) changed (their inode change time) after the running etcd started, i.e. what a
          restart would pick up. Empty when etcd does not run.
      type: list
      elements: str
      sample: [/etc/etcd/etcd.env]
user:
  description: The etcd user, null when it does not exist.
  returned: always
  type: dict
  sample: {uid: 996, home: /var/lib/etcd, shell: /usr/sbin/nologin}
  contains:
    uid:
      description: Its user id.
      type: int
      sample: 996
    home:
      description: Its home directory.
      type: str
      sample: /var/lib/etcd
    shell:
      description: Its shell.
      type: str
      sample: /usr/sbin/nologin
directories:
  description:
    - By path, the owner, group and mode (four octal digits) of each of I(directories); null for one
      that does not exist or is no directory.
  returned: always
  type: dict
  sample: {/var/lib/etcd: {owner: etcd, group: etcd, mode: "0700"}, /etc/etcd: null}
files:
  description:
    - By path, the sha256 of the content, the owner, group and mode (four octal digits) of each of
      I(files); null for one that does not exist or is no regular file.
  returned: always
  type: dict
  sample:
    /etc/etcd/etcd.env: {sha256: 0d5b3c9e41f2a7b86c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b, owner: root, group: root, mode: "0644"}
    /etc/etcd/etcd-bootstrap.env: null
local:
  description: This host's own member, asked at I(endpoint).
  returned: always
  type: dict
  sample:
    endpoint: https://127.0.0.1:2379
    healthy: true
    error: ""
    status: {member_id: 13668033151171901709, version: 3.5.30, leader: 13668033151171901709, is_learner: false}
  contains:
    endpoint:
      description: I(endpoint).
      type: str
      sample: https://127.0.0.1:2379
    healthy:
      description: The member answers its status and a health check (a learner, its status only).
      type: bool
      sample: true
    error:
      description: Why it is not healthy.
      type: str
      sample: etcd is not running (inactive/dead)
    status:
      description:
        - What C(etcdctl endpoint status) says (C(member_id), C(cluster_id), C(revision), C(version),
          C(leader), C(raft_index), C(raft_applied_index), C(db_size), C(is_learner), C(errors)); null
          without an answer.
      type: dict
      sample: {member_id: 13668033151171901709, version: 3.5.30, leader: 13668033151171901709, is_learner: false}
cluster:
  description:
    - With I(cluster) (or I(wait)) and an answering local member, the member list as that member sees
      it; null otherwise.
  returned: always
  type: dict
  sample:
    cluster_id: 15118495548433857066
    leader: 13668033151171901709
    members:
      - id: 13668033151171901709
        id_hex: bdae9bbc11dd390d
        name: etcd1
        peer_urls: [https://192.0.2.11:2380]
        client_urls: [https://192.0.2.11:2379]
        endpoint: https://192.0.2.11:2379
        is_learner: false
        started: true
        healthy: true
        error: ""
        status: {version: 3.5.30, leader: 13668033151171901709}
  contains:
    cluster_id:
      description: The cluster's id.
      type: int
      sample: 15118495548433857066
    leader:
      description: The member id of the leader, null when no member answered with one.
      type: int
      sample: 13668033151171901709
    members:
      description:
        - Every member, with C(id), C(id_hex), C(name) (empty for one added but never started),
          C(peer_urls), C(client_urls), C(endpoint), C(is_learner), C(started), C(healthy), C(error)
          and its C(status) (as in RV(local.status)).
      type: list
      elements: dict
      sample:
        - {id: 13668033151171901709, id_hex: bdae9bbc11dd390d, name: etcd1, healthy: true, is_learner: false}
cluster_error:
  description: Why the member list could not be read, when it was asked for.
  returned: always
  type: str
  sample: ""
problems:
  description: With I(wait), what was still not healthy when the time was up (the module fails then).
  returned: failure
  type: list
  elements: str
  sample: ["etcd2 (id 1d9f0c6e2b7a4f13, https://192.0.2.12:2379): context deadline exceeded"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_member


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type="path", required=True),
            pki_dir=dict(type="path", required=True),
            bin_dir=dict(type="path", default="/usr/local/bin"),
            unit=dict(type="str", default="etcd.service"),
            endpoint=dict(type="str", required=True),
            inputs=dict(type="list", elements="path", default=[]),
            user=dict(type="str", default="etcd"),
            directories=dict(type="list", elements="path", default=[]),
            files=dict(type="list", elements="path", default=[]),
            cluster=dict(type="bool", default=False),
            wait=dict(type="int", default=0),
            want_version=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def run_command(argv):
        return module.run_command(argv, handle_exceptions=False)

    run = etcd_member.command_runner(run_command, module.get_bin_path("timeout"))
    settings = dict(data_dir=params["data_dir"], pki_dir=params["pki_dir"], endpoint=params["endpoint"],
                    bin_dir=params["bin_dir"], unit=params["unit"], inputs=params["inputs"], user=params["user"],
                    directories=params["directories"], files=params["files"])
    if params["wait"] > 0 and module.check_mode:
        module.exit_json(changed=False, skipped=True,
                         msg="check mode: not waiting for %s, nothing was started or restarted" % params["endpoint"])
    if params["wait"] > 0:
        result, problems = etcd_member.wait(run, params["wait"], params["want_version"], **settings)
        if problems:
            module.fail_json(msg=etcd_member.not_healthy_message(params["wait"], params["endpoint"], problems),
                             problems=problems, changed=False, **result)
    else:
        result = etcd_member.probe(run, cluster=params["cluster"], **settings)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
