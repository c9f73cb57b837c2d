# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The artifacts module run as a program, as on a host: arguments in, JSON out.

This covers the module wrapper (argument spec, AnsibleModule.atomic_move as the mover, check
mode, diff, error reporting); the engine itself is tested in module_utils/test_artifacts.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
MODULE = os.path.join(ROOT, "plugins", "modules", "artifacts.py")
sys.path.insert(0, os.path.join(ROOT, "tests"))

from support.release_server import ReleaseServer, build_release  # noqa: E402


@pytest.fixture
def server(tmp_path):
    srv = ReleaseServer(tmp_path / "srv").start()
    yield srv
    srv.stop()


def run_module(tmp_path, args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
    proc = subprocess.run([sys.executable, MODULE, str(args_file)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


def test_module_needs_its_action_plugin(tmp_path):
    result = run_module(tmp_path, {})
    assert result["failed"] is True
    assert "action plugin" in result["msg"]


def test_module_install_check_diff_and_rerun(tmp_path, server):
    table = build_release(server.root, tmp_path / "root")
    specs = table.resolve_many(["etcd", "runc"], "amd64", {}, {}, server.url, {})
    state_file = str(tmp_path / "state" / "artifacts.json")
    base = {"resolved": specs, "state_file": state_file, "retries": 0, "timeout": 5}

    planned = run_module(tmp_path, dict(base, _ansible_check_mode=True, _ansible_diff=True))
    assert planned["changed"] is True and sorted(planned["needed"]) == ["etcd", "runc"]
    assert planned["diff"]["before"] == "etcd: (not installed)\nrunc: (not installed)\n"
    assert planned["diff"]["after"] == "etcd: 3.9.1\nrunc: 1.9.0\n"
    assert not os.path.exists(state_file) and server.total() == 0

    done = run_module(tmp_path, dict(base, _ansible_diff=True))
    assert done["changed"] is True, done
    assert sorted(done["downloaded"]) == sorted(s["url"] for s in specs)
    assert (tmp_path / "root/usr/local/sbin/runc").stat().st_mode & 0o777 == 0o755
    assert done["installed_files"] == sorted(
        [str(tmp_path / "root/usr/local/bin" / n) for n in ("etcd", "etcdctl", "etcdutl")]
        + [str(tmp_path / "root/usr/local/sbin/runc")])

    again = run_module(tmp_path, base)
    assert again["changed"] is False and again["downloaded"] == [] and "diff" not in again
    assert server.total() == 2


def test_module_reports_failures_as_failed(tmp_path, server):
    table = build_release(server.root, tmp_path / "root")
    spec = table.resolve("runc", "1.9.0", "amd64", server.url)
    spec["sha256"] = "0" * 64
    result = run_module(tmp_path, {"resolved": [spec], "state_file": str(tmp_path / "s.json"), "retries": 0})
    assert result["failed"] is True
    assert "sha256 mismatch for runc 1.9.0 (amd64)" in result["msg"]
    assert not (tmp_path / "root/usr/local/sbin/runc").exists()
