# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Decide what the etcd role may do, from the inventory and what the members report.

Pure Python, run on the controller by the ``etcd_plan`` action plugin; unit tests call
:func:`plan` directly with plain dicts. Every refusal is decided here, before anything changes,
and says which member and why.

Input of :func:`plan`::

    {"mode": "converge" | "upgrade" | "remove" | "backup" | "restore",
     "target_version": "3.5.30", "allow_downgrade": false, "force": false, "remove": "node3",
     "etcd_hosts": [inventory order], "play_hosts": [hosts of this run],
     "hosts": {name: {"member_name", "peer_url", "client_url", "probe": {...} | null,
                      "unreachable": bool}}}

``probe`` is what the ``etcd_member`` module returned on that host (null: the host was not
asked); :func:`inventory` makes the other fields of each entry from the inventory, and
:func:`read_probes` turns the results an Ansible task registered into the probes.
"""

from __future__ import annotations

import re

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki_catalog, shared_secret
from ansible_collections.kubeforge.cluster.plugins.module_utils.probe import read_answer, unreachable_error

MODE_NAMES = ("converge", "upgrade", "remove", "backup", "restore")
# the keys of an etcd_member result (module_utils.etcd_member.PROBE_KEYS)
PROBE_KEYS = ("initialized", "data_dir_empty", "ca", "binary", "service", "user", "directories", "files",
              "local", "cluster", "cluster_error")


def argument_spec():
    """The options of the ``etcd_plan`` action (documented in plugins/modules/etcd_plan.py)."""
    return dict(
        mode=dict(type="str", required=True, choices=list(MODE_NAMES)),
        target_version=dict(type="str"),
        allow_downgrade=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        ca_rotating=dict(type="bool", default=False),
        remove=dict(type="str", default=""),
        etcd_hosts=dict(type="list", elements="str", required=True),
        play_hosts=dict(type="list", elements="str", required=True),
        hosts=dict(type="dict", required=True),
        probes=dict(type="dict", default={}),
    )


def inventory(hostvars, etcd_hosts, peer_port, client_port, remove=""):
    """The plan's ``hosts`` without the probes: the member name, address and URLs of every etcd
    host, and of ``remove`` (the host or member being removed) when it is no longer in the group.

    From the inventory only (``hostvars``; a name absent from it has only itself): the member name is
    ``etcd_member_name``, else the host's name; the address is ``etcd_address``, else the address the
    cluster's certificates name the host by (``pki_catalog.host_address``: ``ip``, else
    ``ansible_host``, else the name). The same address goes into the member's server and peer
    certificates.
    """
    out = {}
    for host in list(etcd_hosts) + ([remove] if remove and remove not in etcd_hosts else []):
        facts = hostvars[host] if host in hostvars else {}
        address = str(facts.get("etcd_address") or pki_catalog.host_address(facts, host))
        out[host] = {"member_name": str(facts.get("etcd_member_name") or host), "address": address,
                     "peer_url": pki_catalog.url(address, peer_port),
                     "client_url": pki_catalog.url(address, client_port)}
    return out


def read_probe(result):
    """``(probe, unreachable)`` from what an ``etcd_member`` task registered for one host.

    Skipped or absent: not asked. Unreachable, failed, or without the probe's keys (the module did
    not run, and ``failed_when: false`` hid that): unreachable, as the plan cannot tell more about
    such a host. Of an answer only the probe's keys are kept (not Ansible's own, e.g. ``invocation``).
    """
    answer, unreachable = read_answer(result, "initialized")
    if answer is None:
        return None, unreachable
    return {k: answer[k] for k in PROBE_KEYS if k in answer}, False


def read_probes(hosts, results):
    """The plan's ``hosts`` entries: the inventory's ``hosts`` with each one's probe added."""
    out = {}
    for host, info in hosts.items():
        probe, unreachable = read_probe((results or {}).get(host))
        out[host] = dict(info, probe=probe, unreachable=unreachable)
    return out


# What a running member is restarted for when one of this run's tasks changed it (etcd_member also
# reports the inputs changed after etcd started, for a run that stopped before restarting): its
# settings and unit files (not the bootstrap settings, read only at the first start, nor etcdctl's),
# the certificates and CA etcd serves and checks with, its binary.
RESTART_CERTIFICATES = ("server", "peer")
RESTART_CA_FILE = "ca.crt"


