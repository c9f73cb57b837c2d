# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""containerd, runc and the CNI plugins on every node, checked on the node itself.

The versions expected are those the inventory asked for, recorded by mark.yml (after converge,
and again after upgrade.yml) in the scenario's ephemeral directory, together with the length of
the mirror's request log and containerd's main PID at that moment.
"""

import ipaddress
import json
import os
import re
import tomllib
import uuid

import pytest

testinfra_hosts = ["ansible://k8s_cluster"]

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.environ.get("KUBEFORGE_TESTBED_HOME") or "/var/tmp/kubeforge-testbed"
SOCKET = "/run/containerd/containerd.sock"
IMAGE = "docker.io/library/busybox:testbed"
CNI_RANGE = ipaddress.ip_network("10.77.0.0/24")
CNI_CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "kftest",
    "plugins": [{
        "type": "bridge", "bridge": "kftest0", "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": str(CNI_RANGE)}]]},
    }],
}


def mark():
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "mark.json")) as handle:
        return json.load(handle)


def mirror_url():
    with open(os.path.join(TESTBED, "mirror", "vars.yml")) as handle:
        text = handle.read()
    return json.loads(text[text.index("{"):])["all"]["vars"]["kubeforge_files_mirror"]


def address(host):
    return host.ansible.get_variables()["ansible_host"]


def mirror_log():
    with open(os.path.join(TESTBED, "mirror-server.log")) as handle:
        return handle.read().splitlines()


def requests_since(line_count):
    """Request lines logged after the first ``line_count`` lines, split into their fields."""
    # <time> <client> <METHOD> <path> <status> <bytes>; the server's own notes have other shapes
    return [fields for fields in (line.split() for line in mirror_log()[line_count:]) if len(fields) == 6]


@pytest.fixture(scope="module")
def wanted():
    return mark()["wanted"]


@pytest.fixture()
def cri_call(host):
    """tests/cri_call.py on the node; returns the command that runs it."""
    with open(os.path.join(HERE, "cri_call.py")) as handle:
        script = handle.read()
    host.run_expect([0], "mkdir -p /tmp/kftest && printf '%%s' %s > /tmp/kftest/cri_call.py", script)
    return "python3 /tmp/kftest/cri_call.py " + SOCKET


@pytest.fixture()
def busybox(host):
    """The busybox image imported into containerd's k8s.io namespace (from the mirror)."""
    url = mirror_url() + "/testbed/images/busybox-testbed.oci.tar"
    host.run_expect([0], "python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' %s /tmp/busybox.oci.tar", url)
    host.run_expect([0], "ctr -n k8s.io images import /tmp/busybox.oci.tar")
    return IMAGE


def test_state_file_records_the_wanted_versions(host, wanted):
    state = json.loads(host.file("/var/lib/kubeforge/artifacts.json").content_string)["artifacts"]
    assert {name: state[name]["version"] for name in ("containerd", "runc", "cni_plugins")} == wanted
    assert "crictl" not in state  # turned off in this scenario: no registry here carries it
    assert not host.file("/usr/local/bin/crictl").exists
    assert not host.file("/etc/crictl.yaml").exists


def test_binaries_in_place(host):
    for path in ("/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/ctr",
                 "/usr/local/sbin/runc", "/opt/cni/bin/bridge", "/opt/cni/bin/host-local", "/opt/cni/bin/loopback"):
        assert host.file(path).is_file and host.file(path).mode == 0o755, path


def test_service_running_with_its_limits(host):
    service = host.service("containerd")
    assert service.is_running and service.is_enabled
    shown = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show containerd -p KillMode -p Delegate -p OOMScoreAdjust -p TasksMax -p LimitNOFILE -p Type"
    ).splitlines())
    assert shown == {"KillMode": "process", "Delegate": "yes", "OOMScoreAdjust": "-999", "TasksMax": "infinity",
                     "LimitNOFILE": "1048576", "Type": "notify"}
    assert host.file("/etc/systemd/system/containerd.service").content_string.startswith("#\n# Ansible managed")


