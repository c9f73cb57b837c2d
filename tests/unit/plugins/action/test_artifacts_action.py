# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Controller side of kubeforge.cluster.artifacts: the shared download cache, the offline bundle,
and the action plugin run by ansible-playbook against localhost with destinations in a temporary
directory (a versions table with the real structure, served by a real HTTP server)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from support.release_server import ReleaseServer, build_release, closed_port  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.action.artifacts import (  # noqa: E402
    ControllerCache,
    build_bundle,
)
from ansible_collections.kubeforge.cluster.plugins.module_utils.artifacts import ArtifactError  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import TABLE_PATH  # noqa: E402


@pytest.fixture
def server(tmp_path):
    srv = ReleaseServer(tmp_path / "srv").start()
    yield srv
    srv.stop()


@pytest.fixture
def table(server, tmp_path):
    return build_release(server.root, tmp_path / "root")


def fetch_in_threads(cache_dir, spec, count=8):
    results = [None] * count
    errors = []
    barrier = threading.Barrier(count)

    def work(index):
        try:
            barrier.wait()
            results[index] = ControllerCache(cache_dir).ensure(dict(spec))
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


# -- the controller cache -----------------------------------------------------------------------

def test_controller_fetches_once_for_many_hosts(table, server, tmp_path):
    cache_dir = str(tmp_path / "cache")
    spec = table.resolve("etcd", "3.9.1", "amd64", server.url)
    results = fetch_in_threads(cache_dir, spec, count=10)
    assert server.total() == 1, "ten concurrent forks must share one download"
    assert sum(1 for r in results if r["fetched"]) == 1
    assert {r["path"] for r in results} == {os.path.join(cache_dir, spec["mirror_path"])}
    assert {r["sha256"] for r in results} == {spec["sha256"]}

    # A later run (new process, same cache) neither downloads nor re-hashes.
    again = ControllerCache(cache_dir).ensure(dict(spec))
    assert again["fetched"] is False and server.total() == 1

    # A damaged cache entry is noticed and fetched again.
    with open(again["path"], "ab") as handle:
        handle.write(b"garbage")
    repaired = ControllerCache(cache_dir).ensure(dict(spec))
    assert repaired["fetched"] is True and server.total() == 2


def test_published_checksum_is_fetched_once_and_kept(table, server, tmp_path):
    cache_dir = str(tmp_path / "cache")
    spec = table.resolve("kube-apiserver", "1.99.0", "amd64", server.url)
    results = fetch_in_threads(cache_dir, spec, count=6)
    assert server.total() == 2  # <url>.sha256 and the binary, once each
    sidecar = os.path.join(cache_dir, spec["mirror_path"] + ".sha256")
    assert open(sidecar).read().strip() == results[0]["sha256"]


def test_controller_mismatch_and_unreachable_errors(table, server, tmp_path):
    spec = table.resolve("runc", "1.9.0", "amd64", server.url)
    spec["sha256"] = "e" * 64
    with pytest.raises(ArtifactError) as err:
        ControllerCache(str(tmp_path / "c1")).ensure(spec)
    assert "e" * 64 in str(err.value) and spec["url"] in str(err.value)
    assert not os.path.exists(os.path.join(str(tmp_path / "c1"), spec["mirror_path"]))

    port = closed_port()
    spec = table.resolve("runc", "1.9.0", "amd64", f"http://127.0.0.1:{port}")
    with pytest.raises(ArtifactError) as err:
        ControllerCache(str(tmp_path / "c2"), retries=0, timeout=2).ensure(spec)
    assert "runc 1.9.0 (amd64)" in str(err.value) and "controller" in str(err.value)
    assert "kubeforge_files_mirror" in str(err.value)


