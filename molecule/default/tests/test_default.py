"""After preflight + os: what every node must look like (checked on the node itself)."""

import pytest

SYSCTLS_NAMESPACED = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
}
PACKAGES = ["conntrack", "iptables", "ipset", "socat", "ethtool", "python3-cryptography", "python3-yaml"]


def test_swap_is_off(host):
    lines = host.file("/proc/swaps").content_string.strip().splitlines()
    assert len(lines) == 1, lines  # the header only


@pytest.mark.parametrize("key, value", sorted(SYSCTLS_NAMESPACED.items()))
def test_sysctl_applied(host, key, value):
    assert host.sysctl(key) == int(value)


def test_sysctl_file_persisted(host):
    conf = host.file("/etc/sysctl.d/99-kubeforge.conf")
    assert conf.exists and conf.mode == 0o644
    text = conf.content_string
    for line in ("net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1",
                 "vm.overcommit_memory = 1", "kernel.panic = 10"):
        assert line in text


def test_bridge_netfilter_available(host):
    # br_netfilter is built into the test machine's kernel: the feature, not a module file, counts
    assert host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").exists
    assert host.file("/etc/modules-load.d/kubeforge.conf").content_string.splitlines()[-2:] == ["overlay", "br_netfilter"]


def test_overlay_available(host):
    assert "overlay" in host.file("/proc/filesystems").content_string


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed


def test_kubeforge_modules_can_import_their_libraries(host):
    cmd = host.run("python3 -c 'import cryptography, yaml; print(cryptography.__version__)'")
    assert cmd.rc == 0, cmd.stderr


def test_no_hosts_file_listing_nodes(host):
    # nothing whose size grows with the cluster: /etc/hosts names no other node
    me = host.check_output("hostname")
    others = {"mol-default-cp1", "mol-default-w1", "mol-default-w2"} - {me}
    hosts_file = host.file("/etc/hosts").content_string
    assert not [name for name in others if name in hosts_file]


def test_no_time_daemon_inside_a_container(host):
    # the clock belongs to the machine running the container: chrony must not be started here
    assert not host.service("chrony").is_running


# -- the offline install (prepare.yml, vars/offline.yml) ---------------------------------------------

def _mirror_vars():
    import os

    import yaml
    path = os.path.join(os.environ.get("KUBEFORGE_TESTBED_HOME", "/var/tmp/kubeforge-testbed"), "mirror", "vars.yml")
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["vars"]


def test_the_node_cannot_reach_the_mirror(host):
    from urllib.parse import urlsplit

    mirror = urlsplit(_mirror_vars()["testbed_mirror_url"])
    probe = host.run(f"python3 -c 'import socket; socket.create_connection((\"{mirror.hostname}\", {mirror.port}), 3)'")
    assert probe.rc != 0 and "Connection refused" in probe.stderr, probe.stderr


def test_every_image_was_imported_from_the_bundle_at_its_pinned_digest(host):
    import os

    import yaml
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with open(os.path.join(root, "images.yml"), encoding="utf-8") as handle:
        table = yaml.safe_load(handle)["images"]
    overrides = _mirror_vars()["testbed_kubeforge_images"]
    listed = host.check_output("ctr -n k8s.io images ls")
    held = {line.split()[0]: line.split()[2] for line in listed.splitlines()[1:] if len(line.split()) > 2}
    # bridge is the scenario's network: flannel's images are not imported
    wanted = {key: entry for key, entry in table.items() if not key.startswith("flannel")}
    for key, entry in sorted(wanted.items()):
        digest = overrides.get(key, {}).get("digest", entry["digest"])
        reference = f"{entry['name']}:{entry['tag']}"
        assert held.get(reference) == digest, (key, reference, held.get(reference))
        assert f"{entry['name']}@{digest}" in held, key
    assert not [name for name in held if name.startswith("ghcr.io/flannel-io/")]
    print(f"\n[default] {host.check_output('hostname')}: {len(wanted)} images from the offline bundle, "
          f"each at its pinned digest: {', '.join(sorted(wanted))}")
