# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The etcd role's decisions (plugins/module_utils/etcd_plan.py) and the etcd_plan action.

The plan is what stands between a run and a lost quorum, so each refusal is checked here with
the member states that should trigger it, next to the states that must not. The inputs have the
shape the etcd_member module returns and the role passes.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_plan as plan_mod
from ansible_collections.kubeforge.cluster.plugins.module_utils import pki_catalog
from ansible_collections.kubeforge.cluster.plugins.module_utils.etcd_member import PROBE_KEYS
from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import load_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

HOSTS = ["e1", "e2", "e3"]
ADDR = {"e1": "192.0.2.11", "e2": "192.0.2.12", "e3": "192.0.2.13", "e4": "192.0.2.14", "e5": "192.0.2.15"}
IDS = {h: 1000 + i for i, h in enumerate(sorted(ADDR))}


def info(host):
    return {"member_name": host, "address": ADDR[host], "peer_url": "https://%s:2380" % ADDR[host],
            "client_url": "https://%s:2379" % ADDR[host]}


def member(host, healthy=True, version="3.5.16", learner=False, started=True, error=""):
    return {"id": IDS[host], "id_hex": "%x" % IDS[host], "name": host if started else "",
            "peer_urls": ["https://%s:2380" % ADDR[host]],
            "client_urls": ["https://%s:2379" % ADDR[host]] if started else [],
            "is_learner": learner, "endpoint": "https://%s:2379" % ADDR[host] if started else None,
            "started": started, "healthy": healthy, "error": error if not healthy else "",
            "status": {"version": version, "member_id": IDS[host]} if healthy else None}


def probe(initialized=True, active=True, version="3.5.16", cluster=None, ca=("c1", "k1"), empty=None):
    return {"initialized": initialized, "data_dir_empty": (not initialized) if empty is None else empty,
            "ca": {"cert": ca[0], "key": ca[1]},
            "binary": {"version": version, "etcdctl": bool(version), "etcdutl": bool(version)},
            "service": {"active": active, "state": "active/running" if active else "inactive/dead",
                        "need_daemon_reload": False, "stale": []},
            "local": {"endpoint": "https://127.0.0.1:2379", "healthy": active and initialized,
                      "status": {"version": version} if active and initialized else None,
                      "error": "" if active else "etcd is not running (inactive/dead)"},
            "cluster": cluster, "cluster_error": ""}


def cluster(members, leader="e1"):
    return {"members": members, "leader": IDS[leader], "cluster_id": 7}


def data(mode, hosts, probes, play=None, etcd=None, **extra):
    out = {"mode": mode, "target_version": extra.pop("target", "3.5.16"), "allow_downgrade": False, "force": False,
           "remove": "", "etcd_hosts": etcd or list(hosts), "play_hosts": play or list(hosts),
           "hosts": {h: dict(info(h), probe=probes.get(h), unreachable=False) for h in hosts}}
    out.update(extra)
    return out


def healthy_cluster(hosts=tuple(HOSTS), version="3.5.16", leader="e1", **overrides):
    members = [overrides.get(h) or member(h, version=version) for h in hosts]
    view = cluster(members, leader)
    return {h: probe(version=version, cluster=view if (overrides.get(h) or {}).get("healthy", True) else None,
                     active=(overrides.get(h) or {}).get("healthy", True)) for h in hosts}


def run(data_):
    """The plan as the role gets it: after a trip through JSON (the action's result travels so)."""
    return json.loads(json.dumps(plan_mod.plan(json.loads(json.dumps(data_)))))


# -- a new cluster --------------------------------------------------------------------------------

def test_new_cluster_starts_every_member_together():
    probes = {h: probe(initialized=False, active=False, version=None, cluster=None, ca=(None, None)) for h in HOSTS}
    result = run(data("converge", HOSTS, probes))
    assert result["errors"] == []
    assert result["bootstrap"] == HOSTS and result["join"] == []
    expected = ",".join("%s=https://%s:2380" % (h, ADDR[h]) for h in HOSTS)
    assert result["initial_cluster"] == {h: expected for h in HOSTS}
    assert set(result["initial_state"].values()) == {"new"}
    assert result["ca"] == {"host": "e1", "copy_to": ["e2", "e3"], "exists": False}