def test_directory_mirror_is_used_in_place(table, server, tmp_path):
    spec = table.resolve("etcd", "3.9.1", "amd64", server.root)
    cache = ControllerCache(server.root, markers=str(tmp_path / "cache"))
    result = cache.ensure(spec)
    assert result["path"] == spec["path"] and result["fetched"] is False
    assert server.total() == 0

    missing = table.resolve("etcd", "3.9.1", "amd64", str(tmp_path / "empty"))
    with pytest.raises(ArtifactError, match="missing from the mirror directory"):
        ControllerCache(str(tmp_path / "empty"), markers=str(tmp_path / "cache")).ensure(missing)

    with open(spec["path"], "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        cache.ensure(table.resolve("etcd", "3.9.1", "amd64", server.root))


# -- the offline bundle -------------------------------------------------------------------------

def test_bundle_layout_manifest_and_rerun(table, server, tmp_path):
    bundle = str(tmp_path / "bundle")
    cache = ControllerCache(bundle, markers=str(tmp_path / "cache"), collect=True)
    names = ["kube-apiserver", "etcd", "runc", "cni_plugins"]
    result = build_bundle(table, bundle, names, ["amd64"], ["1.99.0"], {}, {}, server.url, {}, cache)
    assert result["changed"] is True
    assert result["bundle"]["artifacts"] == 4 and result["bundle"]["fetched"] == 4
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    assert manifest["images"] == []
    by_component = {a["component"]: a for a in manifest["artifacts"]}
    assert by_component["etcd"] == {
        "component": "etcd", "version": "3.9.1", "arch": "amd64", "checksum_source": "pinned",
        "path": "github.com/etcd-io/etcd/releases/download/v3.9.1/etcd-v3.9.1-linux-amd64.tar.gz",
        "sha256": table.checksum("etcd", "3.9.1", "amd64")[0],
        "url": "https://github.com/etcd-io/etcd/releases/download/v3.9.1/etcd-v3.9.1-linux-amd64.tar.gz"}
    assert by_component["kube-apiserver"]["checksum_file"].endswith("kube-apiserver.sha256")
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 5  # four artifacts and the published .sha256
    assert os.path.isdir(os.path.join(bundle, "images"))

    requests = server.total()
    again = build_bundle(table, bundle, names, ["amd64"], ["1.99.0"], {}, {}, server.url, {},
                         ControllerCache(bundle, markers=str(tmp_path / "cache"), collect=True))
    assert again["changed"] is False and again["bundle"]["fetched"] == 0
    assert server.total() == requests

    # Without the verification records (another machine), files are re-hashed, not downloaded.
    shutil.rmtree(str(tmp_path / "cache"))
    third = build_bundle(table, bundle, names, ["amd64"], ["1.99.0"], {}, {}, server.url, {},
                         ControllerCache(bundle, markers=str(tmp_path / "cache"), collect=True))
    assert third["changed"] is False and server.total() == requests


def test_bundle_check_mode_writes_nothing(table, server, tmp_path):
    bundle = str(tmp_path / "bundle")
    result = build_bundle(table, bundle, ["etcd"], ["amd64"], ["1.99.0"], {}, {}, server.url, {},
                          ControllerCache(bundle, markers=str(tmp_path / "cache"), collect=True), check_mode=True)
    assert result["changed"] is True and result["bundle"]["fetched"] == 1
    assert not os.path.exists(bundle) and server.total() == 0


# -- the action plugin through ansible-playbook (localhost, temporary destinations) -------------

SAVE_RESULT = """
      register: test_outcome
    - name: Save the result for the test
      ansible.builtin.copy:
        content: "{{ test_outcome | to_json }}"
        dest: "{{ test_result_file }}"
        mode: "0644"
      changed_when: false
      check_mode: false
"""
PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Install artifacts
      kubeforge.cluster.artifacts:
        all_for_groups: true
        table: "{{ test_table }}"
        state_file: "{{ test_state_file }}"
""" + SAVE_RESULT


class Run:
    def __init__(self, rc, stdout, stderr, result):
        self.rc, self.stdout, self.stderr, self.result = rc, stdout, stderr, result

    @property
    def changed(self):
        found = re.search(r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)", self.stdout, re.M)
        assert found, self.stdout + self.stderr
        return int(found.group(1))

    def __str__(self):
        return f"rc={self.rc}\n{self.stdout[-4000:]}\n{self.stderr[-2000:]}"


def ansible_playbook(tmp_path, playbook, extra_vars, check=False, inventory=None):
    venv_bin = os.path.dirname(sys.executable)
    result_file = tmp_path / "result.json"
    if result_file.exists():
        result_file.unlink()
    extra_vars = dict(extra_vars, test_result_file=str(result_file))
    command = [os.path.join(venv_bin, "ansible-playbook"), "-i", inventory or str(tmp_path / "inventory.ini"),
               str(playbook), "-e", "@" + str(write_vars(tmp_path, extra_vars))]
    if check:
        command.append("--check")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
               PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return Run(run.returncode, run.stdout, run.stderr, result)


def write_vars(tmp_path, extra_vars):
    path = tmp_path / f"vars-{len(list(tmp_path.glob('vars-*.json')))}.json"
    path.write_text(json.dumps(extra_vars))
    return path


@pytest.fixture
def playbook_env(table, server, tmp_path):
    table_path = tmp_path / "versions.yml"
    table_path.write_text(yaml.safe_dump(table.data))
    (tmp_path / "inventory.ini").write_text(
        f"[etcd]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[kube_node]\nlocalhost\n[k8s_cluster:children]\nkube_node\n")
    playbook = tmp_path / "install.yml"
    playbook.write_text(PLAYBOOK)
    variables = {"test_table": str(table_path), "test_state_file": str(tmp_path / "state" / "artifacts.json"),
                 "kubeforge_host": {"arch": "amd64"}, "kubeforge_files_mirror": server.url,
                 "kubeforge_download_cache_dir": str(tmp_path / "cache")}
    return playbook, variables


def test_playbook_host_mode_installs_then_changes_nothing(playbook_env, server, tmp_path):
    playbook, variables = playbook_env
    run = ansible_playbook(tmp_path, playbook, variables)
    assert run.rc == 0, run
    result = run.result
    assert sorted(result["artifacts"]) == ["cni_plugins", "etcd", "runc"]  # groups etcd and k8s_cluster
    assert result["changed"] is True and len(result["downloaded"]) == 3
    assert (tmp_path / "root/usr/local/bin/etcd").exists()
    assert (tmp_path / "root/opt/cni/bin/bridge").exists()
    requests = server.total()

    run = ansible_playbook(tmp_path, playbook, variables)
    assert run.rc == 0, run
    assert run.changed == 0 and run.result["changed"] is False
    assert server.total() == requests


def test_playbook_controller_mode_pushes_from_cache(playbook_env, server, tmp_path):
    playbook, variables = playbook_env
    variables = dict(variables, kubeforge_download_mode="controller")
    run = ansible_playbook(tmp_path, playbook, variables, check=True)
    assert run.rc == 0, run
    assert run.result["changed"] is True
    assert sorted(run.result["needed"]) == ["cni_plugins", "etcd", "runc"]
    assert server.total() == 0 and not (tmp_path / "root").exists() and not (tmp_path / "cache").exists()

    run = ansible_playbook(tmp_path, playbook, variables)
    assert run.rc == 0, run
    result = run.result
    assert len(result["transferred"]) == 3 and result["downloaded"] == []
    assert all(p.startswith(str(tmp_path / "cache")) for p in result["transferred"])
    assert server.total() == 3
    assert (tmp_path / "root/usr/local/sbin/runc").exists()

    run = ansible_playbook(tmp_path, playbook, variables)
    assert run.rc == 0 and run.changed == 0, run
    assert run.result["transferred"] == [] and server.total() == 3


def test_offline_bundle_playbook_then_install_without_network(playbook_env, table, server, tmp_path):
    """playbooks/offline_bundle.yml for real (fake releases pinned through the override variable),
    then an install pointed at the bundle directory while the server is down."""
    playbook, variables = playbook_env
    bundle = tmp_path / "bundle"
    overrides = {name: {version: dict(per_arch) for version, per_arch in comp["checksums"].items()}
                 for name, comp in table.components.items() if comp["checksum"] == "pinned"}
    bundle_vars = {
        "kubeforge_bundle_dir": str(bundle), "kubeforge_files_mirror": server.url,
        "kubeforge_bundle_components": ["etcd", "runc", "cni_plugins"],
        "kubeforge_etcd_version": "3.9.1", "kubeforge_runc_version": "1.9.0", "kubeforge_cni_plugins_version": "1.9.0",
        "kubeforge_download_checksums": overrides, "kubeforge_download_cache_dir": str(tmp_path / "cache"),
        "kubeforge_bundle_images": False,  # no registry here; tests/unit/plugins/module_utils/test_registry.py
    }
    (tmp_path / "localhost.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    offline = os.path.join(ROOT, "playbooks", "offline_bundle.yml")
    run = ansible_playbook(tmp_path, offline, bundle_vars, inventory=str(tmp_path / "localhost.ini"))
    assert run.rc == 0, run
    out = " ".join(run.stdout.split())
    assert run.changed == 1 and "3 artifacts and 0 images in" in out and "(3 and 0 fetched now)" in out, out
    manifest = json.load(open(bundle / "manifest.json"))
    assert sorted((a["component"], a["version"]) for a in manifest["artifacts"]) == [
        ("cni_plugins", "1.9.0"), ("etcd", "3.9.1"), ("runc", "1.9.0")]
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, check=False).returncode == 0

    run = ansible_playbook(tmp_path, offline, bundle_vars, inventory=str(tmp_path / "localhost.ini"))
    assert run.rc == 0 and run.changed == 0, run
    assert server.total() == 3

    server.stop()
    run = ansible_playbook(tmp_path, playbook, dict(variables, kubeforge_files_mirror=str(bundle)))
    assert run.rc == 0, run
    result = run.result
    assert sorted(result["artifacts"]) == ["cni_plugins", "etcd", "runc"]
    assert all(p.startswith(str(bundle)) for p in result["transferred"])
    assert (tmp_path / "root/usr/local/bin/etcdctl").exists()


def test_real_table_resolves_in_check_mode_without_network(tmp_path):
    """The collection's own table through the action: every group's components resolve."""
    (tmp_path / "inventory.ini").write_text(
        f"[kube_control_plane]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[etcd]\nlocalhost\n[k8s_cluster:children]\nkube_control_plane\n")
    playbook = tmp_path / "check.yml"
    playbook.write_text("""
- hosts: all
  gather_facts: false
  tasks:
    - name: Resolve every artifact of the host's groups
      kubeforge.cluster.artifacts:
        all_for_groups: true
        state_file: "{{ test_state_file }}"
""" + SAVE_RESULT)
    run = ansible_playbook(tmp_path, playbook, {
        "test_state_file": str(tmp_path / "state.json"), "kubeforge_host": {"arch": "arm64"},
        "kubeforge_kubernetes_version": "1.35.8", "kubeforge_files_mirror": "http://127.0.0.1:9/"}, check=True)
    assert run.rc == 0, run
    result = run.result
    assert sorted(result["needed"]) == sorted([
        "etcd", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
        "kube-proxy", "containerd", "runc", "cni_plugins", "crictl"])
    with open(TABLE_PATH) as handle:
        defaults = yaml.safe_load(handle)["__download_kubernetes_defaults"]["1.35"]
    assert result["artifacts"]["etcd"]["version"] == defaults["etcd"]
    assert result["artifacts"]["containerd"]["url"].startswith("http://127.0.0.1:9/github.com/containerd/")
    assert result["artifacts"]["kubelet"]["version"] == "1.35.8"
    assert result["artifacts"]["kube-apiserver"]["checksum_source"] == "published"
    assert not os.path.exists(tmp_path / "state.json")
