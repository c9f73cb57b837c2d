# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""playbooks/reset.yml run for real against hosts that are not there: the confirmation refuses
before any host is contacted (also when --limit leaves the controller's play out), and with it an
unreachable host is named while the others are reset.

SSH is replaced by a program that records every attempt and fails; the one reachable host, cp1,
runs its modules with a stand-in interpreter that records the call and answers like reset_host,
so nothing runs on this machine."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ANSWER = {"changed": True, "msg": "removed 3 paths", "stopped": [], "pods": [], "containers": [], "disabled": [],
          "unmounted": [], "interfaces": [], "routes": [], "firewall": [], "users": [], "daemon_reload": False,
          "removed": ["/etc/kubernetes/pki", "/var/lib/kubelet", "/var/lib/etcd"]}


def inventory(case, cluster_vars):
    hosts = {"cp1": {"ansible_host": "192.0.2.11", "ansible_connection": "local",
                     "ansible_python_interpreter": os.path.join(case, "fake-python")},
             "cp2": {"ansible_host": "192.0.2.12"}, "cp3": {"ansible_host": "192.0.2.13"},
             "worker1": {"ansible_host": "192.0.2.21"}}
    return {"all": {
        "hosts": hosts,
        "vars": dict(cluster_vars, ansible_connection="ssh", ansible_ssh_executable=os.path.join(case, "fake-ssh")),
        "children": {"kube_control_plane": {"hosts": {"cp1": None, "cp2": None, "cp3": None}},
                     "etcd": {"hosts": {"cp1": None, "cp2": None, "cp3": None}},
                     "kube_node": {"hosts": {"worker1": None}},
                     "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}}}}}


def run_case(workdir, name, args, cluster_vars=None):
    case = os.path.join(workdir, name)
    os.makedirs(os.path.join(case, "tmp"))
    script = {"fake-ssh": "#!/bin/sh\necho \"$@\" >> %s/ssh-contacted\nexit 255\n" % case,
              "fake-python": "#!/bin/sh\ncat > /dev/null\necho cp1 >> %s/module-ran\necho '%s'\n"
                             % (case, json.dumps(ANSWER))}
    for file_name, text in script.items():
        path = os.path.join(case, file_name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o755)
    with open(os.path.join(case, "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory(case, cluster_vars or {}), handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_LOCAL_TEMP=os.path.join(case, "tmp"), ANSIBLE_REMOTE_TEMP=os.path.join(case, "tmp"),
               ANSIBLE_TIMEOUT="5", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                           os.path.join(case, "hosts.yml"), "playbooks/reset.yml"] + args,
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr,
            "ssh": os.path.exists(os.path.join(case, "ssh-contacted")),
            "module": os.path.exists(os.path.join(case, "module-ran"))}


CASES = {
    "no_confirmation": ([], None),
    "confirmed_with_true": (["-e", "kubeforge_reset_confirm=true"], None),
    "another_cluster": (["-e", "kubeforge_reset_confirm=kubeforge"], {"kubeforge_cluster_name": "prod"}),
    "limit_without_the_controller": (["--limit", "worker1"], None),
    "confirmed": (["-e", "kubeforge_reset_confirm=kubeforge"], None),
    "confirmed_with_a_limit": (["-e", "kubeforge_reset_confirm=prod", "--limit", "cp1"], {"kubeforge_cluster_name": "prod"}),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("reset"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, workdir, name, args, cluster_vars)
                   for name, (args, cluster_vars) in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name, got, cluster", [
    ("no_confirmation", "nothing", "kubeforge"),
    ("confirmed_with_true", "'true'", "kubeforge"),
    ("another_cluster", "'kubeforge'", "prod"),
    ("limit_without_the_controller", "nothing", "kubeforge"),
])
def test_the_reset_is_refused_before_any_host_is_contacted(results, name, got, cluster):
    result = results[name]
    assert result["rc"] != 0, result["out"]
    expected = (f"kubeforge_reset_confirm must be the name of the cluster, kubeforge_cluster_name '{cluster}' "
                f"(got {got}).")
    assert expected in result["out"], result["out"]
    assert f"To go ahead: -e kubeforge_reset_confirm={cluster}" in result["out"], result["out"]
    assert not result["ssh"] and not result["module"], result["out"]


def test_an_unreachable_host_is_named_and_the_others_are_reset(results):
    result = results["confirmed"]
    assert result["module"], result["out"]
    assert result["ssh"] and "UNREACHABLE" in result["out"], result["out"]
    assert result["rc"] == 4, result["out"]
    assert ("Reset 1 of 4 hosts (cp1). Unreachable, left as they were: cp2, cp3, worker1. When they are back, run "
            "again with --limit cp2,cp3,worker1 -e kubeforge_reset_confirm=kubeforge.") in result["out"], result["out"]


def test_a_limit_without_the_controller_confirms_in_the_hosts_play(results):
    result = results["confirmed_with_a_limit"]
    assert result["rc"] == 0, result["out"]
    assert result["module"] and not result["ssh"], result["out"]
    assert "Reset 1 of 1 hosts (cp1)." in result["out"], result["out"]