def test_new_cluster_refused_under_limit():
    probes = {"e1": probe(initialized=False, active=False, version=None, ca=(None, None))}
    result = run(data("converge", HOSTS, probes, play=["e1"]))
    assert any("start together" in e and "e2, e3" in e for e in result["errors"]), result["errors"]


# -- converge on a running cluster -------------------------------------------------------------------

def test_running_cluster_has_nothing_to_do():
    result = run(data("converge", HOSTS, healthy_cluster()))
    assert result["errors"] == [] and result["join"] == [] and result["start"] == []
    assert result["order"][-1] == "e1"  # the leader last
    assert result["ca"]["copy_to"] == []


def test_stopped_member_is_started_again():
    probes = healthy_cluster(e3=member("e3", healthy=False, error="connection refused"))
    result = run(data("converge", HOSTS, probes))
    assert result["errors"] == [] and result["start"] == ["e3"]


def test_converge_refuses_a_version_change():
    result = run(data("converge", HOSTS, healthy_cluster(version="3.4.23"), target="3.5.16"))
    assert len(result["errors"]) == 1
    assert "etcd 3.4.23 runs on e1, e2, e3" in result["errors"][0] and "upgrade.yml" in result["errors"][0]
    assert "etcd_allow_downgrade" not in result["errors"][0]
    result = run(data("converge", HOSTS, healthy_cluster(version="3.5.30"), target="3.5.16"))
    assert "etcd_allow_downgrade=true" in result["errors"][0]


def test_binary_installed_but_not_running_is_reported():
    probes = healthy_cluster(version="3.5.16")
    probes["e2"]["binary"]["version"] = "3.5.30"
    result = run(data("converge", HOSTS, probes, target="3.5.16"))
    assert "the etcd 3.5.30 binary is installed on e2" in result["errors"][0]


def test_member_whose_address_changed_is_refused():
    probes = healthy_cluster()
    data_ = data("converge", HOSTS, probes)
    data_["hosts"]["e3"].update(peer_url="https://192.0.2.99:2380", client_url="https://192.0.2.99:2379")
    result = run(data_)
    assert any("etcd does not follow address changes" in e and "e3" in e for e in result["errors"])


def test_conflicting_ca_on_a_member_with_data_is_refused():
    probes = healthy_cluster()
    probes["e2"]["ca"] = {"cert": "other", "key": "otherkey"}
    result = run(data("converge", HOSTS, probes))
    assert any("another etcd CA" in e and "e2" in e for e in result["errors"])


def test_fresh_host_with_a_stale_ca_gets_the_cluster_ca():
    hosts = HOSTS + ["e4"]
    probes = healthy_cluster()
    probes["e4"] = probe(initialized=False, active=False, version=None, ca=("stale", "stale"))
    result = run(data("converge", hosts, probes))
    assert result["errors"] == [] and result["ca"]["copy_to"] == ["e4"]


def test_running_member_with_the_cluster_certificate_but_another_key_gets_the_key():
    probes = healthy_cluster()
    probes["e3"]["ca"] = {"cert": "c1", "key": "other"}
    result = run(data("converge", HOSTS, probes))
    assert result["errors"] == [] and result["ca"] == {"host": "e1", "copy_to": ["e3"], "exists": True}


def test_members_outside_the_run_are_neither_compared_nor_copied_to():
    hosts = HOSTS + ["e4"]
    probes = healthy_cluster()
    probes["e2"]["ca"] = {"cert": "other", "key": "otherkey"}
    probes["e4"] = probe(initialized=False, active=False, version=None, ca=(None, None))
    result = run(data("converge", hosts, probes, play=["e4"]))
    assert result["errors"] == [] and result["ca"] == {"host": "e1", "copy_to": ["e4"], "exists": True}


def test_the_first_member_holding_the_whole_ca_is_the_ca_host():
    probes = healthy_cluster()
    probes["e1"]["ca"] = {"cert": "c1", "key": None}
    result = run(data("converge", HOSTS, probes))
    assert result["ca"] == {"host": "e2", "copy_to": ["e1"], "exists": True}
    assert result["warnings"] == ["e1 holds the etcd CA certificate without its key; it gets the full CA from the "
                                  "CA host"]


