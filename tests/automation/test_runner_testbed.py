# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The playbooks through ansible-runner, against real test-bed nodes, with the collection
installed from its built tarball - as automation runs them (docs/automation.md).

- install.yml (the os phase) through ``ansible_runner.run``: successful, per-host events, the
  summary JSON in the artifacts, agreeing with the recap;
- bad input (an invalid inventory through ``ansible-runner run``, a missing confirmation and a
  missing snapshot through ``ansible_runner.run_async``): failed, the message the command line
  gives in the events and in the summary, and no host contacted;
- a worker-only playbook on two slices of the inventory, as AWX slices a job, gives the same
  result as one run on the same (fresh) nodes.

Needs the test bed (``hack/test automation`` prepares it); uses its own nodes, rt-runner-*.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import ansible_runner
import pytest
import yaml

from .conftest import BIN, ROOT, clean_environment

TESTBED = os.path.join(ROOT, "hack", "testbed")
STATE = os.environ.get("KUBEFORGE_TESTBED_HOME") or "/var/tmp/kubeforge-testbed"
CLUSTER = "rt-runner"
LAYOUT = "1:cp+etcd@bookworm,2:worker@trixie"
WORKERS = [f"{CLUSTER}-w1", f"{CLUSTER}-w2"]
ANSIBLE_CFG = """\
[defaults]
forks = 50
gathering = explicit
interpreter_python = auto_silent
callbacks_enabled = kubeforge.cluster.summary
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o PreferredAuthentications=publickey
"""
WORKERS_PLAYBOOK = os.path.join(ROOT, "tests", "automation", "playbooks", "workers.yml")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(os.path.join(STATE, "ssh", "id_ed25519")),
                       reason="no test bed on this machine (hack/test automation prepares it)"),
    # ansible-runner starts ansible-playbook with forkpty(); run_async does it from a thread
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def run_testbed(*args):
    proc = subprocess.run([TESTBED, *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def bed_inventory():
    run_testbed("up", "--cluster", CLUSTER, "--layout", LAYOUT, "--prune")
    with open(os.path.join(STATE, "clusters", CLUSTER, "inventory.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def cluster():
    yield bed_inventory()
    run_testbed("down", "--cluster", CLUSTER)


@pytest.fixture(scope="module")
def collections(collection_tarball, tmp_path_factory):
    """The collection installed from its tarball, as a user of ansible-runner installs it."""
    path = tmp_path_factory.mktemp("collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-p", str(path), str(collection_tarball)],
                   check=True, capture_output=True, text=True, env=clean_environment(), cwd=str(path))
    assert os.path.isdir(os.path.join(path, "ansible_collections", "kubeforge", "cluster"))
    return str(path)


def private_data_dir(path, collections, inventory, extravars=None, cmdline=None):
    """A private data directory laid out as ansible-runner expects; SSH goes through a program
    that records every host it is asked to reach, then runs ssh."""
    os.makedirs(os.path.join(path, "inventory"))
    os.makedirs(os.path.join(path, "env"))
    contacts = os.path.join(path, "contacted")
    ssh = os.path.join(path, "ssh-recording")
    with open(ssh, "w", encoding="utf-8") as handle:
        handle.write(f"#!/bin/sh\necho \"$@\" >> {contacts}\nexec {shutil.which('ssh')} \"$@\"\n")
    os.chmod(ssh, 0o755)
    inventory = copy.deepcopy(inventory)
    inventory["all"].setdefault("vars", {})["ansible_ssh_executable"] = ssh
    files = {
        "inventory/hosts.yml": inventory,
        "env/extravars": extravars or {},
        "env/settings": {"job_timeout": 1800, "idle_timeout": 900},
        "env/envvars": {"ANSIBLE_CONFIG": os.path.join(path, "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": collections,
                        "ANSIBLE_NOCOLOR": "1"},
    }
    for name, data in files.items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle)
    if cmdline:
        with open(os.path.join(path, "env", "cmdline"), "w", encoding="utf-8") as handle:
            handle.write(cmdline)
    with open(os.path.join(path, "ansible.cfg"), "w", encoding="utf-8") as handle:
        handle.write(ANSIBLE_CFG)
    return path


def contacted(pdd):
    path = os.path.join(pdd, "contacted")
    return open(path, encoding="utf-8").read() if os.path.exists(path) else ""


def summary_of(artifact_dir):
    with open(os.path.join(artifact_dir, "kubeforge_summary.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture
def clean_env(monkeypatch):
    """ansible-runner starts ansible-playbook with this process's environment plus env/envvars:
    nothing of the checkout's configuration may leak into a run of the installed collection."""
    wanted = clean_environment()
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)


def test_install_through_ansible_runner(cluster, collections, tmp_path, clean_env):
    pdd = private_data_dir(str(tmp_path / "pdd"), collections, cluster, cmdline="--tags os")
    result = ansible_runner.run(private_data_dir=pdd, playbook="kubeforge.cluster.install", ident="install", quiet=True)
    events = list(result.events)
    stdout = result.stdout.read()
    assert (result.status, result.rc) == ("successful", 0), stdout
    hosts = set(cluster["all"]["hosts"])
    assert set(contacted(pdd).split()) >= {cluster["all"]["hosts"][h]["ansible_host"] for h in hosts}

    # per host and phase: every node ran the os role's tasks from the installed collection
    os_events = [e for e in events if e["event"] == "runner_on_ok" and e["event_data"].get("role") == "os"]
    assert {e["event_data"]["host"] for e in os_events} == hosts
    assert all(e["event_data"]["task_path"].startswith(collections) for e in os_events)
    assert {e["event_data"]["play"] for e in os_events} == {"Operating system"}
    plays = [e["event_data"]["play"] for e in events if e["event"] == "playbook_on_play_start"]
    assert plays[:2] == ["Preflight", "Operating system"]

    # the summary: in the artifacts, agreeing with the recap of the stats event
    summary = summary_of(result.config.artifact_dir)
    stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    assert summary["status"] == "successful" and summary["error"] is None and summary["playbook"] == "install.yml"
    for host in hosts:
        recap = summary["recap"][host]
        assert (recap["ok"], recap["changed"], recap["failures"], recap["unreachable"], recap["skipped"]) == (
            stats["ok"].get(host, 0), stats["changed"].get(host, 0), stats["failures"].get(host, 0),
            stats["dark"].get(host, 0), stats["skipped"].get(host, 0))
        assert result.stats["ok"][host] == recap["ok"]
        roles = summary["hosts"][host]["roles"]
        assert {"preflight", "os"} <= set(roles)
        assert sum(r["ok"] for r in roles.values()) == recap["ok"]
        assert summary["cluster"]["nodes"][host]["os"].startswith("Debian GNU/Linux")
    assert summary["cluster"]["versions"]["kubernetes"]
    assert summary["cluster"]["endpoint"] == f"https://{cluster['all']['hosts'][CLUSTER + '-cp1']['ip']}:6443"
    assert summary["cluster"]["admin_conf"]["hosts"] == [f"{CLUSTER}-cp1"]
    assert "KUBEFORGE SUMMARY: install.yml succeeded in " in stdout


BAD_POD_CIDR = "10.233.0.0/16"


def bad_cases(cluster):
    bad_inventory = copy.deepcopy(cluster)
    bad_inventory["all"]["vars"]["kubeforge_pod_cidr"] = BAD_POD_CIDR
    return {
        "bad_inventory": ("kubeforge.cluster.install", bad_inventory, {},
                          "Inventory check found 1 error; no host was contacted or changed:\n"
                          f"  - kubeforge_pod_cidr: {BAD_POD_CIDR} overlaps kubeforge_service_cidr 10.233.0.0/18"),
        "remove_node_unconfirmed": ("kubeforge.cluster.remove_node", cluster, {"node": f"{CLUSTER}-w2"},
                                    "Name the node and confirm: -e node=NAME -e remove_node_confirm=true "
                                    f"(got node={CLUSTER}-w2, remove_node_confirm=False)"),
        "restore_without_snapshot": ("kubeforge.cluster.etcd_restore", cluster, {},
                                     "etcd_restore_snapshot must name a snapshot file on the controller (got '')"),
    }


def command_line(playbook, pdd):
    """The same run with ansible-playbook, for the message a person at a terminal reads."""
    def read(name):
        with open(os.path.join(pdd, "env", name), encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    env = clean_environment() | read("envvars")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(pdd, "inventory"), playbook,
                           "-e", json.dumps(read("extravars"))], cwd=pdd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_bad_input_fails_before_any_host(cluster, collections, tmp_path, clean_env):
    cases = bad_cases(cluster)
    started = {}
    for name, (playbook, inventory, extravars, _message) in cases.items():
        pdd = private_data_dir(str(tmp_path / name), collections, inventory, extravars=extravars)
        if name == "bad_inventory":
            # the command line of ansible-runner, on the same private data directory
            proc = subprocess.run([os.path.join(BIN, "ansible-runner"), "run", pdd, "-p", playbook, "--ident", name],
                                  capture_output=True, text=True, check=False, env=clean_environment())
            started[name] = (pdd, None, proc)
        else:
            thread, runner = ansible_runner.run_async(private_data_dir=pdd, playbook=playbook, ident=name, quiet=True)
            started[name] = (pdd, thread, runner)
    for name, (pdd, thread, runner) in started.items():
        playbook, _inventory, _extravars, message = cases[name]
        artifacts = os.path.join(pdd, "artifacts", name)
        if thread is None:
            assert runner.returncode != 0
        else:
            thread.join()
            assert runner.status == "failed" and runner.rc != 0
        with open(os.path.join(artifacts, "status"), encoding="utf-8") as handle:
            assert handle.read().strip() == "failed"
        events = []
        for event_file in sorted(os.listdir(os.path.join(artifacts, "job_events"))):
            with open(os.path.join(artifacts, "job_events", event_file), encoding="utf-8") as handle:
                events.append(json.load(handle))
        failures = [e["event_data"] for e in events if e["event"] == "runner_on_failed"]
        assert len(failures) == 1, (name, failures)
        summary = summary_of(artifacts)
        assert summary["status"] == "failed"
        assert summary["error"]["msg"].startswith(message), (name, summary["error"])
        assert failures[0]["res"]["msg"] == summary["error"]["msg"]
        assert summary["error"]["msg"] in command_line(playbook, pdd), name
        assert contacted(pdd) == "", f"{name}: a host was contacted: {contacted(pdd)}"


def slice_inventory(inventory, number, count):
    """The inventory of slice ``number`` (1-based) of ``count``, as AWX builds it for a sliced job:
    the hosts in name order, every count-th from the number-th, with their groups; nothing of the
    other hosts."""
    hosts = sorted(inventory["all"]["hosts"])[number - 1::count]
    sliced = copy.deepcopy(inventory)
    sliced["all"]["hosts"] = {h: v for h, v in sliced["all"]["hosts"].items() if h in hosts}
    for group in sliced["all"]["children"].values():
        if "hosts" in group:
            group["hosts"] = {h: v for h, v in group["hosts"].items() if h in hosts}
    return sliced


def node_state(host):
    return run_testbed("exec", host, "--", "sh", "-c",
                       "dpkg-query -W -f '${Package} ${Version}\\n'; cat /etc/sysctl.d/*.conf /etc/modules-load.d/*.conf 2>/dev/null; "
                       "sysctl -n net.ipv4.ip_forward fs.inotify.max_user_watches")


def outcome(summary, host):
    """What a run did on a host, without timings."""
    roles = {label: {k: v for k, v in counts.items() if k != "seconds"} for label, counts in summary["hosts"][host]["roles"].items()}
    return {"status": summary["hosts"][host]["status"], "roles": roles, "changes": summary["changes"].get(host, [])}


def fresh_workers():
    run_testbed("down", "--cluster", CLUSTER, *[arg for w in WORKERS for arg in ("--node", w)])
    return bed_inventory()


def test_sliced_run_equals_one_run(cluster, collections, tmp_path, clean_env):
    inventory = fresh_workers()
    slices = [slice_inventory(inventory, n, 2) for n in (1, 2)]
    assert [sorted(s["all"]["hosts"]) for s in slices] == [[f"{CLUSTER}-cp1", f"{CLUSTER}-w2"], [f"{CLUSTER}-w1"]]
    running = []
    for number, sliced in enumerate(slices, 1):
        pdd = private_data_dir(str(tmp_path / f"slice{number}"), collections, sliced)
        running.append(ansible_runner.run_async(private_data_dir=pdd, playbook=WORKERS_PLAYBOOK, ident="slice", quiet=True))
    sliced_outcome = {}
    for thread, runner in running:
        thread.join()
        assert runner.status == "successful", runner.stdout.read()
        summary = summary_of(runner.config.artifact_dir)
        sliced_outcome.update({host: outcome(summary, host) for host in summary["hosts"]})
    sliced_state = {host: node_state(host) for host in WORKERS}

    inventory = fresh_workers()
    pdd = private_data_dir(str(tmp_path / "whole"), collections, inventory)
    runner = ansible_runner.run(private_data_dir=pdd, playbook=WORKERS_PLAYBOOK, ident="whole", quiet=True)
    assert runner.status == "successful", runner.stdout.read()
    summary = summary_of(runner.config.artifact_dir)
    whole_outcome = {host: outcome(summary, host) for host in summary["hosts"]}

    assert set(sliced_outcome) == set(whole_outcome) == set(WORKERS)
    assert any(o["changes"] for o in whole_outcome.values()), "the run changed nothing: the nodes were not fresh"
    assert sliced_outcome == whole_outcome
    assert {host: node_state(host) for host in WORKERS} == sliced_state