def _results(registered):
    return [r for r in (registered or {}).get("results") or [] if isinstance(r, dict)]


def inputs_changed(registered, ignored_files=()):
    """Whether one member's tasks of this run changed what its running etcd reads.

    ``registered``: what those tasks registered on the member, by role: ``files`` (the settings
    files, looped over {"dest"}), ``certificates`` (the certificates written, looped over {"name"}),
    ``ca`` (the CA copied, looped over the slurp results, whose "item" is the file name) and
    ``binary`` (the binaries); a missing or skipped registration changed nothing.
    """
    files = [r for r in _results(registered.get("files")) if r.get("changed")
             and (r.get("item") or {}).get("dest") not in ignored_files]
    certificates = [r for r in _results(registered.get("certificates")) if r.get("changed")
                    and (r.get("item") or {}).get("name") in RESTART_CERTIFICATES]
    ca = [r for r in _results(registered.get("ca")) if r.get("changed")
          and (r.get("item") or {}).get("item") == RESTART_CA_FILE]
    return bool(files or certificates or ca or (registered.get("binary") or {}).get("changed"))


def restart_order(order, play_hosts, probes, registered, ignored_files=(), changed_on=()):
    """The running members of this run to restart, in the plan's ``order`` (followers first, the
    leader last).

    A member is restarted when etcd runs there (``probes``: what the plan read, by host), this run
    did not just start it (``registered[host]["started"]``), and its inputs changed: in this run
    (:func:`inputs_changed` of ``registered[host]``, or ``changed_on``: the hosts where another task
    changed them, the CA host after a phase of the CA's rotation), or after etcd started (the
    probe's ``stale``).
    """
    out = []
    for host in order:
        if host not in play_hosts:
            continue
        service = ((probes or {}).get(host) or {}).get("service") or {}
        mine = (registered or {}).get(host) or {}
        if not service.get("active") or (mine.get("started") or {}).get("changed"):
            continue
        if service.get("stale") or host in changed_on or inputs_changed(mine, ignored_files):
            out.append(host)
    return out


VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


class Refusal(Exception):
    pass


def version_tuple(text):
    match = VERSION_RE.match(str(text or ""))
    return tuple(int(p) for p in match.groups()) if match else None


def quorum(voters):
    return voters // 2 + 1


def names(items):
    items = list(items)
    return ", ".join(items) if items else "none"


