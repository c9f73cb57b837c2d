# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The host-side artifact engine against a real HTTP server on 127.0.0.1 serving fake releases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))

from support.release_server import (  # noqa: E402
    ETCD_URL,
    ReleaseServer,
    build_release,
    closed_port,
    publish,
)

from ansible_collections.kubeforge.cluster.plugins.module_utils.artifacts import (  # noqa: E402
    ArtifactError,
    Installer,
    TEMP_PREFIX,
    sha256_file,
)


@pytest.fixture
def server(tmp_path):
    srv = ReleaseServer(tmp_path / "srv").start()
    yield srv
    srv.stop()


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "root"


@pytest.fixture
def table(server, dest):
    return build_release(server.root, dest)


@pytest.fixture
def state_file(tmp_path):
    return str(tmp_path / "state" / "artifacts.json")


def specs(table, server, names, versions=None, overrides=None, arch="amd64"):
    return table.resolve_many(names, arch, versions or {}, {}, server.url, overrides or {})


def run(table, server, state_file, names, check_mode=False, **kwargs):
    installer = Installer(specs(table, server, names, kwargs.pop("versions", None), kwargs.pop("overrides", None)),
                          state_file=state_file, check_mode=check_mode, timeout=5, retries=0)
    return installer.run(), installer


def leftovers(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files if f.startswith(TEMP_PREFIX)]
    return found


def test_fresh_install_then_rerun_downloads_nothing(table, server, dest, state_file):
    result, _ignored = run(table, server, state_file, ["etcd", "runc", "cni_plugins"])
    assert result["changed"] is True
    assert server.total() == 3
    etcd = dest / "usr/local/bin/etcd"
    assert etcd.read_bytes() == b"#!/bin/sh\necho etcd 3.9.1\n"
    assert oct(etcd.stat().st_mode & 0o7777) == "0o755"
    assert (dest / "usr/local/sbin/runc").exists()
    assert sorted(os.listdir(dest / "opt/cni/bin")) == ["bridge", "host-local", "loopback"]
    assert result["artifacts"]["etcd"]["action"] == "install"
    assert result["artifacts"]["etcd"]["files"] == sorted(str(dest / "usr/local/bin" / n)
                                                          for n in ("etcd", "etcdctl", "etcdutl"))
    state = json.loads(open(state_file).read())
    entry = state["artifacts"]["etcd"]
    assert entry["version"] == "3.9.1"
    assert entry["sha256"] == table.checksum("etcd", "3.9.1", "amd64")[0]
    assert entry["files"][str(etcd)]["sha256"] == sha256_file(str(etcd))
    assert set(result["installed_files"]) == {p for e in state["artifacts"].values() for p in e["files"]}
    assert leftovers(dest) == []

    again, _ignored = run(table, server, state_file, ["etcd", "runc", "cni_plugins"])
    assert again["changed"] is False
    assert again["downloaded"] == []
    assert server.total() == 3, "a second run must not download anything"
    assert all(a["action"] == "none" for a in again["artifacts"].values())


def test_checksum_mismatch_refuses_and_removes_the_file(table, server, dest, state_file):
    wrong = "0" * 64
    overrides = {"etcd": {"3.9.1": {"amd64": wrong}}}
    with pytest.raises(ArtifactError) as err:
        run(table, server, state_file, ["etcd"], overrides=overrides)
    message = str(err.value)
    actual = table.checksum("etcd", "3.9.1", "amd64")[0]
    assert "sha256 mismatch" in message
    assert wrong in message and actual in message
    assert server.url + "/github.com/etcd-io/etcd/releases/download/v3.9.1/etcd-v3.9.1-linux-amd64.tar.gz" in message
    assert not (dest / "usr/local/bin/etcd").exists()
    assert leftovers(dest) == []
    assert not os.path.exists(state_file)


def test_one_failing_artifact_installs_nothing(table, server, dest, state_file):
    overrides = {"runc": {"1.9.0": {"amd64": "f" * 64}}}
    with pytest.raises(ArtifactError):
        run(table, server, state_file, ["etcd", "cni_plugins", "runc"], overrides=overrides)
    assert not (dest / "usr/local/bin/etcd").exists()
    assert not (dest / "opt/cni/bin/bridge").exists()
    assert leftovers(dest) == []
    assert not os.path.exists(state_file)


def test_unreachable_source_names_artifact_url_and_variable(table, dest, state_file):
    port = closed_port()
    spec = table.resolve("etcd", "3.9.1", "amd64", f"http://127.0.0.1:{port}")
    installer = Installer([spec], state_file=state_file, timeout=2, retries=0)
    with pytest.raises(ArtifactError) as err:
        installer.run()
    message = str(err.value)
    assert "etcd 3.9.1 (amd64)" in message
    assert spec["url"] in message
    assert "kubeforge_files_mirror" in message
    assert "refused" in message.lower()
    assert leftovers(dest) == []


