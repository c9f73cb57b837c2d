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


def test_debian_archives_from_the_machines_own_sources(tmp_path):
    from testbed.common import debian_archives

    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    (tmp_path / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/node\nSuites: nodistro\nComponents: main\n")
    assert debian_archives({}, str(tmp_path)) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    assert debian_archives({"KUBEFORGE_DEBIAN_MIRROR": "http://x/debian"}, str(tmp_path))[0] == "http://x/debian"


def test_debian_archives_one_line_format_and_fallback(tmp_path):
    from testbed.common import DEFAULT_ARCHIVE, DEFAULT_SECURITY_ARCHIVE, debian_archives

    assert debian_archives({}, str(tmp_path)) == (DEFAULT_ARCHIVE, DEFAULT_SECURITY_ARCHIVE)
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://one.example/debian trixie main\n"
        "deb http://one.example/security trixie-security main\n")
    assert debian_archives({}, str(tmp_path)) == ("http://one.example/debian", "http://one.example/security")


def test_fixed_addresses_are_kept_and_never_shared(tmp_path, monkeypatch):
    import ipaddress
    import json

    from testbed import nodes

    monkeypatch.setenv("KUBEFORGE_TESTBED_HOME", str(tmp_path))
    monkeypatch.setattr(nodes.pm, "network_subnet",
                        lambda: (ipaddress.ip_network("10.88.0.0/16"), ipaddress.ip_address("10.88.0.1")))
    in_use = {"10.88.128.1"}
    monkeypatch.setattr(nodes, "in_use_on_network", lambda: set(in_use))
    first = nodes.assign_addresses(["a-cp1", "a-w1"], existing_containers=set())
    # the upper half of the network, past what another container holds
    assert first == {"a-cp1": "10.88.128.2", "a-w1": "10.88.128.3"}
    # a node that exists keeps its address; a new one gets the next free one
    again = nodes.assign_addresses(["b-cp1"], existing_containers={"a-cp1", "a-w1"})
    assert again["a-cp1"] == "10.88.128.2" and again["b-cp1"] == "10.88.128.4"
    # a node removed outside the test bed frees its address on the next assignment
    later = nodes.assign_addresses(["c-w1"], existing_containers={"a-cp1", "b-cp1"})
    assert "a-w1" not in later and later["c-w1"] == "10.88.128.3"
    nodes.release_addresses(["a-cp1"])
    assert "a-cp1" not in json.loads((tmp_path / "addresses.json").read_text())