class Cluster:
    """The cluster as the inventory and the members describe it."""

    def __init__(self, data):
        self.data = data
        self.mode = data.get("mode", "converge")
        self.etcd_hosts = list(data.get("etcd_hosts") or [])
        self.play_hosts = [h for h in data.get("play_hosts") or [] if h in self.etcd_hosts]
        self.hosts = data.get("hosts") or {}
        self.errors = []
        self.warnings = []
        self.view_host = None
        self.view = None
        self.members = []
        self.by_host = {}
        self._read_view()

    # -- reading ------------------------------------------------------------------------------

    def probe(self, host):
        return (self.hosts.get(host) or {}).get("probe") or None

    def _read_view(self):
        """The member list and health from the first member (inventory order) that answers."""
        for host in self.etcd_hosts:
            probe = self.probe(host)
            if probe and probe.get("cluster") and (probe.get("local") or {}).get("healthy"):
                self.view_host = host
                self.view = probe["cluster"]
                break
        if not self.view:
            return
        peer_to_host = {}
        for host in self.etcd_hosts:
            peer = (self.hosts.get(host) or {}).get("peer_url")
            if peer:
                peer_to_host[peer] = host
        name_to_host = {(self.hosts.get(h) or {}).get("member_name", h): h for h in self.etcd_hosts}
        for member in self.view.get("members") or []:
            host = next((peer_to_host[u] for u in member.get("peer_urls") or [] if u in peer_to_host), None)
            if host is None and member.get("name") in name_to_host:
                named = name_to_host[member["name"]]
                self.errors.append(
                    "etcd member %s (id %s) advertises peer URL %s, but the inventory gives %s the address of %s: "
                    "etcd does not follow address changes. Give the host its old address back, or remove the "
                    "member (remove_node.yml -e node=%s) and add it again"
                    % (member["name"], member["id_hex"], names(member.get("peer_urls") or []), named,
                       self.hosts[named].get("peer_url"), named))
            member = dict(member, host=host)
            self.members.append(member)
            if host:
                self.by_host[host] = member

    @property
    def exists(self):
        """A cluster exists when a member answers or any host holds member data."""
        if self.view:
            return True
        return any((self.probe(h) or {}).get("initialized") for h in self.etcd_hosts)

    @property
    def voters(self):
        return [m for m in self.members if not m.get("is_learner")]

    def healthy_voters(self, exclude=()):
        return [m for m in self.voters if m.get("healthy") and m.get("host") not in exclude
                and m.get("name") not in exclude]

    def label(self, member):
        name = member.get("name") or member.get("host") or "(unstarted)"
        where = member.get("endpoint") or names(member.get("peer_urls") or [])
        return "%s (id %s, %s)" % (name, member.get("id_hex"), where)

    def why_unhealthy(self, member):
        """The member host's own account when it has one (etcd stopped), else what the cluster saw."""
        probe = self.probe(member.get("host")) if member.get("host") else None
        if (self.hosts.get(member.get("host")) or {}).get("unreachable"):
            return "the host is unreachable"
        if probe and not probe.get("service", {}).get("active"):
            return "etcd is not running there (systemd: %s)" % probe["service"].get("state", "unknown")
        return member.get("error") or "unhealthy"

    def unhealthy_lines(self, members):
        return ["%s: %s" % (self.label(m), self.why_unhealthy(m)) for m in members]

    def leader_host(self):
        leader = (self.view or {}).get("leader")
        for member in self.members:
            if leader is not None and member.get("id") == leader:
                return member.get("host")
        return None

    def order_leader_last(self, hosts):
        leader = self.leader_host()
        ordered = [h for h in self.etcd_hosts if h in hosts and h != leader]
        if leader in hosts:
            ordered.append(leader)
        return ordered

    def initial_cluster(self, hosts):
        parts = []
        for host in hosts:
            info = self.hosts[host]
            parts.append("%s=%s" % (info.get("member_name", host), info["peer_url"]))
        return ",".join(parts)

    def running_version(self, host):
        member = self.by_host.get(host)
        if member and member.get("status"):
            return member["status"].get("version")
        probe = self.probe(host) or {}
        local = (probe.get("local") or {}).get("status") or {}
        return local.get("version")

    def anchor(self, exclude=()):
        """A healthy voting member the role can run etcdctl on (inventory order)."""
        for host in self.etcd_hosts:
            member = self.by_host.get(host)
            if member and member.get("healthy") and not member.get("is_learner") and host not in exclude \
                    and not (self.hosts.get(host) or {}).get("unreachable"):
                return host
        return None

    # -- the CA -------------------------------------------------------------------------------

    def ca(self):
        """Which host holds the etcd CA (or creates it) and which hosts need a copy.

        The decision is ``shared_secret.share``'s, as for the cluster CAs: the CA host is the first
        member holding the certificate and the key, else the first member asked (of the run first).
        Only the run's members that run or hold data are compared, by the certificate: a fresh
        member holding another CA receives the cluster's. During a rotation of the etcd CA
        (``ca_rotating``), the CA host's files are the ones that count: the others of the run are not
        refused but receive them all (the trust file, the key and the next CA).
        """
        held = {}
        for host in self.etcd_hosts:
            probe = self.probe(host)
            if not probe:
                continue
            cert, key = probe["ca"].get("cert"), probe["ca"].get("key")
            held[host] = {"cert": cert, "key": key}
            if bool(cert) != bool(key):
                self.warnings.append("%s holds the etcd CA %s without its %s; it gets the full CA from the CA host"
                                     % (host, "certificate" if cert else "key", "key" if cert else "certificate"))
        in_use = [h for h in self.play_hosts if h in held
                  and (self.probe(h).get("initialized") or self.probe(h)["service"].get("active"))]
        placed = shared_secret.share(
            self.etcd_hosts, self.play_hosts, held, ("cert", "key"),
            prefer=(lambda files: files["cert"] and files["key"],),
            creators=[h for h in held if h in self.play_hosts] + [h for h in held if h not in self.play_hosts],
            compare=("cert",), compared=in_use)
        ca_host = placed["host"]
        if ca_host is None:
            self.errors.append("no etcd host could be asked whether it holds the etcd CA")
            return {"host": None, "copy_to": [], "exists": False}
        if self.data.get("ca_rotating"):
            if not placed["holder"]:
                self.errors.append("no etcd member holds the etcd CA (%s/ca.crt and ca.key): there is no CA to "
                                   "rotate; install.yml creates it" % pki_catalog.ETCD_PKI_DIR)
            return {"host": ca_host, "exists": placed["holder"],
                    "copy_to": [h for h in self.play_hosts if h != ca_host and h in held]}
        for host in placed["conflicting"]:
            self.errors.append(
                "%s holds another etcd CA than %s (/etc/kubernetes/pki/etcd/ca.crt differs) and runs or holds "
                "member data: the members of one cluster share one CA. Make the CA files the same, or wipe %s "
                "(remove_node.yml -e node=%s) before it joins" % (host, ca_host, host, host))
        return {"host": ca_host, "copy_to": placed["copy_to"], "exists": placed["holder"]}

    # -- versions -----------------------------------------------------------------------------

    def version_step_problem(self, current, target, allow_downgrade):
        """Why moving one member from ``current`` to ``target`` is refused, or None."""
        cur, tgt = version_tuple(current), version_tuple(target)
        if cur is None or tgt is None or cur == tgt:
            return None
        if cur[0] != tgt[0]:
            return "a change of major version (%s to %s) is not supported" % (current, target)
        if tgt < cur:
            if not allow_downgrade:
                return ("%s is older than %s: that is a downgrade; set etcd_allow_downgrade=true to ask for it "
                        "explicitly" % (target, current))
            if tgt[1] != cur[1]:
                return ("a downgrade across minor versions (%s to %s) needs etcd's downgrade procedure "
                        "(etcdctl downgrade), which this playbook does not run; restore the snapshot taken before "
                        "the upgrade instead (etcd_restore.yml)" % (current, target))
            return None
        if tgt[1] - cur[1] > 1:
            return ("%s to %s skips minor version %d.%d: etcd upgrades one minor version at a time; upgrade to "
                    "the newest %d.%d release first" % (current, target, cur[0], cur[1] + 1, cur[0], cur[1] + 1))
        return None


