# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The summary callback's bookkeeping, extraction of what changed, and its table, without Ansible
running a play (tests/functional/test_summary_callback.py runs it in real plays)."""

from __future__ import annotations

import json
import os

from ansible_collections.kubeforge.cluster.plugins.callback.summary import (
    RunState,
    changed_targets,
    failure_message,
    render,
    short_role_name,
    write_json,
)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_targets_from_diffs_dest_path_and_loops():
    assert changed_targets({"changed": True, "diff": {"before_header": "/etc/a.conf", "after_header": "/etc/a.conf"}}) == ["/etc/a.conf"]
    assert changed_targets({"changed": True, "diff": [{"after_header": "/etc/b"}, {"after_header": "dynamically generated"}]}) == ["/etc/b"]
    assert changed_targets({"changed": True, "dest": "/etc/c", "path": "relative/is/ignored"}) == ["/etc/c"]
    loop = {"changed": True, "results": [{"changed": True, "dest": "/etc/d1"}, {"changed": False, "dest": "/etc/d2"},
                                         {"changed": True, "path": "/etc/d3"}]}
    assert changed_targets(loop) == ["/etc/d1", "/etc/d3"]


def test_targets_from_the_collections_batch_returns():
    kubeconfigs = {"changed": True, "kubeconfigs": [{"dest": "/etc/kubernetes/admin.conf", "changed": True},
                                                    {"dest": "/etc/kubernetes/scheduler.conf", "changed": False}]}
    assert changed_targets(kubeconfigs) == ["/etc/kubernetes/admin.conf"]
    artifacts = {"changed": True, "artifacts": {
        "etcd": {"changed": True, "files": ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]},
        "runc": {"changed": False, "files": ["/usr/local/sbin/runc"]}}}
    assert changed_targets(artifacts) == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]
    sysctl = {"changed": True, "sysctl": {"net.ipv4.ip_forward": {"state": "would set"}, "vm.panic_on_oom": {"state": "skipped"}}}
    assert changed_targets(sysctl) == ["sysctl net.ipv4.ip_forward"]
    # module arguments (ansible-core before 2.19 hands them to callbacks)
    assert changed_targets({"changed": True, "invocation": {"module_args": {"dest": "/etc/e"}}}) == ["/etc/e"]
    assert changed_targets({"changed": True, "msg": "done"}) == []


def test_failure_message():
    assert failure_message({"msg": "  the paragraph\n"}) == "the paragraph"
    assert failure_message({"msg": "", "stderr": "boom"}) == "boom"
    assert failure_message({"results": [{"failed": False, "msg": "fine"}, {"failed": True, "msg": "item broke"}]}) == "item broke"
    assert failure_message({}) == "failed without a message"


def test_short_role_name():
    assert short_role_name("kubeforge.cluster.etcd") == "etcd"
    assert short_role_name("demo") == "demo"


def drive():
    clock = Clock()
    state = RunState(playbook="install.yml", check_mode=True, limit="w1", clock=clock)
    state.play_start("Preflight")
    state.host_start("cp1", "t1")
    clock.now += 2
    state.result("cp1", "t1", "preflight", "Check the inventory", "ok",
                 {"changed": False, "settings": {"kubeforge_kubernetes_version": "1.36.4", "kubeforge_etcd_version": "3.5.16",
                                                 "kubeforge_cluster_name": "prod", "kubeforge_api_endpoint": "",
                                                 "kubeforge_apiserver_port": 6443}})
    state.result("w1", "t2", "preflight", "Read the host", "ok",
                 {"ansible_facts": {"kubeforge_host": {"os_pretty": "Debian GNU/Linux 13 (trixie)", "arch": "amd64",
                                                       "artifacts": {"containerd": "1.7.24"}}}}, fallback_start=clock.now - 1)
    state.play_start("Operating system")
    clock.now += 1
    state.result("w1", "t3", "os", "Install packages", "ok", {"changed": True, "diff": {"after_header": "/etc/x"}})
    state.result("w1", "t4", "os", "Ignored", "failed", {"msg": "nope", "changed": True}, ignore_errors=True)
    state.result("w1", "t5", "os", "Skipped", "skipped", {"skipped": True})
    state.result("w1", "t6", "os", "Include", "ok", {}, counted=False)
    state.included(["w1"], "os")
    state.result("cp1", "t7", "pki", "Write kubeconfigs", "ok",
                 {"changed": True, "kubeconfigs": [{"dest": "/etc/kubernetes/admin.conf", "changed": True}]})
    state.result("w2", "t8", "os", "Connect", "unreachable", {"msg": "no route", "unreachable": True})
    inventory = {"groups": {"kube_control_plane": ["cp1"], "etcd": ["cp1"], "kube_node": ["w1", "w2"]},
                 "hosts": {"cp1": {"ansible_host": "10.0.0.1"}, "w1": {"ip": "10.0.0.2"}}}
    recap = {"cp1": {"ok": 2, "changed": 1, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0},
             "w1": {"ok": 4, "changed": 2, "failures": 0, "unreachable": 0, "skipped": 1, "rescued": 0, "ignored": 1},
             "w2": {"ok": 0, "changed": 0, "failures": 0, "unreachable": 1, "skipped": 0, "rescued": 0, "ignored": 0}}
    return state.summary(recap, inventory)


def test_counts_and_seconds_per_host_and_role():
    summary = drive()
    assert summary["status"] == "failed"
    assert summary["hosts"]["cp1"]["roles"]["preflight"]["seconds"] == 2.0
    assert summary["hosts"]["w1"]["roles"]["preflight"]["seconds"] == 1.0
    os_row = summary["hosts"]["w1"]["roles"]["os"]
    assert (os_row["ok"], os_row["changed"], os_row["skipped"], os_row["ignored"], os_row["failed"]) == (3, 2, 1, 1, 0)
    assert summary["hosts"]["w2"]["roles"]["os"]["unreachable"] == 1
    assert summary["hosts"]["w2"]["status"] == "unreachable" and summary["hosts"]["w1"]["status"] == "changed"
    assert summary["error"] == {"host": "w2", "task": "Connect", "role": "os", "msg": "no route", "unreachable": True}
    assert [p["name"] for p in summary["plays"]] == ["Preflight", "Operating system"]
    assert summary["plays"][0]["seconds"] == 2.0


def test_cluster_view():
    cluster = drive()["cluster"]
    assert cluster["name"] == "prod"
    assert cluster["versions"] == {"kubernetes": "1.36.4", "etcd": "3.5.16"}
    assert cluster["endpoint"] == "https://10.0.0.1:6443"
    assert cluster["admin_conf"] == {"path": "/etc/kubernetes/admin.conf", "hosts": ["cp1"], "written_or_checked_by_this_run": True}
    assert cluster["nodes"]["w1"] == {"groups": ["kube_node"], "address": "10.0.0.2", "os": "Debian GNU/Linux 13 (trixie)",
                                      "arch": "amd64", "found": {"containerd": "1.7.24"}}
    assert cluster["nodes"]["w2"]["address"] == "w2"


def test_external_endpoint_wins():
    state = RunState()
    state.result("cp1", "t", "preflight", "Check", "ok", {"settings": {"kubeforge_kubernetes_version": "1.36.4",
                                                                       "kubeforge_api_endpoint": "api.example.com:6443"}})
    cluster = state.summary({}, {"groups": {"kube_control_plane": ["cp1"]}, "hosts": {}})["cluster"]
    assert cluster["endpoint"] == "https://api.example.com:6443"
    assert cluster["endpoint_source"] == "kubeforge_api_endpoint"


def test_render_plan_and_error():
    text = render(drive(), max_changes=2)
    lines = text.splitlines()
    assert lines[0].startswith("KUBEFORGE SUMMARY: install.yml FAILED in ")
    assert lines[0].endswith("(check mode: nothing was changed), --limit w1")
    assert "cluster prod: kubernetes 1.36.4, etcd 3.5.16" in lines
    assert "API endpoint: https://10.0.0.1:6443 (the first control plane; other nodes reach the API through their local load balancer)" in lines
    assert "plan (would change, per host and file):" in lines
    assert "  cp1  pki: Write kubeconfigs: /etc/kubernetes/admin.conf" in lines
    assert "  ... and 1 more in the JSON summary" in lines
    assert lines[-2:] == ["first failure: w2, os: Connect:", "  no route"]


def test_render_empty_plan():
    state = RunState(playbook="install.yml", check_mode=True)
    state.result("cp1", "t", "os", "Nothing", "ok", {"changed": False})
    assert "plan: nothing would change" in render(state.summary({"cp1": {"ok": 1}}))


def test_write_json_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "summary.json"
    write_json(str(path), {"n": 1})
    write_json(str(path), {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert os.listdir(path.parent) == ["summary.json"]