def test_rotation_copies_the_ca_hosts_files_to_every_other_member_of_the_run():
    # a phase moved e1's files; a run that stopped before the copies finds e2 and e3 with the old
    # ones: they receive e1's instead of being refused
    probes = healthy_cluster()
    probes["e1"]["ca"] = {"cert": "bundle", "key": "k1"}
    assert any("another etcd CA" in e for e in run(data("converge", HOSTS, probes))["errors"])
    result = run(data("converge", HOSTS, probes, ca_rotating=True))
    assert result["errors"] == [] and result["ca"] == {"host": "e1", "copy_to": ["e2", "e3"], "exists": True}
    # under --limit, only the run's members receive them
    result = run(data("converge", HOSTS, probes, play=["e1", "e3"], ca_rotating=True))
    assert result["ca"]["copy_to"] == ["e3"]


def test_rotation_without_an_etcd_ca_is_refused():
    probes = {h: probe(initialized=False, active=False, version=None, ca=(None, None)) for h in HOSTS}
    result = run(data("converge", HOSTS, probes, ca_rotating=True))
    assert any("there is no CA to rotate" in e for e in result["errors"]), result["errors"]


# -- joining ---------------------------------------------------------------------------------------

def test_new_members_join_one_after_the_other():
    hosts = HOSTS + ["e4", "e5"]
    probes = healthy_cluster()
    for h in ("e4", "e5"):
        probes[h] = probe(initialized=False, active=False, version=None, ca=(None, None))
    result = run(data("converge", hosts, probes))
    assert result["errors"] == []
    assert [j["host"] for j in result["join"]] == ["e4", "e5"]
    assert all(j["needs_add"] and j["is_learner"] for j in result["join"])
    base = ",".join("%s=https://%s:2380" % (h, ADDR[h]) for h in HOSTS)
    assert result["initial_cluster"]["e4"] == base + ",e4=https://192.0.2.14:2380"
    assert result["initial_cluster"]["e5"] == base + ",e4=https://192.0.2.14:2380,e5=https://192.0.2.15:2380"
    assert set(result["initial_state"].values()) == {"existing"}
    assert result["anchor"] == "e1" and result["ca"]["copy_to"] == ["e4", "e5"]


def test_join_with_limit_uses_members_outside_the_run():
    hosts = HOSTS + ["e4"]
    probes = healthy_cluster()
    probes["e4"] = probe(initialized=False, active=False, version=None, ca=(None, None))
    result = run(data("converge", hosts, probes, play=["e4"]))
    assert result["errors"] == [] and [j["host"] for j in result["join"]] == ["e4"]
    assert result["anchor"] == "e1" and result["ca"]["host"] == "e1" and result["ca"]["copy_to"] == ["e4"]


def test_join_resumes_a_member_added_but_never_started():
    hosts = HOSTS + ["e4"]
    view = cluster([member(h) for h in HOSTS] + [member("e4", healthy=False, learner=True, started=False)])
    probes = {h: probe(cluster=view) for h in HOSTS}
    probes["e4"] = probe(initialized=False, active=False, version=None, ca=(None, None))
    result = run(data("converge", hosts, probes))
    assert result["errors"] == []
    (entry,) = result["join"]
    assert entry["host"] == "e4" and not entry["needs_add"] and entry["is_learner"] and entry["member_id"] == "%x" % IDS["e4"]
    assert result["initial_cluster"]["e4"].endswith(",e4=https://192.0.2.14:2380")


def test_join_resumes_a_member_of_a_bootstrap_that_stopped_half_way():
    # e3 was in the initial cluster but never started: a voting member without data
    view = cluster([member("e1"), member("e2"), member("e3", healthy=False, started=False)])
    probes = {"e1": probe(cluster=view), "e2": probe(cluster=view),
              "e3": probe(initialized=False, active=False, version=None)}
    result = run(data("converge", HOSTS, probes))
    assert result["errors"] == []
    (entry,) = result["join"]
    assert entry == dict(entry, host="e3", needs_add=False, is_learner=False)
    assert result["initial_state"]["e3"] == "existing"


def test_join_refused_while_another_member_is_down():
    hosts = HOSTS + ["e4"]
    probes = healthy_cluster(e2=member("e2", healthy=False, error="connection refused"))
    probes["e2"]["service"]["active"] = True  # running but not answering: not something a start fixes
    probes["e4"] = probe(initialized=False, active=False, version=None)
    result = run(data("converge", hosts, probes))
    assert any("refusing to add e4" in e and "e2" in e for e in result["errors"]), result["errors"]