# -- modes ------------------------------------------------------------------------------------

def plan_converge(c, data):
    target = data["target_version"]
    result = {"bootstrap": [], "start": [], "join": [], "initial_cluster": {}, "initial_state": {}}
    missing = [h for h in c.etcd_hosts if h not in c.play_hosts]
    for host in c.etcd_hosts:
        if (c.hosts.get(host) or {}).get("unreachable"):
            c.errors.append(unreachable_error(host, "etcd group"))
    if not c.exists:
        if missing:
            c.errors.append(
                "no etcd member runs or holds data yet, so all members start together (a new cluster); %s of the "
                "etcd group %s not in this run. Run without --limit, or take %s out of the etcd group"
                % (names(missing), "is" if len(missing) == 1 else "are", "it" if len(missing) == 1 else "them"))
        result["bootstrap"] = list(c.play_hosts)
        cluster = c.initial_cluster(c.etcd_hosts)
        for host in c.play_hosts:
            result["initial_cluster"][host] = cluster
            result["initial_state"][host] = "new"
        return result

    # versions: install.yml never changes the version a member runs
    running_on, installed_on = {}, {}
    for host in c.etcd_hosts:
        probe = c.probe(host) or {}
        if not (c.by_host.get(host) or probe.get("initialized")):
            continue
        running = c.running_version(host)
        installed = (probe.get("binary") or {}).get("version")
        if running and running != target:
            running_on.setdefault(running, []).append(host)
        if installed and installed != target and installed != running:
            installed_on.setdefault(installed, []).append(host)
    if running_on or installed_on:
        found = ["etcd %s runs on %s" % (v, names(h)) for v, h in sorted(running_on.items())]
        found += ["the etcd %s binary is installed on %s" % (v, names(h)) for v, h in sorted(installed_on.items())]
        downgrade = any(version_tuple(target) < version_tuple(v) for v in list(running_on) + list(installed_on))
        c.errors.append(
            "kubeforge_etcd_version is %s, but %s. install.yml (and scale.yml) does not change the version of running "
            "members: run playbooks/upgrade.yml (snapshot first, then one member at a time, the leader last)%s"
            % (target, "; ".join(found), " with -e etcd_allow_downgrade=true" if downgrade else ""))

    if not c.view:
        stopped = [h for h in c.play_hosts if (c.probe(h) or {}).get("initialized")]
        joiners = [h for h in c.play_hosts if not (c.probe(h) or {}).get("initialized")]
        if joiners:
            c.errors.append(
                "no etcd member answers (%s hold member data), so %s cannot join now. Start the members first "
                "(run with --limit %s) and run again"
                % (names(h for h in c.etcd_hosts if (c.probe(h) or {}).get("initialized")), names(joiners),
                   ",".join(stopped) or "the members"))
        result["start"] = stopped
        return result

    for member in c.members:
        if member.get("host") is None:
            c.warnings.append("etcd member %s is not in the inventory's etcd group; if it is gone for good, remove "
                              "it: remove_node.yml -e node=%s" % (c.label(member), member.get("name") or member["id_hex"]))
    # initialized members that are stopped simply start again (they rejoin with their own data)
    result["start"] = [h for h in c.play_hosts if (c.probe(h) or {}).get("initialized")
                       and not (c.probe(h) or {}).get("service", {}).get("active")]
    joiners = [h for h in c.play_hosts if not (c.probe(h) or {}).get("initialized")]
    if not joiners:
        return result

    anchor = c.anchor()
    unhealthy = [m for m in c.voters if not m.get("healthy") and m.get("host") not in joiners
                 and m.get("host") not in result["start"]]
    if unhealthy:
        c.errors.append(
            "refusing to add %s: %s. Adding a member while another one is down brings the cluster closer to "
            "losing quorum; start it, or remove it first (remove_node.yml -e node=NAME)"
            % (names(joiners), "; ".join(c.unhealthy_lines(unhealthy))))
    learners = [m for m in c.members if m.get("is_learner") and m.get("host") not in joiners]
    if learners:
        c.errors.append("the cluster has a learner that is not joining in this run: %s; promote or remove it first"
                        % names(c.label(m) for m in learners))
    unnamed = [m for m in c.members if not m.get("host") and not m.get("name")]
    for member in unnamed:
        c.errors.append("member %s was added but never started and is no inventory host: remove it "
                        "(etcdctl member remove %s) before adding members" % (c.label(member), member["id_hex"]))
    healthy = len(c.healthy_voters())
    voters = len(c.voters)
    if healthy < quorum(voters):
        c.errors.append("the cluster has %d healthy of %d voting members, less than a quorum (%d): no member can "
                        "be added" % (healthy, voters, quorum(voters)))
    sequence = []
    for host in joiners:
        info = c.hosts[host]
        member = c.by_host.get(host)
        if member and member.get("started"):
            c.errors.append(
                "%s has no etcd data, but the cluster lists it as the started member %s: starting it empty would "
                "corrupt that member. Remove it first (remove_node.yml -e node=%s), then add it again"
                % (host, c.label(member), host))
            continue
        sequence.append({"host": host, "member_name": info.get("member_name", host), "peer_url": info["peer_url"],
                         "client_url": info["client_url"], "member_id": member["id_hex"] if member else None,
                         "is_learner": bool(member.get("is_learner")) if member else True,
                         "needs_add": member is None})
    # members added earlier but never started go first (a voting one restores the count of healthy members);
    # then the new ones, in inventory order, each added as a learner and promoted once in sync
    sequence.sort(key=lambda e: (e["needs_add"], e["is_learner"], c.etcd_hosts.index(e["host"])))
    # etcd checks that a joining member's initial cluster is exactly the member list at that moment: every
    # member (started or not), plus the members this run adds before it, plus itself
    listed = []
    for member in c.members:
        name = c.hosts[member["host"]].get("member_name", member["host"]) if member.get("host") else member.get("name")
        for url in member.get("peer_urls") or []:
            listed.append((name, url))
    for entry in sequence:
        if entry["needs_add"]:
            listed.append((entry["member_name"], entry["peer_url"]))
        result["initial_cluster"][entry["host"]] = ",".join("%s=%s" % pair for pair in listed)
        result["initial_state"][entry["host"]] = "existing"
    result["join"] = sequence
    result["anchor"] = anchor
    if sequence and anchor is None:
        c.errors.append("no healthy etcd member in the inventory to add %s from" % names(joiners))
    return result


