# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Helpers for the etcd lifecycle tests: inventories, playbook runs, commands on nodes, timings.

The tests drive the collection's real playbooks (ansible-playbook, as a user would) against the
test-bed nodes of the scenario, and look at the result on the nodes themselves (podman exec).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STATE = os.environ.get("KUBEFORGE_TESTBED_HOME", "/var/tmp/kubeforge-testbed")
MIRROR_VARS = os.path.join(STATE, "mirror", "vars.yml")
WORK = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or tempfile.mkdtemp(prefix="etcdtest-")
PKI = "/etc/kubernetes/pki/etcd"
ETCDCTL = ("etcdctl --cacert=%s/ca.crt --cert=%s/healthcheck-client.crt --key=%s/healthcheck-client.key "
           "--dial-timeout=3s --command-timeout=15s" % (PKI, PKI, PKI))
WRITER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "files", "etcd_writer.py")
CLIENT_FILES = ("--cacert %s/ca.crt --cert %s/healthcheck-client.crt --key %s/healthcheck-client.key" % (PKI, PKI, PKI))
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def mirror_versions(component="etcd"):
    with open(MIRROR_VARS) as handle:
        data = yaml.safe_load(handle)
    return list(data["all"]["vars"]["testbed_mirror_versions"][component])


def version_key(text):
    return tuple(int(p) for p in text.split("."))


class Report:
    """Timings and figures of the lifecycle steps, printed and kept as JSON in the scenario's work dir."""

    def __init__(self, scenario, label="etcd lifecycle"):
        self.label = label
        # kept after molecule removes its work directory (tests/output is ignored by git)
        directory = os.path.join(PROJECT, "tests", "output", "molecule")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "etcd-report-%s.json" % scenario)
        self.data = {"scenario": scenario, "steps": [], "figures": {}}
        self._save()

    def step(self, name, seconds, **extra):
        entry = dict(step=name, seconds=round(seconds, 1), **extra)
        self.data["steps"].append(entry)
        self._save()
        print("\n[%s] %-55s %6.1f s %s" % (self.label, name, seconds, json.dumps(extra) if extra else ""))

    def figure(self, name, value):
        self.data["figures"][name] = value
        self._save()
        print("\n[%s] %s = %s" % (self.label, name, json.dumps(value)))

    def _save(self):
        with open(self.path + ".tmp", "w") as handle:
            json.dump(self.data, handle, indent=2)
        os.replace(self.path + ".tmp", self.path)


