"""Kernel features, sysctls and swap against a fake /proc and /etc tree."""

import os

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import kernel_settings as ks


def write(root, path, text):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as handle:
        handle.write(text)


def read(root, path):
    with open(os.path.join(root, path.lstrip("/")), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path)
    write(root, "/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n\text4\n")
    write(root, "/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
    write(root, "/proc/sys/net/ipv4/ip_forward", "0\n")
    write(root, "/proc/sys/vm/overcommit_memory", "0\n")
    write(root, "/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
    write(root, "/etc/fstab", "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n")
    return root


def params(**extra):
    base = {"modules": ["overlay", "br_netfilter"], "modules_file": "/etc/modules-load.d/kubeforge.conf",
            "sysctl": {"net.ipv4.ip_forward": 1, "vm.overcommit_memory": 1},
            "sysctl_file": "/etc/sysctl.d/99-kubeforge.conf", "swap_off": True, "fstab": "/etc/fstab",
            "header": ["test"]}
    base.update(extra)
    return base


def apply(plan, root):
    for path, (_before, after) in plan.files.items():
        write(root, path, after)


def test_built_in_features_count(root):
    plan = ks.Plan(params(), container=False, root=root)
    plan.modules(load=lambda name: pytest.fail(f"{name} is present; nothing should be loaded"))
    assert plan.result["modules"] == {"overlay": "present", "br_netfilter": "present"}


def test_missing_feature_is_loaded_and_failure_is_an_error(root):
    plan = ks.Plan(params(modules=["ip_vs"]), container=False, root=root)
    with pytest.raises(ks.KernelError, match="kernel feature ip_vs is missing and modprobe ip_vs failed: FATAL"):
        plan.modules(load=lambda name: (1, "", "FATAL: Module ip_vs not found"))


def test_container_cannot_load_modules(root):
    plan = ks.Plan(params(modules=["ip_vs"]), container=True, root=root)
    with pytest.raises(ks.KernelError, match="a container cannot load modules"):
        plan.modules(load=None)


def test_sysctls_applied_then_unchanged(root):
    plan = ks.Plan(params(), container=False, root=root)
    plan.modules(load=None)
    plan.sysctls(apply=True)
    plan.swap(swapoff=None)
    apply(plan, root)
    assert plan.changed
    assert read(root, "/proc/sys/net/ipv4/ip_forward") == "1"
    assert read(root, "/etc/sysctl.d/99-kubeforge.conf") == "# test\nnet.ipv4.ip_forward = 1\nvm.overcommit_memory = 1\n"
    assert "# disabled by kubeforge" in read(root, "/etc/fstab")
    again = ks.Plan(params(), container=False, root=root)
    again.modules(load=None)
    again.sysctls(apply=True)
    again.swap(swapoff=None)
    assert not again.changed
    assert again.files == {}


def test_check_mode_changes_nothing(root):
    plan = ks.Plan(params(), container=False, root=root)
    plan.modules(load=None)
    plan.sysctls(apply=False)
    assert plan.changed
    assert plan.result["sysctl"]["net.ipv4.ip_forward"]["state"] == "would set"
    assert read(root, "/proc/sys/net/ipv4/ip_forward") == "0\n"


def test_container_leaves_host_wide_sysctls_and_reports_them(root):
    plan = ks.Plan(params(), container=True, root=root)
    plan.sysctls(apply=True)
    assert plan.result["sysctl"]["vm.overcommit_memory"]["state"] == "skipped"
    assert read(root, "/proc/sys/vm/overcommit_memory") == "0\n"
    assert any(n.startswith("sysctl vm.overcommit_memory: host-wide") for n in plan.notes)
    assert plan.result["sysctl"]["net.ipv4.ip_forward"]["state"] == "applied"


def test_swap_is_turned_off_outside_containers_only(root):
    write(root, "/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n")
    calls = []
    plan = ks.Plan(params(), container=False, root=root)
    plan.swap(swapoff=lambda: calls.append("swapoff") or (0, "", ""))
    assert calls == ["swapoff"] and plan.changed
    in_container = ks.Plan(params(), container=True, root=root)
    in_container.swap(swapoff=lambda: pytest.fail("a container must not turn the host's swap off"))
    assert any("swap is active on the machine running this container" in n for n in in_container.notes)


def test_fstab_only_swap_lines_commented():
    text = "# comment with swap\nUUID=1 / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\n"
    new, changed = ks.fstab_without_swap(text)
    assert changed
    assert new.splitlines()[:2] == text.splitlines()[:2]
    assert new.splitlines()[2].startswith("# disabled by kubeforge")
    assert ks.fstab_without_swap(new) == (new, False)