def test_http_error_is_reported_with_status(table, server, state_file):
    spec = table.resolve("runc", "1.9.0", "amd64", server.url)
    server.fail["/" + spec["url"].split("/", 3)[3]] = 404
    with pytest.raises(ArtifactError, match=r"HTTP 404"):
        Installer([spec], state_file=state_file, timeout=2, retries=0).run()


def test_transient_server_error_is_retried(table, server, state_file, dest):
    spec = table.resolve("runc", "1.9.0", "amd64", server.url)
    path = "/" + spec["url"].split("/", 3)[3]
    server.fail[path] = 503

    def heal():
        # heal once a second request came: the first one certainly failed, however slow the machine
        deadline = time.monotonic() + 30
        while server.requests.get(path, 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.fail.pop(path)

    import threading
    threading.Thread(target=heal).start()
    result = Installer([spec], state_file=state_file, timeout=2, retries=3).run()
    assert result["changed"] is True
    assert server.requests[path] >= 2
    assert (dest / "usr/local/sbin/runc").exists()


def test_version_change_replaces_binary_atomically(tmp_path, server, dest, state_file):
    """A program running from the old binary keeps running; the new one has a new inode."""
    sleep = shutil.which("sleep")
    with open(os.path.realpath(sleep), "rb") as handle:
        real = handle.read()
    # Same program, different bytes: trailing data after an ELF image does not change what it runs.
    payload = {"3.9.1": {"etcd": real}, "3.9.2": {"etcd": real + b"\0kubeforge-test-v2"}}
    table = build_release(server.root, dest, etcd_payload=payload)
    first, _ignored = run(table, server, state_file, ["etcd"])
    binary = dest / "usr/local/bin/etcd"
    old_inode = binary.stat().st_ino
    proc = subprocess.Popen([str(binary), "30"])
    try:
        time.sleep(0.2)
        second, _ignored = run(table, server, state_file, ["etcd"], versions={"etcd": "3.9.2"})
        assert second["artifacts"]["etcd"]["action"] == "upgrade"
        assert second["artifacts"]["etcd"]["previous_version"] == "3.9.1"
        assert binary.stat().st_ino != old_inode
        assert binary.read_bytes().endswith(b"kubeforge-test-v2")
        assert proc.poll() is None, "the running program must survive the replacement"
        assert os.readlink(f"/proc/{proc.pid}/exe").endswith("(deleted)")
        assert "etcd: 3.9.1" in second["diff"]["before"]
        assert "etcd: 3.9.2" in second["diff"]["after"]
    finally:
        proc.kill()
        proc.wait()
    assert first["artifacts"]["etcd"]["version"] == "3.9.1"
    assert json.loads(open(state_file).read())["artifacts"]["etcd"]["version"] == "3.9.2"


def test_check_mode_writes_nothing(table, server, dest, state_file):
    result, _ignored = run(table, server, state_file, ["etcd", "runc", "cni_plugins"], check_mode=True)
    assert result["changed"] is True
    assert sorted(result["needed"]) == ["cni_plugins", "etcd", "runc"]
    assert result["artifacts"]["etcd"]["files"] == sorted(str(dest / "usr/local/bin" / n)
                                                          for n in ("etcd", "etcdctl", "etcdutl"))
    assert result["artifacts"]["cni_plugins"]["files"] == [str(dest / "opt/cni/bin/*")]
    assert server.total() == 0
    assert not dest.exists()
    assert not os.path.exists(state_file)

    run(table, server, state_file, ["etcd"])
    before = open(state_file).read()
    mtime = os.stat(state_file).st_mtime_ns
    planned, _ignored = run(table, server, state_file, ["etcd"], check_mode=True, versions={"etcd": "3.9.2"})
    assert planned["artifacts"]["etcd"]["action"] == "upgrade"
    assert planned["needed"] == ["etcd"]
    assert (dest / "usr/local/bin/etcd").read_bytes() == b"#!/bin/sh\necho etcd 3.9.1\n"
    assert open(state_file).read() == before and os.stat(state_file).st_mtime_ns == mtime
    assert server.total() == 1


def test_changed_file_is_repaired(table, server, dest, state_file):
    run(table, server, state_file, ["etcd"])
    (dest / "usr/local/bin/etcdctl").write_bytes(b"tampered\n")
    result, _ignored = run(table, server, state_file, ["etcd"])
    assert result["artifacts"]["etcd"]["action"] == "repair"
    assert (dest / "usr/local/bin/etcdctl").read_bytes() == b"#!/bin/sh\necho etcdctl 3.9.1\n"
    assert server.total() == 2
    os.unlink(dest / "usr/local/bin/etcdutl")
    result, _ignored = run(table, server, state_file, ["etcd"])
    assert result["artifacts"]["etcd"]["action"] == "repair"
    assert (dest / "usr/local/bin/etcdutl").exists()


def test_mode_drift_is_fixed_without_download(table, server, dest, state_file):
    run(table, server, state_file, ["runc"])
    runc = dest / "usr/local/sbin/runc"
    os.chmod(runc, 0o700)
    result, _ignored = run(table, server, state_file, ["runc"])
    assert result["changed"] is True and result["artifacts"]["runc"]["action"] == "mode"
    assert oct(runc.stat().st_mode & 0o7777) == "0o755"
    assert server.total() == 1


def test_glob_members_and_removal_of_files_the_new_version_lacks(table, server, dest, state_file):
    run(table, server, state_file, ["cni_plugins"])
    assert (dest / "opt/cni/bin/loopback").exists()
    assert not (dest / "opt/cni/bin/LICENSE").exists()
    result, _ignored = run(table, server, state_file, ["cni_plugins"], versions={"cni_plugins": "1.9.1"})
    assert result["artifacts"]["cni_plugins"]["removed"] == [str(dest / "opt/cni/bin/loopback")]
    assert sorted(os.listdir(dest / "opt/cni/bin")) == ["bridge", "host-local"]
    state = json.loads(open(state_file).read())
    assert sorted(state["artifacts"]["cni_plugins"]["files"]) == [str(dest / "opt/cni/bin/bridge"),
                                                                  str(dest / "opt/cni/bin/host-local")]


def test_published_checksum_is_fetched_and_enforced(table, server, dest, state_file):
    result, _ignored = run(table, server, state_file, ["kube-apiserver"])
    assert result["artifacts"]["kube-apiserver"]["checksum_source"] == "published"
    assert (dest / "usr/local/bin/kube-apiserver").exists()
    assert server.total() == 2  # the .sha256 file and the binary
    again, _ignored = run(table, server, state_file, ["kube-apiserver"])
    assert again["changed"] is False and server.total() == 2

    spec = table.resolve("kube-apiserver", "1.99.0", "amd64", server.url)
    publish(server.root, spec["upstream_url"] + ".sha256", b"1" * 64 + b"  kube-apiserver\n")
    other_state = state_file + ".2"
    with pytest.raises(ArtifactError, match="sha256 mismatch") as err:
        Installer([spec], state_file=other_state, timeout=2, retries=0).run()
    assert "1" * 64 in str(err.value)


def test_pushed_copy_is_verified_and_installed(table, server, dest, state_file, tmp_path):
    spec = table.resolve("etcd", "3.9.1", "amd64", "")
    pushed = tmp_path / "pushed.tar.gz"
    served = os.path.join(server.root, spec["mirror_path"])
    shutil.copyfile(served, pushed)
    spec["src"] = str(pushed)
    result = Installer([spec], state_file=state_file).run()
    assert result["changed"] is True and result["downloaded"] == []
    assert (dest / "usr/local/bin/etcd").exists()
    assert pushed.exists(), "the pushed copy belongs to the caller"

    with open(pushed, "ab") as handle:
        handle.write(b"corrupt")
    spec2 = dict(spec, version="3.9.1")
    with pytest.raises(ArtifactError, match="pushed from the controller"):
        Installer([spec2], state_file=state_file + ".other").run()


def test_unreadable_state_file_means_reinstall_with_warning(table, server, dest, state_file):
    run(table, server, state_file, ["runc"])
    with open(state_file, "w") as handle:
        handle.write("{not json")
    result, _ignored = run(table, server, state_file, ["runc"])
    assert result["artifacts"]["runc"]["action"] == "install"
    assert any("ignored unreadable" in w for w in result["warnings"])
    assert json.loads(open(state_file).read())["artifacts"]["runc"]["version"] == "1.9.0"


def test_archive_without_expected_member_is_refused(server, dest, state_file):
    table = build_release(server.root, dest)
    spec = table.resolve("etcd", "3.9.1", "amd64", server.url)
    spec["members"][0]["src"] = "etcd-v3.9.1-linux-amd64/missing"
    with pytest.raises(ArtifactError, match="has no regular file"):
        Installer([spec], state_file=state_file, retries=0).run()
    assert not (dest / "usr/local/bin/etcdctl").exists()
    assert leftovers(dest) == []


def test_etcd_url_template_matches_mirror_layout(table, server):
    spec = table.resolve("etcd", "3.9.1", "amd64", server.url + "/")
    assert spec["upstream_url"] == ETCD_URL.format(version="3.9.1", arch="amd64")
    assert spec["url"] == server.url + "/github.com/etcd-io/etcd/releases/download/v3.9.1/etcd-v3.9.1-linux-amd64.tar.gz"
