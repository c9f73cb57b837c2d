# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""etcd membership on the scenario's nodes, after converge and idempotence.

In order (each step relies on the ones before): the control plane outside the etcd group, check
mode and diff, a rolling restart for a changed setting (and for one left pending by an interrupted
run), scale 3 -> 5, a removal refused for quorum, scale 5 -> 3, and a final no-op run. The keys
written first are read back after every membership change.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "etcd", "tests"))

from etcdtest import Bed, Report, mirror_versions  # noqa: E402

CLUSTER = "mol-etcd-scale"
LAYOUT = "1:cp@bookworm,1:etcd@bookworm,1:etcd@trixie,1:etcd@bookworm,1:etcd@bookworm,1:etcd@trixie"
CP = "mol-etcd-scale-cp1"
E1, E2, E3, E4, E5 = ("mol-etcd-scale-etcd%d" % i for i in range(1, 6))
VERSION = mirror_versions("etcd")[-1]
KEYS = {"/before-scale/%d" % i for i in range(200)}

bed = Bed(CLUSTER, LAYOUT)
report = Report("etcd-scale")
# every run after the setting change keeps it (otherwise each run would restart the members again)
EXTRA = {"kubeforge_etcd_version": VERSION}


def inventory(members, name):
    return bed.inventory({"kube_control_plane": [CP], "etcd": members}, name=name)


def pids(nodes):
    return {n: bed.sh(n, "systemctl show etcd -p MainPID --value")[1].strip() for n in nodes}


def member_names(node=E1):
    return sorted(m.get("name", "") for m in bed.members(node))


def assert_keys(node):
    assert bed.keys(node, "/before-scale/") == KEYS


def test_control_plane_outside_etcd_holds_its_client_certificate():
    assert bed.sh(CP, "test -s /etc/kubernetes/pki/apiserver-etcd-client.key && "
                      "test -s /etc/kubernetes/pki/apiserver-etcd-client.crt && test -s /etc/kubernetes/pki/etcd/ca.crt && "
                      "test ! -e /etc/kubernetes/pki/etcd/ca.key && test ! -e /etc/kubernetes/pki/etcd/server.key")[0] == 0
    # kube-apiserver's view: the certificate opens etcd's client port
    code = ("import ssl, urllib.request, json; c = ssl.create_default_context(cafile='/etc/kubernetes/pki/etcd/ca.crt'); "
            "c.load_cert_chain('/etc/kubernetes/pki/apiserver-etcd-client.crt', '/etc/kubernetes/pki/apiserver-etcd-client.key'); "
            "r = urllib.request.urlopen(urllib.request.Request('https://%s:2379/v3/kv/put', data=json.dumps("
            "{'key': 'L2Zyb20tY3A=', 'value': 'eWVz'}).encode()), context=c, timeout=10); print(r.status)" % bed.address(E1))
    assert bed.sh(CP, "python3 -c \"%s\"" % code)[1].strip() == "200"
    assert bed.keys(E2, "/from-cp") == {"/from-cp"}


def test_check_mode_reports_and_changes_nothing():
    inv = inventory([E1, E2, E3], "three")
    before = pids([E1, E2, E3])
    run = bed.playbook("scale.yml", inv, EXTRA, check=True, diff=True)
    assert run.rc == 0 and run.changed == 0, run.tail()
    run = bed.playbook("scale.yml", inv, dict(EXTRA, etcd_snapshot_count=5000), check=True, diff=True)
    assert run.rc == 0, run.tail()
    assert '-ETCD_SNAPSHOT_COUNT="10000"' in run.text and '+ETCD_SNAPSHOT_COUNT="5000"' in run.text
    assert run.changed > 0 and "PRIVATE KEY" not in run.text
    assert pids([E1, E2, E3]) == before
    assert 'ETCD_SNAPSHOT_COUNT="10000"' in bed.read(E2, "/etc/etcd/etcd.env")


def test_changed_setting_restarts_members_one_at_a_time():
    inv = inventory([E1, E2, E3], "three")
    EXTRA["etcd_snapshot_count"] = 5000
    leader = [n for n, s in bed.status(E1).items() if s["leader"]][0]
    before = pids([E1, E2, E3])
    run = bed.playbook("scale.yml", inv, EXTRA)
    report.step("rolling restart of 3 members for a changed setting", run.seconds)
    assert run.rc == 0, run.tail()
    after = pids([E1, E2, E3])
    assert all(before[n] != after[n] for n in before), (before, after)
    restarts = [line.split("Restart etcd on ")[1].split(" ")[0].rstrip("]") for line in run.output.splitlines()
                if line.startswith("TASK [") and "Restart etcd on " in line]
    assert sorted(restarts) == sorted([E1, E2, E3]) and restarts[-1] == leader, (restarts, leader)
    bed.wait_healthy(E1, 3)


def test_restart_left_pending_by_an_interrupted_run_happens_next_time():
    inv = inventory([E1, E2, E3], "three")
    # as if a run had written the settings of E2 and stopped before restarting it
    bed.sh(E2, "touch /etc/etcd/etcd.env")
    before = pids([E1, E2, E3])
    run = bed.playbook("scale.yml", inv, EXTRA)
    assert run.rc == 0, run.tail()
    after = pids([E1, E2, E3])
    assert [n for n in before if before[n] != after[n]] == [E2], (before, after)
    run = bed.playbook("scale.yml", inv, EXTRA)
    assert run.rc == 0 and run.changed == 0, run.tail()