def test_empty_host_that_the_cluster_lists_as_started_is_refused():
    probes = healthy_cluster(e3=member("e3", healthy=False, error="connection refused"))
    probes["e3"] = probe(initialized=False, active=False, version=None)
    result = run(data("converge", HOSTS, probes))
    assert any("would corrupt that member" in e for e in result["errors"]), result["errors"]


def test_join_refused_when_no_member_answers():
    hosts = HOSTS + ["e4"]
    probes = {h: probe(active=False) for h in HOSTS}
    probes["e4"] = probe(initialized=False, active=False, version=None)
    result = run(data("converge", hosts, probes))
    assert any("no etcd member answers" in e and "e4" in e for e in result["errors"])


# -- upgrades --------------------------------------------------------------------------------------

def test_upgrade_followers_first_leader_last():
    result = run(data("upgrade", HOSTS, healthy_cluster(version="3.4.23", leader="e2"), target="3.5.16"))
    assert result["errors"] == []
    assert result["upgrade"] == ["e1", "e3", "e2"] and result["snapshot_host"] == "e1"


def test_upgrade_continues_where_it_stopped():
    probes = healthy_cluster(version="3.4.23", e1=member("e1", version="3.5.16"))
    probes["e1"]["binary"]["version"] = "3.5.16"
    result = run(data("upgrade", HOSTS, probes, target="3.5.16"))
    assert result["errors"] == [] and result["upgrade"] == ["e2", "e3"]


def test_binary_moved_but_member_not_restarted_is_upgraded_again():
    probes = healthy_cluster(version="3.4.23")
    probes["e3"]["binary"]["version"] = "3.5.16"
    result = run(data("upgrade", HOSTS, probes, target="3.5.16"))
    assert "e3" in result["upgrade"]


@pytest.mark.parametrize("current, target, allow, words", [
    ("3.4.23", "3.6.9", False, "skips minor version 3.5"),
    ("3.5.30", "3.5.16", False, "that is a downgrade; set etcd_allow_downgrade=true"),
    ("3.6.9", "3.5.30", True, "downgrade across minor versions"),
    ("3.5.30", "4.0.0", False, "change of major version"),
])
def test_version_steps_refused(current, target, allow, words):
    data_ = data("upgrade", HOSTS, healthy_cluster(version=current), target=target, allow_downgrade=allow)
    result = run(data_)
    assert len(result["errors"]) == 1 and words in result["errors"][0], result["errors"]
    assert "e1, e2, e3" in result["errors"][0]


def test_patch_downgrade_when_asked():
    result = run(data("upgrade", HOSTS, healthy_cluster(version="3.5.30"), target="3.5.16", allow_downgrade=True))
    assert result["errors"] == [] and sorted(result["upgrade"]) == HOSTS


def test_upgrade_refused_while_a_member_is_stopped():
    probes = healthy_cluster(version="3.4.23", e3=member("e3", healthy=False, error="context deadline exceeded"))
    result = run(data("upgrade", HOSTS, probes, target="3.5.16"))
    (error,) = result["errors"]
    assert "e3" in error and "etcd is not running there (systemd: inactive/dead)" in error
    assert "Nothing was changed" in error


def test_upgrade_refused_under_limit():
    result = run(data("upgrade", HOSTS, healthy_cluster(version="3.4.23"), play=["e1", "e2"], target="3.5.16"))
    assert any("e3 is not in this run" in e for e in result["errors"])


# -- removal ---------------------------------------------------------------------------------------

def test_remove_keeps_quorum():
    result = run(data("remove", HOSTS, healthy_cluster(), play=["e1", "e2"], remove="e3"))
    assert result["errors"] == [] and result["member"]["id_hex"] == "%x" % IDS["e3"]
    assert result["anchor"] in ("e1", "e2") and result["move_leader_to"] is None


def test_remove_refused_when_the_rest_would_lose_quorum():
    probes = healthy_cluster(e2=member("e2", healthy=False, error="connection refused"))
    result = run(data("remove", HOSTS, probes, play=["e1", "e2"], remove="e3"))
    (error,) = result["errors"]
    assert "refusing to remove e3" in error and "1 of the 2 remaining" in error and "e2" in error


def test_remove_an_unhealthy_member_is_allowed():
    probes = healthy_cluster(e3=member("e3", healthy=False, error="connection refused"))
    probes.pop("e3")
    result = run(data("remove", HOSTS, probes, play=["e1", "e2"], remove="e3"))
    assert result["errors"] == [] and result["member"]["name"] == "e3"


