# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The etcd role's decisions (roles/etcd/files/etcd_plan.py) and its probe's building blocks.

The plan is what stands between a run and a lost quorum, so each refusal is checked here with
the member states that should trigger it, next to the states that must not. The inputs have the
shape the probe prints (roles/etcd/files/etcd_probe.py) and the role passes.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "roles", "etcd", "files")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FILES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan_mod = load("etcd_plan")
probe_mod = load("etcd_probe")

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
    """The plan as the role gets it: through the script's stdin and stdout."""
    proc = subprocess.run([sys.executable, os.path.join(FILES, "etcd_plan.py")], input=json.dumps(data_),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


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


# -- the probe's building blocks ---------------------------------------------------------------------

def test_member_initialized_needs_a_wal(tmp_path):
    assert not probe_mod.member_initialized(str(tmp_path))
    (tmp_path / "member" / "wal").mkdir(parents=True)
    assert not probe_mod.member_initialized(str(tmp_path))
    (tmp_path / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_bytes(b"x")
    assert probe_mod.member_initialized(str(tmp_path))


def test_stale_inputs_are_those_changed_after_the_start(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("a")
    started = time.time() + 0.5
    time.sleep(1)
    new.write_text("b")
    assert probe_mod.stale_inputs([str(old), str(new), str(tmp_path / "missing")], started) == [str(new)]
    assert probe_mod.stale_inputs([str(new)], None) == []


def test_process_start_of_this_process():
    started = probe_mod.process_start(os.getpid())
    assert started is not None and started <= time.time() + 1


def test_unhealthy_members_explains_each_problem():
    result = {"local": {"endpoint": "https://127.0.0.1:2379", "healthy": True, "status": {"version": "3.5.16"},
                        "error": ""},
              "cluster": {"members": [
                  {"name": "e1", "id_hex": "1", "endpoint": "https://a:2379", "peer_urls": [], "healthy": True,
                   "is_learner": False, "error": ""},
                  {"name": "", "id_hex": "2", "endpoint": None, "peer_urls": ["https://b:2380"], "healthy": False,
                   "is_learner": True, "error": "added to the cluster but never started"},
                  {"name": "e3", "id_hex": "3", "endpoint": "https://c:2379", "peer_urls": [], "healthy": True,
                   "is_learner": True, "error": ""}]}}
    problems = probe_mod.unhealthy_members(result, want_version="3.5.30")
    assert problems[0] == "this member runs etcd 3.5.16, not 3.5.30"
    assert "(unstarted) (id 2, https://b:2380): added to the cluster but never started" in problems[1]
    assert problems[2] == "e3 (id 3) is still a learner"
    result["local"]["status"]["version"] = "3.5.30"
    result["cluster"]["members"] = result["cluster"]["members"][:1]
    assert probe_mod.unhealthy_members(result, want_version="3.5.30") == []


# -- the download of etcd 3.4 (no etcdutl in its archive) -----------------------------------------------

def test_etcd_34_archive_installs_without_etcdutl():
    collections = os.path.join(ROOT, ".collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import load_table

    table = load_table()
    overrides = {"etcd": {"3.4.23": {"amd64": "0" * 64}}}
    old = table.resolve("etcd", "3.4.23", "amd64", overrides=overrides)
    new = table.resolve("etcd", "3.6.9", "amd64")
    assert [m["dest"] for m in old["members"]] == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl"]
    assert [m["dest"] for m in new["members"]] == ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl",
                                                   "/usr/local/bin/etcdutl"]
    assert all("since" not in m for m in old["members"] + new["members"])


def test_path_info_reports_owner_group_and_mode(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    directory.chmod(0o750)
    found = probe_mod.path_info(str(directory))
    assert found["mode"] == "0750" and found["owner"] and found["group"]
    assert probe_mod.path_info(str(tmp_path / "missing")) is None
    (tmp_path / "f").write_text("x")
    assert probe_mod.path_info(str(tmp_path / "f")) is None
