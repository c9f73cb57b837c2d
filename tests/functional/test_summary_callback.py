# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The kubeforge.cluster.summary callback in real ansible-playbook runs (the ansible-core of the
virtual environment running pytest: the oldest and the newest supported).

The hosts are local connections with the collection's group names, plus one host behind an SSH
program that always fails (unreachable). Each run is made once per module and read by several
tests: the table, the JSON, the play recap they must agree with, the plan of a check run, the
error that stopped a run, progress lines of a long task."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "tests", "functional", "summary", "playbook.yml")
RECAP_LINE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+"
                        r"skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def write_inventory(directory, unreachable=False):
    fake_ssh = os.path.join(directory, "fake-ssh")
    with open(fake_ssh, "w", encoding="utf-8") as handle:
        handle.write("#!/bin/sh\necho 'ssh: connect to host 192.0.2.99 port 22: Connection refused' >&2\nexit 255\n")
    os.chmod(fake_ssh, 0o755)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    nodes = {"w1": dict(local, ip="192.0.2.21"), "w2": dict(local, ansible_host="192.0.2.22")}
    if unreachable:
        nodes["w3"] = {"ansible_host": "192.0.2.99", "ansible_connection": "ssh", "ansible_ssh_executable": fake_ssh}
    data = {"all": {"children": {
        "k8s_cluster": {"children": {
            "kube_control_plane": {"hosts": {"cp1": dict(local, ansible_host="192.0.2.11")}},
            "kube_node": {"hosts": nodes},
        }},
        "etcd": {"hosts": {"cp1": None}},
    }}}
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    return path