def plan_upgrade(c, data):
    target = data["target_version"]
    allow = bool(data.get("allow_downgrade"))
    result = {"upgrade": [], "current": {}}
    if not c.view:
        why = "; ".join("%s: %s" % (h, ((c.probe(h) or {}).get("local") or {}).get("error") or "not asked")
                        for h in c.etcd_hosts)
        c.errors.append("no etcd member answers, so nothing can be upgraded safely (%s)" % why)
        return result
    unhealthy = [m for m in c.members if not m.get("healthy")]
    if unhealthy:
        c.errors.append("refusing to change the etcd version: every member must be healthy first, and %s %s not: %s. Nothing was "
                        "changed; start or repair %s and run again"
                        % (names(m.get("name") or m.get("host") or m["id_hex"] for m in unhealthy),
                           "is" if len(unhealthy) == 1 else "are", "; ".join(c.unhealthy_lines(unhealthy)),
                           "it" if len(unhealthy) == 1 else "them"))
    learners = [m for m in c.members if m.get("is_learner")]
    if learners:
        c.errors.append("refusing to upgrade while a learner is in the cluster: %s; finish its join (scale.yml) "
                        "or remove it" % names(c.label(m) for m in learners))
    outside = [m for m in c.members if not m.get("host")]
    if outside:
        c.errors.append("members that are not in the inventory's etcd group cannot be upgraded: %s. Add them to "
                        "the etcd group or remove them (remove_node.yml -e node=NAME)"
                        % names(c.label(m) for m in outside))
    not_in_run = [m["host"] for m in c.members if m.get("host") and m["host"] not in c.play_hosts]
    if not_in_run:
        c.errors.append("every member takes part in an upgrade; %s %s not in this run (--limit?)"
                        % (names(not_in_run), "is" if len(not_in_run) == 1 else "are"))
    not_members = [h for h in c.etcd_hosts if h not in c.by_host]
    if not_members:
        c.warnings.append("%s %s in the etcd group but not a member yet: add %s with scale.yml after the upgrade"
                          % (names(not_members), "is" if len(not_members) == 1 else "are",
                             "it" if len(not_members) == 1 else "them"))
    todo = []
    refused = {}
    for member in c.members:
        host = member.get("host")
        version = (member.get("status") or {}).get("version")
        result["current"][host or member["id_hex"]] = version
        problem = c.version_step_problem(version, target, allow)
        if problem:
            refused.setdefault((version, problem), []).append(member.get("name") or host or member["id_hex"])
        installed = ((c.probe(host) or {}).get("binary") or {}).get("version") if host else None
        if host and (version != target or installed != target):
            todo.append(host)
    for (version, problem), who in sorted(refused.items()):
        c.errors.append("refusing to move %s from etcd %s: %s. Nothing was changed" % (names(who), version, problem))
    result["upgrade"] = c.order_leader_last(todo)
    result["leader"] = c.leader_host()
    result["snapshot_host"] = backup_host(c)
    return result