def test_write_keys():
    result = bed.put_keys(E1, [E1, E2, E3], "/before-scale/", 200)
    assert len(result["acknowledged"]) == 200
    assert_keys(E3)


def test_scale_out_one_host_with_limit():
    inv = inventory([E1, E2, E3, E4, E5], "five")
    run = bed.playbook("scale.yml", inv, EXTRA, limit=E4)
    report.step("scale.yml --limit one new member (preflight, os, etcd)", run.seconds,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0, run.tail()
    assert set(run.recap) <= {E4, "localhost"}, run.recap
    assert member_names() == sorted([E1, E2, E3, E4])
    bed.wait_healthy(E4, 4)
    assert_keys(E4)


def test_join_resumes_after_a_member_add_that_was_not_followed_by_a_start():
    inv = inventory([E1, E2, E3, E4, E5], "five")
    # etcd takes a membership change only once every member has been connected for 5 s: the
    # fourth member joined moments ago
    deadline = time.monotonic() + 60
    while True:
        rc, out = bed.etcdctl(E1, "member add %s --learner --peer-urls=https://%s:2380" % (E5, bed.address(E5)),
                              check=False)
        if rc == 0 or "unhealthy cluster" not in out or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert rc == 0, out
    run = bed.playbook("scale.yml", inv, EXTRA)
    report.step("scale.yml without --limit joining the fifth member (added earlier)", run.seconds)
    assert run.rc == 0, run.tail()
    task = run.task("Add the new member to the cluster as a learner - %s" % E5)
    assert "skipping" in task and "changed" not in task, task or run.tail()
    assert "changed" in run.task("Promote the learner to a voting member once it has caught up with the leader - %s" % E5), run.tail()
    members = bed.members(E1)
    assert sorted(m["name"] for m in members) == sorted([E1, E2, E3, E4, E5])
    assert not any(m.get("isLearner") for m in members)
    bed.wait_healthy(E1, 5)
    assert_keys(E5)


def test_removal_refused_when_it_would_lose_quorum():
    inv = inventory([E1, E2, E3, E4, E5], "five")
    bed.sh(E2, "systemctl stop etcd")
    bed.sh(E3, "systemctl stop etcd")
    try:
        run = bed.playbook("remove_node.yml", inv, dict(EXTRA, node=E4, remove_node_confirm=True))
        assert run.rc != 0
        message = run.failure()
        assert "refusing to remove" in message and E2 in message and E3 in message, message
        assert member_names() == sorted([E1, E2, E3, E4, E5])
        bed.etcdctl(E1, "put /still-serving yes")
    finally:
        bed.sh(E2, "systemctl start etcd")
        bed.sh(E3, "systemctl start etcd")
    bed.wait_healthy(E1, 5)


def test_remove_the_leader_while_reachable():
    inv = inventory([E1, E2, E3, E4, E5], "five")
    e4 = [m for m in bed.members(E1) if m["name"] == E4][0]
    bed.etcdctl(E4, "move-leader %x" % e4["ID"], endpoints=",".join(
        "https://%s:2379" % bed.address(n) for n in (E1, E2, E3, E4, E5)))
    assert bed.status(E1)[E4]["leader"]
    run = bed.playbook("remove_node.yml", inv, dict(EXTRA, node=E4, remove_node_confirm=True))
    report.step("remove_node.yml, the leader, reachable", run.seconds)
    assert run.rc == 0, run.tail()
    assert "changed" in run.task("Hand the leadership"), run.tail()
    assert member_names() == sorted([E1, E2, E3, E5])
    bed.wait_healthy(E1, 4)
    assert bed.sh(E4, "test ! -e /var/lib/etcd/member && test ! -e /etc/etcd && test ! -e /etc/kubernetes/pki/etcd "
                      "&& ! systemctl is-active etcd", check=False)[0] == 0
    assert "Take %s out of the inventory" % E4 in run.text and "%s was reset" % E4 in run.text
    assert_keys(E1)


def test_remove_an_unreachable_member():
    inv = inventory([E1, E2, E3, E4, E5], "five")
    subprocess.run(["podman", "stop", "-t", "1", E5], check=True, stdout=subprocess.DEVNULL)
    run = bed.playbook("remove_node.yml", inv, dict(EXTRA, node=E5, remove_node_confirm=True))
    report.step("remove_node.yml, host unreachable", run.seconds)
    assert run.rc == 0, run.tail()
    assert "SKIPPED on %s, which did not answer" % E5 in run.text
    assert member_names() == sorted([E1, E2, E3])
    bed.wait_healthy(E1, 3)
    assert_keys(E3)


def test_three_members_converged_noop():
    inv = inventory([E1, E2, E3], "three")
    run = bed.playbook("scale.yml", inv, EXTRA)
    report.step("preflight + os + etcd no-op, 3 members + 1 control plane", run.seconds, changed=run.changed,
                tasks_per_host=run.tasks_per_host())
    assert run.rc == 0 and run.changed == 0, run.tail()
    assert_keys(E2)
    print(json.dumps(report.data, indent=2))