def test_config_matches_version_and_host(host, wanted):
    config = tomllib.loads(host.file("/etc/containerd/config.toml").content_string)
    cgroup_v2 = host.file("/sys/fs/cgroup/cgroup.controllers").exists
    if int(wanted["containerd"].split(".")[0]) >= 2:
        assert config["version"] == 3
        runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
        images = config["plugins"]["io.containerd.cri.v1.images"]
        sandbox = images["pinned_images"]["sandbox"]
        config_path = images["registry"]["config_path"]
    else:
        assert config["version"] == 2
        runtime = config["plugins"]["io.containerd.grpc.v1.cri"]
        sandbox = runtime["sandbox_image"]
        config_path = runtime["registry"]["config_path"]
    options = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert options["SystemdCgroup"] is cgroup_v2  # cgroup v1 here: cgroupfs
    assert options["BinaryName"] == "/usr/local/sbin/runc"
    assert sandbox == "registry.k8s.io/pause:testbed"
    assert config_path == "/etc/containerd/certs.d"


def test_containerd_answers_at_the_wanted_version(host, wanted):
    out = host.check_output("ctr --address %s version", SOCKET)
    server = out[out.index("Server:"):]
    # Debian's builds add a suffix (1.7.24~ds1, 2.1.9+unknown)
    assert re.search(r"Version:\s+v?%s([~+].*)?$" % re.escape(wanted["containerd"]), server, re.M), out


def test_cri_answers(host, wanted, cri_call):
    reply = json.loads(host.check_output(cri_call + " version"))
    assert reply["runtime_name"] == "containerd"
    assert reply["runtime_api_version"] == "v1"
    # release builds say v2.3.4, Debian's packages 1.7.24~ds1-...
    assert reply["runtime_version"].lstrip("v").startswith(wanted["containerd"]), reply


def test_a_container_runs(host, busybox):
    token = uuid.uuid4().hex
    name = "kftest-echo-" + token[:8]
    out = host.check_output("ctr -n k8s.io run --rm %s %s echo %s", busybox, name, token)
    assert out.strip() == token


def test_a_container_gets_an_address_from_the_cni_range(host, busybox):
    conflist = "/etc/cni/net.d/10-kftest.conflist"
    host.run_expect([0], "mkdir -p /etc/cni/net.d && printf '%%s' %s > %s", json.dumps(CNI_CONFLIST), conflist)
    try:
        name = "kftest-cni-" + uuid.uuid4().hex[:8]
        out = host.check_output("ctr -n k8s.io run --rm --cni %s %s ip -4 -o addr show eth0", busybox, name)
    finally:
        host.run("rm -f %s", conflist)
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert found, out
    assert ipaddress.ip_address(found.group(1)) in CNI_RANGE


def test_registry_pulls_go_through_the_configured_mirror(host, cri_call):
    hosts_toml = tomllib.loads(host.file("/etc/containerd/certs.d/registry.test/hosts.toml").content_string)
    assert hosts_toml["host"][mirror_url()]["capabilities"] == ["pull", "resolve"]
    start = len(mirror_log())
    repository = "kftest/probe-" + uuid.uuid4().hex[:8]
    # The CRI pull fails (the mirror is no registry), but it must have asked the mirror.
    host.check_output(cri_call + " pull registry.test/%s:1", repository)
    asked = [fields for fields in requests_since(start)
             if fields[1] == address(host) and fields[3] == "/v2/%s/manifests/1?ns=registry.test" % repository]
    assert asked, "no request for registry.test/%s reached the mirror" % repository


def test_no_release_downloaded_since_the_mark(host):
    ours = [fields for fields in requests_since(mark()["log_lines"])
            if fields[1] == address(host) and fields[2] == "GET" and not fields[3].startswith(("/testbed/", "/v2/"))]
    assert ours == []


def test_not_restarted_since_the_mark(host):
    now = host.check_output("systemctl show --property MainPID --value containerd")
    assert now == str(mark()["main_pid"][host.backend.get_hostname()])