def backup_host(c):
    """A healthy member to take the snapshot on: a follower when there is one."""
    leader = c.leader_host()
    healthy = [m["host"] for m in c.voters if m.get("healthy") and m.get("host") in c.etcd_hosts
               and not (c.hosts.get(m["host"]) or {}).get("unreachable") and c.probe(m["host"])]
    healthy.sort(key=lambda h: (h == leader, c.etcd_hosts.index(h)))
    return healthy[0] if healthy else None


def plan_backup(c, data):
    host = backup_host(c)
    if host is None:
        c.errors.append("no healthy etcd member to take a snapshot from (%s)"
                        % "; ".join("%s: %s" % (h, ((c.probe(h) or {}).get("local") or {}).get("error") or "not asked")
                                    for h in c.etcd_hosts))
    return {"snapshot_host": host}


def plan_remove(c, data):
    node = data.get("remove")
    result = {"member": None, "anchor": None, "move_leader_to": None}
    if not c.view:
        c.errors.append("no etcd member other than %s answers, so the member cannot be removed safely" % node)
        return result
    info = c.hosts.get(node) or {}
    target = c.by_host.get(node) or next(
        (m for m in c.members if m.get("name") == (info.get("member_name") or node)
         or (info.get("peer_url") and info.get("peer_url") in (m.get("peer_urls") or []))), None)
    if target is None:
        target = next((m for m in c.members if m.get("id_hex") == node), None)
    result["anchor"] = c.anchor(exclude=(node,) + ((target.get("host"),) if target else ()))
    if result["anchor"] is None:
        c.errors.append("no healthy etcd member other than %s to run the removal from" % node)
    if target is None:
        result["already_removed"] = True
        return result
    remaining = [m for m in c.members if m is not target]
    if not [m for m in remaining if not m.get("is_learner")]:
        c.errors.append("%s is the last voting etcd member: removing it would destroy the cluster" % node)
        return result
    voters_after = len([m for m in remaining if not m.get("is_learner")])
    healthy_after = [m for m in remaining if not m.get("is_learner") and m.get("healthy")]
    if len(healthy_after) < quorum(voters_after):
        unhealthy = [m for m in remaining if not m.get("is_learner") and not m.get("healthy")]
        c.errors.append(
            "refusing to remove %s: afterwards %d of the %d remaining voting members would be healthy, less than "
            "a quorum (%d). Unhealthy: %s. Start or repair %s first, or remove %s first"
            % (c.label(target), len(healthy_after), voters_after, quorum(voters_after),
               "; ".join(c.unhealthy_lines(unhealthy)), "it" if len(unhealthy) == 1 else "them",
               "it" if len(unhealthy) == 1 else "one of them"))
    result.update(member={"id": target["id"], "id_hex": target["id_hex"], "name": target.get("name"),
                          "host": target.get("host"), "is_learner": target.get("is_learner"),
                          "endpoint": target.get("endpoint")},
                  voters_after=voters_after)
    leader = (c.view or {}).get("leader")
    if leader is not None and target.get("id") == leader and target.get("healthy"):
        successor = next((m for m in healthy_after), None)
        if successor:
            result["move_leader_to"] = {"id_hex": successor["id_hex"], "name": successor.get("name"),
                                        "leader_endpoint": target.get("endpoint")}
    if voters_after % 2 == 0:
        c.warnings.append("after the removal the cluster has %d voting members, an even number: it tolerates no "
                          "more failures than with %d" % (voters_after, voters_after - 1))
    return result