def test_removing_the_leader_hands_leadership_over_first():
    result = run(data("remove", HOSTS, healthy_cluster(leader="e3"), play=["e1", "e2"], remove="e3"))
    assert result["errors"] == [] and result["move_leader_to"]["id_hex"] == "%x" % IDS["e1"]


def test_remove_twice_is_fine_and_last_member_is_kept():
    probes = healthy_cluster(hosts=["e1", "e2"])
    result = run(data("remove", HOSTS, probes, play=["e1", "e2"], remove="e3"))
    assert result["errors"] == [] and result["already_removed"] and result["member"] is None
    probes = healthy_cluster(hosts=["e1"])
    result = run(data("remove", ["e1"], probes, play=["e1"], remove="e1"))
    assert any("last voting etcd member" in e for e in result["errors"])


# -- backup and restore ----------------------------------------------------------------------------

def test_backup_prefers_a_follower():
    assert run(data("backup", HOSTS, healthy_cluster(leader="e1")))["snapshot_host"] == "e2"


def test_restore_refused_on_members_with_data_unless_forced():
    result = run(data("restore", HOSTS, healthy_cluster()))
    assert any("refusing to restore" in e and "e1 (etcd runs, holds member data)" in e for e in result["errors"])
    result = run(data("restore", HOSTS, healthy_cluster(), force=True))
    assert result["errors"] == [] and result["wipe"] == HOSTS
    fresh = {h: probe(initialized=False, active=False, version=None, ca=(None, None)) for h in HOSTS}
    result = run(data("restore", HOSTS, fresh))
    assert result["errors"] == [] and result["wipe"] == []
    assert result["initial_cluster"] == ",".join("%s=https://%s:2380" % (h, ADDR[h]) for h in HOSTS)


# -- the download of etcd 3.4 (no etcdutl in its archive) -----------------------------------------------

def test_etcd_34_archive_installs_without_etcdutl():
    table = load_table()
    overrides = {"etcd": {"3.4.23": {"amd64": "0" * 64}}}
    old = table.resolve("etcd", "3.4.23", "amd64", overrides=overrides)
    new = table.resolve("etcd", "3.6.9", "amd64")
    assert [m["dest"] for m in old["members"]] == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]
    assert [m["dest"] for m in new["members"]] == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl",
                                                   "/usr/local/bin/etcdutl"]
    assert all("since" not in m for m in old["members"] + new["members"])


# -- reading what the etcd_member tasks registered -------------------------------------------------------

def registered(probe_, **extra):
    """A result as Ansible registers it for an etcd_member task: the probe's keys and Ansible's own."""
    return dict(probe_, changed=False, invocation={"module_args": {"data_dir": "/var/lib/etcd"}}, **extra)


def test_inventory_gives_every_etcd_host_its_name_address_and_urls():
    hostvars = {"e1": {"ip": "192.0.2.11", "ansible_host": "198.51.100.1"},
                "e2": {"ansible_host": "198.51.100.2", "etcd_member_name": "second"},
                "e3": {"etcd_address": "2001:db8::3", "ip": "192.0.2.13"}, "e4": {}}
    assert plan_mod.inventory(hostvars, ["e1", "e2", "e3", "e4"], 2380, "2379") == {
        "e1": {"member_name": "e1", "address": "192.0.2.11", "peer_url": "https://192.0.2.11:2380",
               "client_url": "https://192.0.2.11:2379"},
        "e2": {"member_name": "second", "address": "198.51.100.2", "peer_url": "https://198.51.100.2:2380",
               "client_url": "https://198.51.100.2:2379"},
        "e3": {"member_name": "e3", "address": "2001:db8::3", "peer_url": "https://[2001:db8::3]:2380",
               "client_url": "https://[2001:db8::3]:2379"},
        "e4": {"member_name": "e4", "address": "e4", "peer_url": "https://e4:2380", "client_url": "https://e4:2379"}}


def test_inventory_address_is_the_one_the_cluster_certificates_name():
    facts = {"ip": "192.0.2.21", "ansible_host": "198.51.100.21"}
    assert plan_mod.inventory({"cp1": facts}, ["cp1"], 2380, 2379)["cp1"]["address"] \
        == pki_catalog.host_address(facts, "cp1") == "192.0.2.21"
    member = plan_mod.inventory({"cp1": facts}, ["cp1"], 2380, 2379)["cp1"]
    server = pki_catalog.etcd_certificates("cp1", True, False, member["member_name"], member["address"])[0]
    assert server["ip_addresses"] == ["192.0.2.21", "127.0.0.1", "::1"]


