# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Files written into new nodes, and the host configuration check."""

from testbed.hostsetup import CONTAINERS_CONF_TEXT, KERNEL_FLOORS, containers_conf_ok, ensure_kernel_limits
from testbed.nodes import node_files, resolv_conf_from


def test_resolv_conf_drops_loopback_servers():
    text = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nsearch example.org\noptions edns0 trust-ad\n"
    assert resolv_conf_from(text) == "nameserver 10.255.255.53\nsearch example.org\noptions edns0 trust-ad\n"


def test_resolv_conf_with_only_a_local_stub_is_unusable():
    assert resolv_conf_from("nameserver 127.0.0.53\noptions edns0\n") is None
    assert resolv_conf_from("") is None


def test_resolv_conf_keeps_at_most_three_servers():
    text = "".join(f"nameserver 192.0.2.{i}\n" for i in range(1, 6))
    assert resolv_conf_from(text).count("nameserver") == 3


def test_node_files():
    files = node_files("probe-cp1", "ssh-ed25519 AAAA test", "nameserver 192.0.2.1\n")
    assert files["/root/.ssh/authorized_keys"] == ("ssh-ed25519 AAAA test\n", 0o600)
    assert files["/etc/resolv.conf"] == ("nameserver 192.0.2.1\n", 0o644)
    hosts, mode = files["/etc/hosts"]
    assert mode == 0o644
    assert "127.0.0.1\tlocalhost" in hosts
    assert hosts.endswith("127.0.1.1\tprobe-cp1\n")
    assert sorted(files) == ["/etc/hosts", "/etc/resolv.conf", "/root/.ssh/authorized_keys"]


def test_containers_conf_check():
    assert containers_conf_ok(CONTAINERS_CONF_TEXT)
    assert not containers_conf_ok("")
    assert not containers_conf_ok('[engine]\nruntime = "crun"\n')
    assert not containers_conf_ok('[engine]\nruntime = "runc"\n')
    assert not containers_conf_ok("not toml [")


def test_kernel_limits_raised_to_the_floor_and_never_lowered(tmp_path, capsys):
    inotify = tmp_path / "fs" / "inotify"
    inotify.mkdir(parents=True)
    (inotify / "max_user_instances").write_text("128\n")
    (inotify / "max_user_watches").write_text("999999999\n")
    ensure_kernel_limits(str(tmp_path))
    assert (inotify / "max_user_instances").read_text() == str(KERNEL_FLOORS["fs/inotify/max_user_instances"])
    assert (inotify / "max_user_watches").read_text() == "999999999\n"
    assert "raised fs.inotify.max_user_instances from 128" in capsys.readouterr().err