def plan_restore(c, data):
    result = {"initial_cluster": "", "wipe": []}
    missing = [h for h in c.etcd_hosts if h not in c.play_hosts]
    if missing:
        c.errors.append("a restore recreates every member at once; %s of the etcd group %s not in this run"
                        % (names(missing), "is" if len(missing) == 1 else "are"))
    busy = []
    for host in c.play_hosts:
        probe = c.probe(host) or {}
        reasons = []
        if probe.get("service", {}).get("active"):
            reasons.append("etcd runs")
        if probe.get("initialized"):
            reasons.append("holds member data")
        elif not probe.get("data_dir_empty", True):
            reasons.append("its data directory is not empty")
        if reasons:
            busy.append("%s (%s)" % (host, ", ".join(reasons)))
    if busy and not data.get("force"):
        c.errors.append("refusing to restore: %s. A restore replaces the data of every member; take a snapshot "
                        "(etcd_backup.yml), then run again with -e etcd_restore_force=true to stop etcd and move "
                        "the current data aside" % "; ".join(busy))
    result["wipe"] = [h for h in c.play_hosts if not (c.probe(h) or {}).get("data_dir_empty", True)
                      or (c.probe(h) or {}).get("service", {}).get("active")]
    result["initial_cluster"] = c.initial_cluster(c.etcd_hosts)
    return result


MODES = {"converge": plan_converge, "upgrade": plan_upgrade, "backup": plan_backup, "remove": plan_remove,
         "restore": plan_restore}


def plan(data):
    """The plan for ``data`` (see the module's docstring); refusals are in its ``errors``."""
    cluster = Cluster(data)
    mode = cluster.mode
    if mode not in MODES:
        raise Refusal("unknown mode %r" % mode)
    if mode in ("converge", "upgrade") and not data.get("target_version"):
        raise Refusal("the %s plan needs the etcd version to run (target_version)" % mode)
    result = MODES[mode](cluster, data)
    if mode in ("converge", "restore"):
        result["ca"] = cluster.ca()
    members = []
    for member in cluster.members:
        entry = {k: member.get(k) for k in ("id_hex", "name", "host", "endpoint", "peer_urls", "is_learner",
                                            "healthy", "error")}
        entry["version"] = (member.get("status") or {}).get("version")
        members.append(entry)
    result.update(
        mode=mode,
        cluster_exists=cluster.exists,
        view_from=cluster.view_host,
        members=members,
        leader=cluster.leader_host(),
        order=cluster.order_leader_last([m["host"] for m in cluster.members if m.get("host")]),
        voters=len(cluster.voters),
        healthy_voters=len(cluster.healthy_voters()),
        errors=cluster.errors,
        warnings=cluster.warnings,
    )
    result.setdefault("anchor", cluster.anchor())
    return result
