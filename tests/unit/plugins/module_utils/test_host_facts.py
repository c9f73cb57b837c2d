"""Host facts and host checks, against fake /proc and /etc trees and real processes."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import host_facts as hf


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


@pytest.mark.parametrize("release, family, major, supported", [
    ('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', "Debian", "12", True),
    ('ID=debian\nVERSION_ID="13"\n', "Debian", "13", True),
    ('ID=debian\nVERSION_ID="11"\n', "Debian", "11", False),
    ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n', "Debian", "24.04", True),
    ('ID=ubuntu\nVERSION_ID="20.04"\n', "Debian", "20.04", False),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n', "RedHat", "9", True),
    ('ID="almalinux"\nVERSION_ID="10.0"\n', "RedHat", "10", True),
    ('ID=arch\n', None, "", False),
])
def test_os_release(tmp_path, release, family, major, supported):
    write(str(tmp_path / "os-release"), release)
    info = hf.os_info(hf.read_os_release(str(tmp_path / "os-release")))
    assert info["os_family"] == family
    assert info["os_major"] == major
    assert (hf.os_support_error(info) is None) is supported


def test_unsupported_os_names_what_is_supported():
    info = hf.os_info({"ID": "debian", "VERSION_ID": "10", "PRETTY_NAME": "Debian 10"})
    assert hf.os_support_error(info) == "Debian 10 is not a supported release of debian (supported: 12, 13)"


def test_container_detection(tmp_path):
    assert hf.detect_container(str(tmp_path)) == ""
    write(str(tmp_path / "run/.containerenv"), "")
    assert hf.detect_container(str(tmp_path)) == "podman"


def test_cgroup_version(tmp_path):
    assert hf.cgroup_version(str(tmp_path)) == 1
    write(str(tmp_path / "sys/fs/cgroup/cgroup.controllers"), "cpu memory\n")
    assert hf.cgroup_version(str(tmp_path)) == 2


def test_installed_artifacts(tmp_path):
    state = tmp_path / "artifacts.json"
    assert hf.installed_artifacts(str(state)) == {}
    state.write_text(json.dumps({"format": 1, "artifacts": {
        "containerd": {"version": "2.1.9", "files": {}}, "etcd": {"version": "3.5.30"}, "broken": "x"}}))
    assert hf.installed_artifacts(str(state)) == {"containerd": "2.1.9", "etcd": "3.5.30"}
    state.write_text("{not json")
    assert hf.installed_artifacts(str(state)) == {}


def test_stale_program_is_a_replaced_running_binary(tmp_path):
    """A real process whose executable is replaced on disk, the way an upgrade replaces it."""
    binary = tmp_path / "etcd"
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "30"])
    try:
        assert "etcd" not in hf.stale_programs()
        replacement = tmp_path / "etcd.new"
        shutil.copy("/bin/sleep", replacement)
        os.replace(replacement, binary)  # atomic rename, as the download engine installs
        assert "etcd" in hf.stale_programs()
        assert "sleep" not in hf.stale_programs(programs=("etcd",))
    finally:
        proc.kill()
        proc.wait()


def test_port_held_by_another_program_is_a_conflict():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        me = open("/proc/self/comm", encoding="utf-8").read().strip()
        problems = hf.port_conflicts([{"port": port, "purpose": "kube-apiserver", "owners": ["kube-apiserver"]}])
        assert problems == [f"port {port} (kube-apiserver) is in use by {me}"]
        # held by its expected owner (a re-run on a working node): no conflict
        assert hf.port_conflicts([{"port": port, "purpose": "x", "owners": [me]}]) == []
    assert hf.port_conflicts([{"port": port, "purpose": "x", "owners": []}]) == []


def test_evaluate_reports_errors_and_warnings():
    facts = {"os_id": "debian", "os_major": "11", "os_pretty": "Debian 11", "arch": "s390x", "machine": "s390x",
             "systemd": False, "memory_mb": 512, "cpus": 1, "container": "",
             "time_sync": {"service": None, "synchronized": False}, "cgroup_version": 1}
    errors, warnings = hf.evaluate(facts, [], min_memory_mb=2048, min_cpus=2)
    assert len(errors) == 3
    assert any("not a supported release" in e for e in errors)
    assert any("architecture s390x" in e for e in errors)
    assert any("systemd is not the init system" in e for e in errors)
    assert any("512 MiB" in w for w in warnings)
    assert any("1 CPUs" in w for w in warnings)
    assert any("clock is not synchronized" in w for w in warnings)
    assert any("cgroup v1" in w for w in warnings)


def test_a_kernel_module_counts_when_loaded_built_in_or_installed(tmp_path):
    (tmp_path / "sys" / "module" / "vxlan").mkdir(parents=True)
    modules = tmp_path / "lib" / "modules" / "6.1.0-test"
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text("kernel/net/wireguard/wireguard.ko.zst: kernel/net/ipv4/udp_tunnel.ko.zst\n")
    (modules / "modules.builtin").write_text("kernel/net/ipv4/ip_gre.ko\n")
    found = hf.kernel_modules(["vxlan", "wireguard", "ip_gre", "geneve"], str(tmp_path), "6.1.0-test")
    assert found == {"vxlan": True, "wireguard": True, "ip_gre": True, "geneve": False}
    # no /lib/modules at all (a container): only what /sys/module shows
    assert hf.kernel_modules(["vxlan", "geneve"], str(tmp_path), "other") == {"vxlan": True, "geneve": False}


def test_evaluate_names_a_missing_kernel_module_and_what_needs_it():
    facts = {"os_id": "debian", "os_major": "12", "os_pretty": "Debian 12", "arch": "amd64", "machine": "x86_64",
             "systemd": True, "memory_mb": 4096, "cpus": 2, "container": "", "kernel": "6.1.0-test",
             "time_sync": {"service": "chronyd", "synchronized": True}, "cgroup_version": 2,
             "kernel_modules": {"vxlan": False}}
    needs = {"vxlan": "kubeforge_network_plugin flannel (network_flannel_backend vxlan)"}
    errors, _warnings = hf.evaluate(facts, [], min_memory_mb=2048, min_cpus=2, kernel_needs=needs)
    assert errors == ["kubeforge_network_plugin flannel (network_flannel_backend vxlan) needs the kernel module "
                      "vxlan, which kernel 6.1.0-test neither has loaded nor lists in /lib/modules/6.1.0-test "
                      "(install it, or choose another backend)"]
    facts["kernel_modules"] = {"vxlan": True}
    assert hf.evaluate(facts, [], min_memory_mb=2048, min_cpus=2, kernel_needs=needs)[0] == []


def test_gather_on_this_machine():
    facts = hf.gather(lambda argv: (0, "inactive\n" * len(argv), ""))
    assert facts["arch"] in ("amd64", "arm64")
    assert facts["memory_mb"] > 0 and facts["cpus"] >= 1
    assert facts["cgroup_version"] in (1, 2)
    assert facts["time_sync"]["service"] is None
    assert isinstance(facts["stale_programs"], list)
    assert sys.version_info >= (3, 9)


@pytest.mark.parametrize("cap_eff, expected", [("000001ffffffffff", True), ("000001fffeffffff", False),
                                               ("0000000000000000", False)])
def test_capability_from_the_effective_set(tmp_path, cap_eff, expected):
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\n")
    assert hf.has_capability(hf.CAP_SYS_RESOURCE, str(status)) is expected


def test_capability_unknown_counts_as_held(tmp_path):
    # no status file (or no CapEff line): nothing is restricted on a guess
    assert hf.has_capability(hf.CAP_SYS_RESOURCE, str(tmp_path / "missing")) is True


def test_evaluate_warns_without_cap_sys_resource():
    facts = {"os_id": "debian", "os_major": "12", "os_pretty": "Debian 12", "arch": "amd64", "machine": "x86_64",
             "systemd": True, "memory_mb": 4096, "cpus": 2, "container": "podman",
             "time_sync": {"service": None, "synchronized": None}, "cgroup_version": 2, "cap_sys_resource": False}
    errors, warnings = hf.evaluate(facts, [], min_memory_mb=2048, min_cpus=2)
    assert not errors
    assert warnings == ["no CAP_SYS_RESOURCE (a container with limited capabilities): containerd keeps pods' OOM "
                        "scores at or above its own (restrict_oom_score_adj)"]


def test_python_libraries_says_what_a_first_install_still_lacks():
    found = hf.python_libraries(("json", "kubeforge_no_such_library"))
    assert found == {"json": True, "kubeforge_no_such_library": False}


def test_the_running_pod_network_is_read_from_the_cni_configurations(tmp_path):
    assert hf.cni_configs(str(tmp_path)) == []
    directory = tmp_path / "etc" / "cni" / "net.d"
    directory.mkdir(parents=True)
    for name in ("10-kubeforge-bridge.conflist", "README", "99-loopback.conf"):
        (directory / name).write_text("{}")
    configs = hf.cni_configs(str(tmp_path))
    assert configs == ["10-kubeforge-bridge.conflist", "99-loopback.conf"]
    assert hf.network_in_use(configs) == "bridge"
    assert hf.network_in_use(["10-flannel.conflist", "99-loopback.conf"]) == "flannel"
    assert hf.network_in_use(["10-calico.conflist"]) == "other"
    assert hf.network_in_use([]) == ""


@pytest.mark.parametrize("in_use, wanted, switch", [
    ("bridge", "bridge", False), ("bridge", "none", True), ("bridge", "flannel", True),
    ("flannel", "flannel", False), ("flannel", "bridge", True), ("flannel", "none", True),
    ("other", "bridge", True), ("other", "flannel", True), ("other", "none", False),
    ("", "bridge", False), ("", "flannel", False), ("", "none", False),
])
def test_only_a_change_of_a_running_network_is_a_switch(in_use, wanted, switch):
    assert bool(hf.network_switch_error(in_use, wanted)) is switch