def run(directory, *args, unreachable=False, extra=None, env=None):
    os.makedirs(directory)
    out = os.path.join(directory, "out")
    os.makedirs(out)
    json_path = os.path.join(directory, "summary.json")
    extra_vars = {"summary_out": out, "summary_sleep": 3, **(extra or {})}
    environment = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_CALLBACKS_ENABLED="kubeforge.cluster.summary", KUBEFORGE_SUMMARY_JSON=json_path,
                       KUBEFORGE_SUMMARY_PROGRESS_INTERVAL="1", ANSIBLE_LOCAL_TEMP=os.path.join(directory, "tmp"),
                       **(env or {}))
    environment.pop("AWX_ISOLATED_DATA_DIR", None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
               write_inventory(directory, unreachable), PLAYBOOK, "-e", json.dumps(extra_vars), *args]
    proc = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False)
    summary = None
    if os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as handle:
            summary = json.load(handle)
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr, "summary": summary, "files": out}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("summary"))
    cases = {
        "clean": ((), {}),
        "check": (("--check", "--diff"), {}),
        "failing": ((), {"unreachable": True, "extra": {"summary_fail_on": ["w2"]}}),
        "in_output": (("--limit", "cp1"), {"env": {"KUBEFORGE_SUMMARY_JSON_IN_OUTPUT": "true"}}),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {name: pool.submit(run, os.path.join(base, name), *args, **kwargs) for name, (args, kwargs) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def recap_of(out):
    return {m[0]: dict(zip(("ok", "changed", "unreachable", "failures", "skipped", "rescued", "ignored"),
                           map(int, m[1:]))) for m in RECAP_LINE.findall(out)}


@pytest.mark.parametrize("name", ["clean", "check", "failing"])
def test_json_agrees_with_the_play_recap(runs, name):
    result = runs[name]
    summary = result["summary"]
    assert summary is not None, result["out"] + result["err"]
    recap = recap_of(result["out"])
    assert recap and summary["recap"] == recap
    for host, stats in recap.items():
        roles = summary["hosts"][host]["roles"]
        assert sum(r["ok"] for r in roles.values()) == stats["ok"], (host, roles, stats)
        assert sum(r["changed"] for r in roles.values()) == stats["changed"], (host, roles, stats)
        assert sum(r["skipped"] for r in roles.values()) == stats["skipped"], (host, roles, stats)
        assert sum(r["failed"] for r in roles.values()) == stats["failures"], (host, roles, stats)
        assert sum(r["unreachable"] for r in roles.values()) == stats["unreachable"], (host, roles, stats)
        assert sum(r["ignored"] for r in roles.values()) == stats["ignored"], (host, roles, stats)


def test_clean_run_summary(runs):
    result = runs["clean"]
    summary = result["summary"]
    assert result["rc"] == 0, result["out"]
    assert summary["format"] == 1 and summary["status"] == "successful" and summary["error"] is None
    assert summary["playbook"] == "playbook.yml" and summary["check_mode"] is False
    assert [p["name"] for p in summary["plays"]] == ["Before the roles", "The demo role", "The end"]
    demo = summary["hosts"]["w1"]["roles"]["demo"]
    # copy, skipped debug, include_tasks (counted when loaded), the ignored failure, sleep
    assert (demo["ok"], demo["changed"], demo["skipped"], demo["ignored"], demo["failed"]) == (4, 1, 1, 1, 0)
    assert demo["seconds"] >= 3
    assert set(summary["hosts"]["w1"]["roles"]) == {"play:Before the roles", "demo", "play:The end"}
    nodes = summary["cluster"]["nodes"]
    assert nodes["cp1"]["groups"] == ["kube_control_plane", "etcd"] and nodes["cp1"]["address"] == "192.0.2.11"
    assert nodes["w1"]["address"] == "192.0.2.21" and nodes["w1"]["groups"] == ["kube_node"]
    assert summary["cluster"]["admin_conf"] is None  # no inventory check, no kubeconfig task: nothing to say
    assert summary["changes"]["w2"] == [{"role": "demo", "task": "Write the host's file",
                                         "targets": [os.path.join(result["files"], "w2.txt")]}]
    table = result["out"].split("KUBEFORGE SUMMARY: ", 1)[1]
    assert table.startswith("playbook.yml succeeded in ")
    assert re.search(r"^w1\s+play:Before the roles\s+1\s+0\s+0\s+0\s+\d+\.\d$", table, re.M), table
    assert re.search(r"^\s+demo\s+4\s+1\s+1\s+0\s+\d+\.\d$", table, re.M), table
    assert re.search(r"^cp1\s+192\.0\.2\.11\s+control plane, etcd\s+-\s+changed$", table, re.M), table
    assert "changed (per host and file):" in table


def test_progress_of_a_long_task(runs):
    out = runs["clean"]["out"]
    lines = [line for line in out.splitlines() if line.startswith("  ... demo: Take a while, so that progress is shown: running for")]
    assert lines, out
    assert re.search(r"hosts done; waiting for ", lines[0]), lines


def test_check_run_shows_the_plan_and_changes_nothing(runs):
    result = runs["check"]
    summary = result["summary"]
    assert result["rc"] == 0, result["out"]
    assert summary["check_mode"] is True and summary["status"] == "successful"
    assert os.listdir(result["files"]) == []
    for host in ("cp1", "w1", "w2"):
        assert summary["changes"][host][0]["targets"] == [os.path.join(result["files"], f"{host}.txt")]
    table = result["out"].split("KUBEFORGE SUMMARY: ", 1)[1]
    assert "(check mode: nothing was changed)" in table.splitlines()[0]
    assert "plan (would change, per host and file):" in table
    assert f"  w1  demo: Write the host's file: {result['files']}/w1.txt" in table


def test_failed_run_ends_with_its_error(runs):
    result = runs["failing"]
    summary = result["summary"]
    assert result["rc"] != 0
    assert summary["status"] == "failed"
    assert summary["hosts"]["w3"]["status"] == "unreachable"
    assert summary["hosts"]["w2"]["status"] == "failed"
    # the first failure: the unreachable host, at its first task that connects (debug does not)
    assert summary["error"]["host"] == "w3" and summary["error"]["unreachable"] is True
    assert summary["error"]["task"] == "Write the host's file" and summary["error"]["role"] == "demo"
    assert "Connection refused" in summary["error"]["msg"]
    assert summary["hosts"]["w2"]["roles"]["play:The end"]["failed"] == 1
    table = result["out"].split("KUBEFORGE SUMMARY: ", 1)[1]
    assert table.startswith("playbook.yml FAILED in ")
    assert "first failure: w3, demo: Write the host's file:" in table


def test_assert_message_is_kept_whole(runs):
    summary = runs["failing"]["summary"]
    # every failure is in the hosts' rows; the assert's paragraph is what the command line shows
    text = "w2 was asked to fail. This paragraph is what the summary must repeat."
    assert text in runs["failing"]["out"]
    assert summary["hosts"]["w2"]["error"] == {"task": "Fail where asked to", "role": "play:The end", "msg": text}
    assert summary["hosts"]["w1"]["error"] is None


def test_json_in_output_and_limit(runs):
    result = runs["in_output"]
    lines = [line for line in result["out"].splitlines() if line.startswith("KUBEFORGE_SUMMARY_JSON ")]
    assert len(lines) == 1, result["out"]
    printed = json.loads(lines[0][len("KUBEFORGE_SUMMARY_JSON "):])
    assert printed["limit"] == "cp1" and list(printed["hosts"]) == ["cp1"]
    assert printed["recap"] == result["summary"]["recap"]
    assert "--limit cp1" in result["out"].split("KUBEFORGE SUMMARY: ", 1)[1].splitlines()[0]