class Bed:
    """The scenario's test-bed cluster: node addresses, inventories, playbooks, commands."""

    def __init__(self, cluster, layout):
        self.cluster = cluster
        self.layout = layout
        self.runs = 0

    # -- nodes --------------------------------------------------------------------------------

    def testbed(self, *args, check=True):
        proc = subprocess.run([os.path.join(PROJECT, "hack", "testbed")] + list(args), cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError("hack/testbed %s failed:\n%s" % (" ".join(args), proc.stdout[-3000:]))
        return proc

    def hosts(self):
        with open(os.path.join(STATE, "clusters", self.cluster, "inventory.yml")) as handle:
            data = yaml.safe_load(handle)
        return data["all"]["hosts"], data["all"]["vars"]

    def address(self, node):
        return self.hosts()[0][node]["ip"]

    def sh(self, node, command, check=True, timeout=120):
        """Run a shell command in the node (as root); returns (rc, output)."""
        proc = subprocess.run(["podman", "exec", node, "bash", "-c", command], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("%s: %s failed (rc %d):\n%s" % (node, command, proc.returncode, proc.stdout[-3000:]))
        return proc.returncode, proc.stdout

    def etcdctl(self, node, args, check=True, endpoints=None):
        ep = " --endpoints=%s" % endpoints if endpoints else ""
        return self.sh(node, "%s%s %s" % (ETCDCTL, ep, args), check=check)

    def members(self, node):
        return json.loads(self.etcdctl(node, "member list -w json")[1])["members"]

    def status(self, node):
        """Endpoint status of every member, by member name."""
        members = self.members(node)
        urls = ",".join(m["clientURLs"][0] for m in members if m.get("clientURLs"))
        rc, out = self.etcdctl(node, "endpoint status -w json", check=False, endpoints=urls)
        names = {m["ID"]: m.get("name") for m in members}
        found = {}
        for item in json.loads(out[out.index("["):]) if "[" in out else []:
            status = item["Status"]
            found[names.get(status["header"]["member_id"])] = {
                "version": status["version"], "leader": status["leader"] == status["header"]["member_id"],
                "endpoint": item["Endpoint"]}
        return found

    def health(self, node):
        rc, out = self.etcdctl(node, "endpoint health --cluster -w json", check=False)
        return rc, json.loads(out[out.index("["):]) if "[" in out else []

    def wait_healthy(self, node, members, timeout=120):
        deadline = time.time() + timeout
        while True:
            rc, items = self.health(node)
            if rc == 0 and len(items) == members and all(i.get("health") for i in items):
                return items
            if time.time() > deadline:
                raise AssertionError("cluster not healthy from %s after %d s: %s" % (node, timeout, items))
            time.sleep(2)

    def keys(self, node, prefix):
        out = self.etcdctl(node, "get %s --prefix --keys-only" % shlex.quote(prefix))[1]
        return {line for line in out.splitlines() if line.strip()}

    def put_keys(self, node, members, prefix, count):
        """Put ``<prefix>0`` .. ``<prefix><count-1>`` from ``node`` (each retried until acknowledged)."""
        self.copy_to(node, WRITER, "/var/tmp/etcd_writer.py")
        endpoints = ",".join("https://%s:2379" % self.address(n) for n in members)
        self.sh(node, "python3 /var/tmp/etcd_writer.py --endpoints %s %s --prefix %s --count %d --result /var/tmp/load.json"
                % (endpoints, CLIENT_FILES, shlex.quote(prefix), count), timeout=300)
        return json.loads(self.read(node, "/var/tmp/load.json"))

    def start_writer(self, node, members, name, reload=False):
        """Start the writer on ``node`` as the transient unit ``etcd-<name>``: keys ``/<name>/N`` put to
        every member of ``members`` until stop_writer; ``reload`` re-reads the TLS files when they change."""
        self.copy_to(node, WRITER, "/var/tmp/etcd_writer.py")
        endpoints = ",".join("https://%s:2379" % self.address(n) for n in members)
        self.sh(node, "rm -f /var/tmp/{0}.stop /var/tmp/{0}.json; systemd-run --unit=etcd-{0} --collect python3 "
                      "/var/tmp/etcd_writer.py {1}--endpoints {2} {3} --prefix /{0}/ --stop-file /var/tmp/{0}.stop "
                      "--result /var/tmp/{0}.json".format(name, "--reload " if reload else "", endpoints, CLIENT_FILES))

    def stop_writer(self, node, name, timeout=60):
        """Stop the writer ``name`` and return its result: acknowledged (the key numbers), failed, errors..."""
        self.sh(node, "touch /var/tmp/%s.stop" % name)
        deadline = time.time() + timeout
        while self.sh(node, "test -e /var/tmp/%s.json" % name, check=False)[0] != 0:
            assert time.time() < deadline, "the writer %s did not stop within %d s" % (name, timeout)
            time.sleep(1)
        return json.loads(self.read(node, "/var/tmp/%s.json" % name))

    def copy_to(self, node, source, dest):
        subprocess.run(["podman", "cp", source, "%s:%s" % (node, dest)], check=True, timeout=60)

    def read(self, node, path):
        return self.sh(node, "cat %s" % shlex.quote(path))[1]

    # -- inventories and playbooks -------------------------------------------------------------

    def inventory(self, groups, name="inventory", host_vars=None):
        """An inventory of the test-bed nodes with these groups (k8s_cluster: control planes and nodes)."""
        hosts, common = self.hosts()
        data = {"all": {"vars": dict(common), "hosts": {}, "children": {}}}
        for host, values in hosts.items():
            entry = {k: v for k, v in values.items() if k in ("ansible_host", "ip")}
            entry.update((host_vars or {}).get(host, {}))
            data["all"]["hosts"][host] = entry
        children = data["all"]["children"]
        for group in ("kube_control_plane", "kube_node", "etcd"):
            children[group] = {"hosts": {h: {} for h in groups.get(group, [])}}
        children["k8s_cluster"] = {"children": {"kube_control_plane": {}, "kube_node": {}}}
        path = os.path.join(WORK, "%s-%s.yml" % (self.cluster, name))
        with open(path, "w") as handle:
            yaml.safe_dump(data, handle, sort_keys=False)
        return path

    def playbook(self, playbook, inventory, extra=None, limit=None, check=False, diff=False,
                 skip_tags=("container_runtime", "pki", "kubernetes"), tags=()):
        """Run a playbook of the collection; returns a result with rc, output, seconds, recap, tasks.

        The cluster PKI and the container runtime (in install.yml and scale.yml for the k8s_cluster
        hosts) are skipped by default: the etcd scenarios measure preflight, os and etcd; those two
        have scenarios of their own.
        """
        self.runs += 1
        argv = [os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ansible-playbook"),
                "-i", inventory, "-i", MIRROR_VARS, os.path.join(PROJECT, "playbooks", playbook)]
        if skip_tags:
            argv += ["--skip-tags", ",".join(skip_tags)]
        if tags:
            argv += ["--tags", ",".join(tags)]
        for key, value in (extra or {}).items():
            argv += ["-e", json.dumps({key: value})]
        if limit:
            argv += ["--limit", limit]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
        started = time.time()
        proc = subprocess.run(argv, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=1200)
        seconds = time.time() - started
        log = os.path.join(WORK, "run-%02d-%s.log" % (self.runs, os.path.splitext(playbook)[0]))
        with open(log, "w") as handle:
            handle.write(" ".join(shlex.quote(a) for a in argv) + "\n\n" + proc.stdout)
        return Run(proc.returncode, proc.stdout, seconds, log)


class Run:
    def __init__(self, rc, output, seconds, log):
        self.rc = rc
        self.output = output
        self.seconds = seconds
        self.log = log
        # the output with its line wrapping undone (messages wrap at the terminal width)
        self.text = " ".join(output.replace("\\n", " ").split())
        self.recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                                   "failed": int(m.group(5)), "skipped": int(m.group(6))}
                      for m in RECAP.finditer(output)}

    @property
    def changed(self):
        return sum(v["changed"] for v in self.recap.values())

    def tasks_per_host(self):
        """Tasks each host went through (ok, which counts changed, plus skipped)."""
        return {h: v["ok"] + v["skipped"] + v["failed"] for h, v in self.recap.items() if h != "localhost"}

    def task(self, title):
        """The output of the first task whose title contains ``title`` (empty when it did not run)."""
        parts = self.output.split("TASK [")
        for part in parts[1:]:
            if title in part.split("\n", 1)[0]:
                return part
        return ""

    def tail(self, lines=60):
        return "\n".join(self.output.splitlines()[-lines:]) + "\n(full log: %s)" % self.log

    def failure(self):
        """The failed tasks' messages (what the user reads), unwrapped."""
        parts = self.output.split("fatal: [")[1:]
        return " ".join(" ".join(part.split("\nPLAY RECAP")[0].split("\nTASK [")[0].split()) for part in parts)