def test_inventory_adds_the_host_being_removed():
    hostvars = {"e1": {"ip": "192.0.2.11"}, "old": {"ip": "192.0.2.99", "etcd_member_name": "gone"}}
    info = plan_mod.inventory(hostvars, ["e1"], 2380, 2379, remove="old")
    assert list(info) == ["e1", "old"] and info["old"]["peer_url"] == "https://192.0.2.99:2380"
    # a member name that is no inventory host has only its name
    assert plan_mod.inventory(hostvars, ["e1"], 2380, 2379, remove="etcd9")["etcd9"]["address"] == "etcd9"
    assert list(plan_mod.inventory(hostvars, ["e1"], 2380, 2379, remove="e1")) == ["e1"]


def test_probe_keys_match_the_module():
    assert plan_mod.PROBE_KEYS == PROBE_KEYS


def test_read_probe_keeps_the_answer_and_nothing_else():
    answer = probe()
    assert plan_mod.read_probe(registered(answer, failed=False)) == (answer, False)


@pytest.mark.parametrize("result, unreachable", [
    (None, False),                                                   # not asked
    ({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}, False),
    ({"unreachable": True, "msg": "Failed to connect to the host via ssh"}, True),
    # failed_when: false turns a failure into a result without "failed": the keys tell
    ({"changed": False, "failed_when_result": False, "msg": "MODULE FAILURE"}, True),
    ({"failed": True, "msg": "etcd is not healthy after 30 s", **probe()}, True),
])
def test_read_probe_of_hosts_without_an_answer(result, unreachable):
    assert plan_mod.read_probe(result) == (None, unreachable)


def test_read_probes_adds_the_answers_to_the_inventory():
    hosts = {h: info(h) for h in HOSTS}
    answers = {"e1": registered(probe()), "e2": {"unreachable": True, "msg": "timed out"}}
    entries = plan_mod.read_probes(hosts, answers)
    assert entries["e1"] == dict(info("e1"), probe=probe(), unreachable=False)
    assert entries["e2"] == dict(info("e2"), probe=None, unreachable=True)
    assert entries["e3"] == dict(info("e3"), probe=None, unreachable=False)


def test_an_unreachable_member_outside_the_run_is_reported():
    probes = healthy_cluster()
    data_ = data("converge", HOSTS, probes, play=["e1", "e2"])
    data_["hosts"] = plan_mod.read_probes(
        {h: info(h) for h in HOSTS},
        {"e1": registered(probes["e1"]), "e2": registered(probes["e2"]), "e3": {"unreachable": True}})
    result = run(data_)
    assert "e3 (etcd group) is unreachable" in result["errors"]


def test_a_plan_without_a_version_is_refused():
    with pytest.raises(plan_mod.Refusal, match="target_version"):
        plan_mod.plan(data("upgrade", HOSTS, healthy_cluster(), target=""))
    assert plan_mod.plan(data("backup", HOSTS, healthy_cluster(), target=""))["errors"] == []


# -- the action plugin, through ansible-playbook ---------------------------------------------------------

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      kubeforge.cluster.etcd_plan:
        mode: "{{ given.mode }}"
        target_version: "{{ given.target_version }}"
        allow_downgrade: "{{ given.allow_downgrade }}"
        remove: "{{ given.remove }}"
        etcd_hosts: "{{ given.etcd_hosts }}"
        play_hosts: "{{ given.play_hosts }}"
        hosts: "{{ given.hosts }}"
        probes: "{{ given.probes }}"
