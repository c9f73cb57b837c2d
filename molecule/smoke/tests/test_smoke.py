# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Every Kubernetes program built by the test bed, working on real nodes.

converge.yml installed the operating system settings, the cluster PKI, containerd, a TLS etcd 3.6
and the Kubernetes binaries (through the collection's download code, from the local mirror).
These tests start the programs by hand (transient systemd units, flags written out here) with
the PKI's files, in the order a cluster needs them, and check what each must do:

- kube-apiserver answers /readyz over TLS to kubectl with admin.conf; kube-controller-manager and
  kube-scheduler take their leases;
- kubelet registers each node (containerd and the pause image from the mirror); a pod of the test
  image runs and kubectl reads its log back (API server -> kubelet over verified TLS);
- kube-proxy programs a ClusterIP Service that a pod on the other node reaches.
"""

import json
import os
import shlex
import subprocess
import time
import uuid

import pytest
import yaml

STATE = os.environ.get("KUBEFORGE_TESTBED_HOME") or "/var/tmp/kubeforge-testbed"
EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
PKI = "/etc/kubernetes/pki"
SERVICE_CIDR = "10.233.0.0/18"
POD_CIDR = "10.233.64.0/18"
POD_RANGES = ("10.233.64.0/24", "10.233.65.0/24")
DNS_IP = "10.233.0.10"
TEST_IMAGE = "docker.io/library/busybox:testbed"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"


def mirror_vars():
    with open(os.path.join(STATE, "mirror", "vars.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["vars"]


def nodes():
    """[(name, address, is control plane)] from the inventory the scenario's create step wrote."""
    with open(os.path.join(EPHEMERAL, "testbed-inventory.yml"), encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle)
    control = set((inventory["all"]["children"]["kube_control_plane"].get("hosts") or {}))
    return [(name, spec["ansible_host"], name in control) for name, spec in inventory["all"]["hosts"].items()]


def sh(node, script, check=True, timeout=120):
    proc = subprocess.run(["podman", "exec", "-i", node, "bash", "-euo", "pipefail", "-s"], input=script,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{node}: exit {proc.returncode}\n--- script\n{script}\n--- stdout\n{proc.stdout}"
                             f"\n--- stderr\n{proc.stderr}")
    return proc


def wait_for(what, probe, timeout=180, interval=2):
    """Call ``probe`` until it returns something true; fail naming ``what`` and the last result."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last and getattr(last, "returncode", 0) == 0:
            return last
        time.sleep(interval)
    detail = f"{last.stdout}\n{last.stderr}" if hasattr(last, "stdout") else repr(last)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}; last answer:\n{detail}")


def start_unit(node, name, argv):
    """A transient systemd unit (restarted on failure), unless one of that name is active already."""
    command = " ".join(shlex.quote(arg) for arg in argv)
    sh(node, f"systemctl is-active --quiet {name} || "
             f"systemd-run --unit={name} --property=Restart=on-failure --property=RestartSec=2 {command}")


def flags(mapping):
    return [f"--{key}={value}" for key, value in mapping.items()]


def journal(node, unit, lines=40):
    return sh(node, f"journalctl -u {unit} --no-pager -n {lines} || true", check=False).stdout


@pytest.fixture(scope="module")
def cluster():
    all_nodes = nodes()
    (control,) = [n for n in all_nodes if n[2]]
    return {"nodes": all_nodes, "cp": control[0], "cp_ip": control[1], "vars": mirror_vars()}


@pytest.fixture(scope="module")
def control_plane(cluster):
    cp, ip = cluster["cp"], cluster["cp_ip"]
    start_unit(cp, "smoke-kube-apiserver", ["/usr/local/bin/kube-apiserver"] + flags({
        "advertise-address": ip,
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": f"{PKI}/ca.crt",
        "enable-admission-plugins": "NodeRestriction",
        "etcd-cafile": f"{PKI}/etcd/ca.crt",
        "etcd-certfile": f"{PKI}/apiserver-etcd-client.crt",
        "etcd-keyfile": f"{PKI}/apiserver-etcd-client.key",
        "etcd-servers": f"https://{ip}:2379",
        "kubelet-certificate-authority": f"{PKI}/ca.crt",
        "kubelet-client-certificate": f"{PKI}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{PKI}/apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,Hostname",
        "proxy-client-cert-file": f"{PKI}/front-proxy-client.crt",
        "proxy-client-key-file": f"{PKI}/front-proxy-client.key",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": "6443",
        "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
        "service-account-key-file": f"{PKI}/sa.pub",
        "service-account-signing-key-file": f"{PKI}/sa.key",
        "service-cluster-ip-range": SERVICE_CIDR,
        "tls-cert-file": f"{PKI}/apiserver.crt",
        "tls-private-key-file": f"{PKI}/apiserver.key",
        "profiling": "false",
    }))
    try:
        wait_for("kube-apiserver /readyz", lambda: sh(cp, f"{KUBECTL} get --raw /readyz", check=False))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- journal\n{journal(cp, 'smoke-kube-apiserver')}") from None
    # admin.conf is in the group kubeadm:cluster-admins, which only a binding makes an administrator:
    # the break-glass super-admin.conf creates it, as kubeadm's init does.
    sh(cp, "kubectl --kubeconfig /etc/kubernetes/super-admin.conf get clusterrolebinding kubeadm:cluster-admins "
           ">/dev/null 2>&1 || kubectl --kubeconfig /etc/kubernetes/super-admin.conf create clusterrolebinding "
           "kubeadm:cluster-admins --clusterrole=cluster-admin --group=kubeadm:cluster-admins")
    common = {"bind-address": "127.0.0.1", "leader-elect": "true"}
    kcm = "/etc/kubernetes/controller-manager.conf"
    start_unit(cp, "smoke-kube-controller-manager", ["/usr/local/bin/kube-controller-manager"] + flags(dict(
        common,
        **{
            "kubeconfig": kcm,
            "authentication-kubeconfig": kcm,
            "authorization-kubeconfig": kcm,
            "client-ca-file": f"{PKI}/ca.crt",
            "cluster-name": "kubeforge",
            "cluster-signing-cert-file": f"{PKI}/ca.crt",
            "cluster-signing-key-file": f"{PKI}/ca.key",
            "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
            "root-ca-file": f"{PKI}/ca.crt",
            "service-account-private-key-file": f"{PKI}/sa.key",
            "service-cluster-ip-range": SERVICE_CIDR,
            "use-service-account-credentials": "true",
            "profiling": "false",
        })))
    scheduler = "/etc/kubernetes/scheduler.conf"
    start_unit(cp, "smoke-kube-scheduler", ["/usr/local/bin/kube-scheduler"] + flags(dict(
        common, kubeconfig=scheduler, **{"authentication-kubeconfig": scheduler, "authorization-kubeconfig": scheduler,
                                         "profiling": "false"})))
    return cluster


KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki}/ca.crt}}
authorization: {{mode: Webhook}}
cgroupDriver: {driver}
clusterDNS: [{dns}]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
failCgroupV1: false
readOnlyPort: 0
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
imageGCHighThresholdPercent: 100
evictionHard: {{imagefs.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%"}}
"""

KUBE_PROXY_CONFIG = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: /etc/kubernetes/smoke-kube-proxy.conf}}
hostnameOverride: {node}
mode: iptables
clusterCIDR: {pods}
conntrack: {{maxPerCore: 0}}
"""


@pytest.fixture(scope="module")
def workers_joined(control_plane):
    """kubelet and kube-proxy on every node, a bridge pod network with routes between the nodes."""
    mirror = control_plane["vars"]["kubeforge_files_mirror"]
    cp_ip = control_plane["cp_ip"]
    all_nodes = control_plane["nodes"]
    for index, (node, ip, _is_cp) in enumerate(all_nodes):
        routes = "\n".join(f"ip route replace {POD_RANGES[other]} via {other_ip}"
                           for other, (_n, other_ip, _c) in enumerate(all_nodes) if other != index)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "smoke",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_RANGES[index]}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        images = " ".join(f"{mirror}/testbed/images/{name}" for name in ("pause-3.10.2.oci.tar", "busybox-testbed.oci.tar"))
        sh(node, f"""
            for url in {images}; do
              python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "/tmp/image.tar")' "$url"
              ctr -n k8s.io images import /tmp/image.tar >/dev/null
            done
            mkdir -p /etc/cni/net.d /var/lib/kubelet
            echo {shlex.quote(json.dumps(conflist))} > /etc/cni/net.d/10-smoke.conflist
            {routes}
            # Nodes that are not control planes reach the API through a local load balancer in a
            # cluster; here they talk to the one API server directly.
            for conf in kubelet kube-proxy; do
              sed 's#https://127.0.0.1:6443#https://{cp_ip}:6443#' /etc/kubernetes/$conf.conf > /etc/kubernetes/smoke-$conf.conf
              chmod 600 /etc/kubernetes/smoke-$conf.conf
            done
            driver=$(grep -q 'SystemdCgroup = true' /etc/containerd/config.toml && echo systemd || echo cgroupfs)
            cat > /var/lib/kubelet/smoke-config.yaml <<EOF
{KUBELET_CONFIG.format(pki=PKI, driver="$driver", dns=DNS_IP)}EOF
            cat > /var/lib/kubelet/smoke-proxy.yaml <<EOF
{KUBE_PROXY_CONFIG.format(node=node, pods=POD_CIDR)}EOF
        """)
        start_unit(node, "smoke-kubelet", ["/usr/local/bin/kubelet", "--config=/var/lib/kubelet/smoke-config.yaml",
                                           "--kubeconfig=/etc/kubernetes/smoke-kubelet.conf",
                                           f"--hostname-override={node}", f"--node-ip={ip}"])
        start_unit(node, "smoke-kube-proxy", ["/usr/local/bin/kube-proxy", "--config=/var/lib/kubelet/smoke-proxy.yaml"])
    return control_plane


def test_programs_report_the_built_versions(cluster):
    version = cluster["vars"]["testbed_versions"]["kubernetes"]
    cp = cluster["cp"]
    for program in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
        out = sh(cp, f"/usr/local/bin/{program} --version").stdout.strip()
        assert out == f"Kubernetes v{version}", program
    assert f"Client Version: v{version}" in sh(cp, "kubectl version --client").stdout
    etcd = cluster["vars"]["testbed_versions"]["etcd"]
    assert f"etcd Version: {etcd}" in sh(cp, "etcd --version").stdout
    assert etcd.startswith("3.6.")


def test_apiserver_is_ready_over_tls(control_plane):
    cp = control_plane["cp"]
    verbose = sh(cp, f"{KUBECTL} get --raw '/readyz?verbose'").stdout
    assert "readyz check passed" in verbose
    assert "[+]etcd ok" in verbose
    print(f"\n[smoke] {cp}: /readyz?verbose\n{verbose}")


def test_controller_manager_and_scheduler_take_their_leases(control_plane):
    cp = control_plane["cp"]
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = wait_for(f"the {lease} lease", lambda: sh(
            cp, f"{KUBECTL} -n kube-system get lease {lease} -o jsonpath='{{.spec.holderIdentity}}' | grep {cp}",
            check=False), timeout=120)
        print(f"\n[smoke] lease {lease}: {holder.stdout.strip()}")


def test_every_node_registers_and_is_ready(workers_joined):
    cp = workers_joined["cp"]
    version = workers_joined["vars"]["testbed_versions"]["kubernetes"]
    for node, _ip, _is_cp in workers_joined["nodes"]:
        try:
            wait_for(f"node {node} Ready", lambda: sh(
                cp, f"{KUBECTL} get node {node} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}' "
                    "| grep -x True", check=False), timeout=180)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- kubelet journal\n{journal(node, 'smoke-kubelet', 60)}") from None
    table = sh(cp, f"{KUBECTL} get nodes -o wide").stdout
    print(f"\n[smoke] kubectl get nodes -o wide\n{table}")
    kubelets = json.loads(sh(cp, f"{KUBECTL} get nodes -o json").stdout)["items"]
    assert {item["status"]["nodeInfo"]["kubeletVersion"] for item in kubelets} == {f"v{version}"}
    assert {item["metadata"]["name"] for item in kubelets} == {n for n, _i, _c in workers_joined["nodes"]}


def _pod(name, node, command, labels=None):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never" if not labels else "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": command}],
        },
    }


def apply(cp, document):
    sh(cp, f"{KUBECTL} apply -f - <<'EOF'\n{json.dumps(document)}\nEOF")


def test_a_pod_runs_and_its_log_is_read_back(workers_joined):
    cp = workers_joined["cp"]
    token = uuid.uuid4().hex[:12]
    for node, _ip, _is_cp in workers_joined["nodes"]:
        name = f"echo-{node.rsplit('-', 1)[-1]}"
        apply(cp, _pod(name, node, ["sh", "-c", f"echo smoke {token} from $(hostname)"]))
        wait_for(f"pod {name} to finish", lambda: sh(
            cp, f"{KUBECTL} get pod {name} -o jsonpath='{{.status.phase}}' | grep -x Succeeded", check=False),
            timeout=120)
        # kubectl logs: the API server reads the kubelet's log endpoint over TLS it verifies
        log = sh(cp, f"{KUBECTL} logs {name}").stdout.strip()
        assert log == f"smoke {token} from {name}"
        print(f"\n[smoke] kubectl logs {name} (on {node}): {log}")


def test_a_cluster_ip_service_is_reached_from_a_pod_on_another_node(workers_joined):
    cp = workers_joined["cp"]
    (server_node, _ip, _c) = [n for n in workers_joined["nodes"] if not n[2]][0]
    apply(cp, _pod("web", server_node,
                   ["sh", "-c", "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && "
                                "exec httpd -f -p 8080 -h /www"], labels={"app": "web"}))
    apply(cp, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    apply(cp, _pod("client", cp, ["sleep", "3600"], labels={"app": "client"}))
    for name in ("web", "client"):
        wait_for(f"pod {name} Running", lambda: sh(
            cp, f"{KUBECTL} get pod {name} -o jsonpath='{{.status.phase}}' | grep -x Running", check=False),
            timeout=120)
    cluster_ip = sh(cp, f"{KUBECTL} get service web -o jsonpath='{{.spec.clusterIP}}'").stdout.strip()
    # kube-proxy's rules for the Service, on the client's node
    rules = wait_for("kube-proxy's rules for the web Service",
                     lambda: sh(cp, f"iptables-save -t nat | grep -- '-d {cluster_ip}/32'", check=False), timeout=60)
    assert "KUBE-SVC-" in rules.stdout
    # kubectl exec (API server -> kubelet, verified TLS) into the client, which reaches the Service
    answer = wait_for(f"http://{cluster_ip}/ from the client pod", lambda: sh(
        cp, f"{KUBECTL} exec client -- timeout 5 wget -q -O - http://{cluster_ip}/", check=False), timeout=60)
    assert answer.stdout.strip() == "hello from web"
    print(f"\n[smoke] service web {cluster_ip} from pod client on {cp}: {answer.stdout.strip()}")