"""


RESULT_LINE = re.compile(r"^(ok: \[localhost\]|fatal: \[localhost\]: FAILED!) => (\{.*\})$", re.M)


def action(tmp_path, mode, probes, **extra):
    """Run the etcd_plan action in a real playbook; returns (rc, the task's result, output).

    The result is read from the output (``failed`` from the line it is on: the callback drops the key).
    """
    given = {"mode": mode, "target_version": extra.pop("target", "3.5.16"), "allow_downgrade": False, "remove": "",
             "etcd_hosts": HOSTS, "play_hosts": extra.pop("play", HOSTS), "hosts": {h: info(h) for h in HOSTS},
             "probes": {h: registered(p) for h, p in probes.items()}}
    given.update(extra)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "given.json").write_text(json.dumps({"given": given}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_CALLBACK_FORMAT_PRETTY="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-v", "-i", "localhost,",
                           "-c", "local", "-e", "@" + str(tmp_path / "given.json"), str(tmp_path / "play.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    found = RESULT_LINE.search(proc.stdout)
    assert found, output
    return proc.returncode, dict(json.loads(found.group(2)), failed=found.group(1).startswith("fatal")), output


def test_action_returns_the_plan_and_the_answers(tmp_path):
    probes = healthy_cluster(leader="e2")
    rc, task, output = action(tmp_path, "upgrade", {h: probes[h] for h in HOSTS}, target="3.5.30")
    assert rc == 0, output
    assert task["changed"] is False and task["errors"] == []
    assert task["plan"]["upgrade"] == ["e1", "e3", "e2"] and task["plan"]["snapshot_host"] == "e1"
    assert task["probes"] == {h: json.loads(json.dumps(probes[h])) for h in HOSTS}
    assert "invocation" not in json.dumps(task["probes"])


def test_action_fails_with_every_refusal_at_once(tmp_path):
    probes = healthy_cluster(version="3.4.23", e3=member("e3", healthy=False, error="context deadline exceeded"))
    rc, task, output = action(tmp_path, "upgrade", probes, target="3.6.9", play=["e1", "e2"])
    assert rc != 0 and task["failed"], output
    assert "plan" not in task
    assert len(task["errors"]) >= 3 and task["msg"] == "\n".join(task["errors"])
    assert "etcd is not running there (systemd: inactive/dead)" in task["msg"]
    assert "e3 is not in this run" in task["msg"]
    assert "skips minor version 3.5" in task["msg"]


def test_action_reports_warnings(tmp_path):
    probes = healthy_cluster(hosts=("e1", "e2", "e3"))
    rc, task, output = action(tmp_path, "remove", {h: probes[h] for h in ("e1", "e2")}, play=["e1", "e2"],
                              remove="e3")
    assert rc == 0, output
    assert task["plan"]["member"]["name"] == "e3"
    assert "[WARNING]: after the removal the cluster has 2 voting members, an even number" in " ".join(output.split())


def test_action_rejects_a_bad_mode(tmp_path):
    rc, task, output = action(tmp_path, "grow", healthy_cluster())
    assert rc != 0 and task["failed"] and "grow" in task["msg"] and "mode" in task["msg"], output


def _assess_tasks():
    with open(os.path.join(ROOT, "roles", "etcd", "tasks", "assess.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client, to be refused by 127.0.0.1 port 1")
def test_unreachable_member_outside_the_run_reaches_the_plan(tmp_path):
    """``--limit`` leaves a member out of the run and it is down: the role's own probe and plan tasks (verbatim
    from roles/etcd/tasks/assess.yml, with the role's vars) must bring the plan to name it, as the pki role's
    probe of the CA files does (tests/unit/plugins/filter/test_pki_filters.py), not end the play without a word.
    """
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[etcd]\nlocalhost ansible_connection=local\n"
                         "e9 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
                         "ansible_ssh_common_args=\"-o ConnectTimeout=5 -o ConnectionAttempts=1\"\n")
    tasks = _assess_tasks()
    assert [t["name"] for t in tasks] == ["Read each member's data, CA, binary, service and cluster",
                                          "Read the etcd members that are not in this run",
                                          "Plan from the inventory and the members' answers"]
    # the plan's refusals fail its task; here they are the result
    tasks[-1]["ignore_errors"] = True
    report = {"ansible.builtin.copy": {"dest": "{{ out }}", "content": "{{ __etcd_plan_run | to_json }}"},
              "run_once": True}
    data_dir = tmp_path / "data"
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars_files": [os.path.join(ROOT, "roles", "etcd", "defaults", "main.yml"),
                            os.path.join(ROOT, "roles", "etcd", "vars", "main.yml")],
             "vars": {"__etcd_mode": "converge", "kubeforge_etcd_version": "3.5.30"},
             "module_defaults": {"kubeforge.cluster.etcd_member": {
                 "data_dir": str(data_dir), "pki_dir": str(tmp_path / "pki"), "bin_dir": str(tmp_path / "bin"),
                 "endpoint": "https://127.0.0.1:1"}},
             "tasks": tasks + [report]}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(playbook),
                           "-i", str(inventory), "--limit", "localhost", "-e", "out=%s" % out,
                           "-e", "ansible_python_interpreter=%s" % sys.executable],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["failed"] is True
    assert "e9 (etcd group) is unreachable" in result["errors"], result["errors"]


# -- the restart order, from what this run's tasks registered --------------------------------------------

IGNORED = ["/etc/etcd/etcd-bootstrap.env", "/etc/etcd/etcdctl.env"]


def looped(*items):
    """A looped task's registration: ``items`` are (loop item, changed) pairs."""
    return {"changed": any(changed for _item, changed in items), "msg": "All items completed",
            "results": [{"item": item, "changed": changed, "ansible_loop_var": "item"} for item, changed in items]}


def running(stale=()):
    return {"service": {"active": True, "state": "active/running", "stale": list(stale)}}


def nothing_changed():
    return {"files": looped(({"src": "etcd.env.j2", "dest": "/etc/etcd/etcd.env"}, False)),
            "certificates": {"changed": False, "skipped": True, "skipped_reason": "No items in the list",
                             "results": []},
            "ca": looped(({"item": "ca.crt", "content": "Y2E="}, False),
                         ({"item": "ca.key", "content": "a2V5"}, False)),
            "binary": {"changed": False}, "started": {"changed": False, "skipped": True}}


def restart(registered, probes=None, order=("e2", "e3", "e1"), play=None):
    probes = {h: running() for h in HOSTS} if probes is None else probes
    play = HOSTS if play is None else play
    return plan_mod.restart_order(list(order), list(play), probes, registered, IGNORED)


def test_a_run_that_changed_nothing_restarts_nothing():
    assert restart({h: nothing_changed() for h in HOSTS}) == []
    assert restart({}) == []


@pytest.mark.parametrize("role, registered", [
    ("files", looped(({"src": "etcd.env.j2", "dest": "/etc/etcd/etcd.env"}, True))),
    ("files", looped(({"src": "etcd.service.j2", "dest": "/etc/systemd/system/etcd.service"}, True))),
    ("certificates", looped(({"name": "server", "cert_path": "/etc/kubernetes/pki/etcd/server.crt"}, True))),
    ("certificates", looped(({"name": "peer", "cert_path": "/etc/kubernetes/pki/etcd/peer.crt"}, True))),
    ("ca", looped(({"item": "ca.crt", "content": "Y2E="}, True))),
    ("binary", {"changed": True, "artifacts": []}),
])
def test_what_a_running_member_is_restarted_for(role, registered):
    changes = {h: nothing_changed() for h in HOSTS}
    changes["e1"][role] = registered
    changes["e3"][role] = registered
    # the plan's order: followers first, the leader (e1) last
    assert restart(changes) == ["e3", "e1"]


@pytest.mark.parametrize("role, registered", [
    ("files", looped(({"src": "etcd-bootstrap.env.j2", "dest": "/etc/etcd/etcd-bootstrap.env"}, True),
                     ({"src": "etcdctl.env.j2", "dest": "/etc/etcd/etcdctl.env"}, True))),
    ("certificates", looped(({"name": "healthcheck-client"}, True), ({"name": "apiserver-etcd-client"}, True))),
    ("ca", looped(({"item": "ca.key", "content": "a2V5"}, True))),
])
def test_what_etcd_does_not_read_while_it_runs_restarts_nothing(role, registered):
    changes = {h: nothing_changed() for h in HOSTS}
    changes["e2"][role] = registered
    assert restart(changes) == []


def test_an_input_changed_after_the_start_of_an_earlier_run_restarts():
    probes = {h: running() for h in HOSTS}
    probes["e1"] = running(stale=["/etc/kubernetes/pki/etcd/server.crt"])
    assert restart({h: nothing_changed() for h in HOSTS}, probes) == ["e1"]


def test_members_stopped_just_started_or_outside_the_run_are_not_restarted():
    changes = {h: dict(nothing_changed(), binary={"changed": True}) for h in HOSTS}
    changes["e2"]["started"] = {"changed": True, "state": "started"}
    probes = {"e1": running(), "e2": running(), "e3": {"service": {"active": False, "stale": ["x"]}}}
    assert restart(changes, probes) == ["e1"]
    assert restart(changes, {"e1": running()}, play=["e2", "e3"]) == []
    assert restart(changes, {"e1": None, "e2": running()}) == []
