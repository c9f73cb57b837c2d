# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""What an etcd member host holds and what its cluster says, read without changing anything.

Runs on the member (Python 3.9+, standard library only) inside the ``etcd_member`` module. Programs
(``etcd``, ``etcdctl``, ``systemctl``) are run through a ``run(argv, timeout)`` callable that returns
``(rc, stdout, stderr)`` with rc 127 for a missing program and 124 for one that gave no answer in
time; :func:`command_runner` builds it on top of ``AnsibleModule.run_command``.

:func:`probe` returns one dict:

- ``initialized``: the data directory holds a member (etcd would ignore the bootstrap settings);
- ``data_dir_empty``: nothing at all in the data directory;
- ``ca``: sha256 of the etcd CA certificate and key files (null when absent), to find the host that
  holds the CA and to notice two different CAs;
- ``binary``: the version of the installed etcd binary, and whether etcdctl and etcdutl exist;
- ``service``: systemd's view of etcd (active, enabled, start time) and ``stale``, the inputs
  (settings, unit, certificates, binary) changed after the running process started, i.e. what a
  restart would pick up;
- ``user``, ``directories`` and ``files``: the etcd user, the owner and mode of the role's
  directories, and the content (sha256), owner and mode of its settings files;
- ``local``: health and status of this host's own member;
- ``cluster``: when the local member answers and the cluster is asked for, the member list and
  every member's health and status as the cluster sees them.

:func:`wait` probes until this member and every member of its cluster are healthy, or gives up.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import time

ETCDCTL_TIMEOUTS = ["--dial-timeout=2s", "--command-timeout=3s"]
# the keys of a probe, in the order they are documented
PROBE_KEYS = ("initialized", "data_dir_empty", "ca", "binary", "service", "user", "directories", "files",
              "local", "cluster", "cluster_error")
VERSION_RE = re.compile(r"etcd Version:\s*v?(\d+\.\d+\.\d+)")
SYSTEMD_PROPERTIES = ("ActiveState", "SubState", "UnitFileState", "MainPID", "NeedDaemonReload", "LoadState")


# -- running programs ----------------------------------------------------------------------------

def command_runner(run_command, timeout_program=None):
    """``run(argv, timeout)`` on top of ``run_command(argv) -> (rc, out, err)``, which has no timeout.

    With ``timeout_program`` (coreutils ``timeout``) a program that does not finish in time is
    stopped and reported with rc 124; a missing program is rc 127 either way.
    """

    def run(argv, timeout):
        argv = [str(a) for a in argv]
        wrapped = argv
        if timeout_program:
            wrapped = [timeout_program, "--kill-after=5", "%d" % timeout] + argv
        try:
            rc, out, err = run_command(wrapped)
        except FileNotFoundError:
            return 127, "", "%s: not found" % argv[0]
        except OSError as exc:
            return 126, "", "%s: %s" % (argv[0], exc)
        if timeout_program and rc in (124, 137):
            return 124, out or "", "%s: no answer within %d s" % (" ".join(argv[:3]), timeout)
        if rc == 127 and not os.path.exists(argv[0]):
            return 127, out or "", "%s: not found" % argv[0]
        return rc, out or "", err or ""

    return run


# -- files and users -----------------------------------------------------------------------------

def sha256_file(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def member_initialized(data_dir):
    """True when etcd would start this member from its data (a WAL file exists)."""
    wal = os.path.join(data_dir, "member", "wal")
    try:
        return any(name.endswith(".wal") for name in os.listdir(wal))
    except OSError:
        return False


def directory_empty(path):
    try:
        return not os.listdir(path)
    except OSError:
        return True


def user_info(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {"uid": entry.pw_uid, "home": entry.pw_dir, "shell": entry.pw_shell}


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def _owner_and_mode(info):
    return {"owner": _name(pwd.getpwuid, info.st_uid), "group": _name(grp.getgrgid, info.st_gid),
            "mode": "%04o" % (info.st_mode & 0o7777)}


def path_info(path):
    """Owner, group and mode of a directory, or None when it is absent (or not a directory)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return _owner_and_mode(info)


def file_info(path):
    """sha256, owner, group and mode of a regular file, or None when it is absent (or not a file)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    digest = sha256_file(path) if os.path.isfile(path) else None
    if digest is None:
        return None
    return dict(_owner_and_mode(info), sha256=digest)


# -- the binary and the service -------------------------------------------------------------------

def parse_version(text):
    """The version in the output of ``etcd --version`` (``etcd Version: 3.5.30``), or None."""
    match = VERSION_RE.search(text or "")
    return match.group(1) if match else None


def binary_version(run, path):
    rc, out, _err = run([path, "--version"], 15)
    return parse_version(out) if rc == 0 else None


def boot_time(proc="/proc"):
    """The time the machine booted (``btime`` of ``/proc/stat``), in seconds since the epoch."""
    with open(os.path.join(proc, "stat")) as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise ValueError("no btime in %s/stat" % proc)


def process_start(pid, proc="/proc", clock_ticks=None):
    """Start time of ``pid`` in seconds since the epoch (float), or None when it cannot be read."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as handle:
            text = handle.read()
        # the command name may hold spaces and parentheses: the fields start after the last ')'
        fields = text[text.rindex(")") + 2:].split()
        ticks = int(fields[19])  # field 22 of proc(5): starttime, in clock ticks after boot
        return boot_time(proc) + ticks / float(clock_ticks or os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def parse_systemctl_show(text):
    """``KEY=VALUE`` lines of ``systemctl show`` as a dict."""
    props = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def service_state(props, proc="/proc", clock_ticks=None):
    """systemd's view of a unit from its properties (see :func:`parse_systemctl_show`)."""
    try:
        pid = int(props.get("MainPID") or 0)
    except ValueError:
        pid = 0
    return {
        "loaded": props.get("LoadState") == "loaded",
        "active": props.get("ActiveState") == "active",
        "state": "%s/%s" % (props.get("ActiveState", "unknown"), props.get("SubState", "unknown")),
        "enabled": props.get("UnitFileState") == "enabled",
        "need_daemon_reload": props.get("NeedDaemonReload") == "yes",
        "pid": pid,
        "started_at": process_start(pid, proc, clock_ticks) if pid else None,
    }


def systemd_state(run, unit, proc="/proc"):
    rc, out, _err = run(["systemctl", "show", unit, "--property=" + ",".join(SYSTEMD_PROPERTIES)], 15)
    return service_state(parse_systemctl_show(out) if rc == 0 else {}, proc)


def stale_inputs(paths, started_at):
    """The inputs changed after the process started: a restart would pick them up.

    The change time (ctime) counts, not the modification time: writing a file and replacing it by
    a rename both set it, and nothing but the kernel can set it back.
    """
    if started_at is None:
        return []
    stale = []
    for path in paths:
        try:
            if os.stat(path).st_ctime > started_at:
                stale.append(path)
        except OSError:
            continue
    return stale


# -- etcdctl ------------------------------------------------------------------------------------

def _json_or_none(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def first_line(text):
    """The first line of a program's error output that is not one of etcd's JSON log lines."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:300]
    return (text or "").strip()[:300]


def parse_endpoint_health(out, err, endpoints):
    """``{endpoint: {"healthy": bool, "error": str}}`` for every endpoint asked, from
    ``etcdctl endpoint health -w json``."""
    result = {ep: {"healthy": False, "error": "no answer"} for ep in endpoints}
    items = _json_or_none(out)
    for item in items if isinstance(items, list) else []:
        ep = item.get("endpoint")
        if ep in result:
            result[ep] = {"healthy": bool(item.get("health")), "error": item.get("error") or ""}
    if not (out or "").strip():
        for ep in endpoints:
            result[ep]["error"] = first_line(err) or "no answer"
    return result


def parse_endpoint_status(out):
    """``{endpoint: status}`` for the endpoints that answered ``etcdctl endpoint status -w json``."""
    found = {}
    items = _json_or_none(out)
    for item in items if isinstance(items, list) else []:
        status = item.get("Status") or {}
        header = status.get("header") or {}
        found[item.get("Endpoint")] = {
            "member_id": header.get("member_id"),
            "cluster_id": header.get("cluster_id"),
            "revision": header.get("revision", 0),
            "version": status.get("version"),
            "leader": status.get("leader"),
            "raft_index": status.get("raftIndex"),
            "raft_applied_index": status.get("raftAppliedIndex"),
            "db_size": status.get("dbSize"),
            "is_learner": bool(status.get("isLearner")),
            "errors": status.get("errors") or [],
        }
    return found


def parse_member_list(rc, out, err):
    """``({"members": [...], "cluster_id": id}, "")`` from ``etcdctl member list -w json``, or
    ``(None, why)``. A member added but never started has no name and no client URL."""
    data = _json_or_none(out) if rc == 0 else None
    if not isinstance(data, dict):
        return None, first_line(err) or "member list failed"
    members = []
    for item in data.get("members") or []:
        members.append({
            "id": item.get("ID"),
            "id_hex": "%x" % (item.get("ID") or 0),
            "name": item.get("name") or "",
            "peer_urls": item.get("peerURLs") or [],
            "client_urls": item.get("clientURLs") or [],
            "is_learner": bool(item.get("isLearner")),
        })
    return {"members": members, "cluster_id": (data.get("header") or {}).get("cluster_id")}, ""


class Etcdctl:
    """etcdctl with the client certificate the role asks members with."""

    def __init__(self, run, binary, cacert, cert, key):
        self.run = run
        self.base = [binary, "--cacert=" + cacert, "--cert=" + cert, "--key=" + key] + ETCDCTL_TIMEOUTS

    def call(self, endpoints, *args):
        return self.run(self.base + ["--endpoints=" + ",".join(endpoints), "-w", "json"] + list(args), 60)

    def health(self, endpoints):
        if not endpoints:
            return {}
        _rc, out, err = self.call(endpoints, "endpoint", "health")
        return parse_endpoint_health(out, err, endpoints)

    def status(self, endpoints):
        if not endpoints:
            return {}
        _rc, out, _err = self.call(endpoints, "endpoint", "status")
        return parse_endpoint_status(out)

    def members(self, endpoints):
        return parse_member_list(*self.call(endpoints, "member", "list"))


def cluster_view(ctl, local_endpoint):
    """Members, each with its health and status, as seen through the local member."""
    listed, error = ctl.members([local_endpoint])
    if listed is None:
        return None, error
    endpoints = sorted({url for m in listed["members"] for url in m["client_urls"][:1]})
    health = ctl.health(endpoints)
    status = ctl.status(endpoints)
    leader = None
    for member in listed["members"]:
        url = member["client_urls"][0] if member["client_urls"] else None
        state = status.get(url) if url else None
        member["endpoint"] = url
        member["started"] = bool(member["name"]) and bool(member["client_urls"])
        member["status"] = state
        if url is None:
            member["healthy"] = False
            member["error"] = "added to the cluster but never started"
        elif member["is_learner"]:
            # a learner refuses the linearizable read of a health check; answering its status counts
            member["healthy"] = state is not None
            member["error"] = "" if state is not None else health[url]["error"]
        else:
            member["healthy"] = health[url]["healthy"] and state is not None
            member["error"] = "" if member["healthy"] else (health[url]["error"] or "no status")
        if state and state.get("leader"):
            leader = leader or state["leader"]
    listed["leader"] = leader
    return listed, ""


# -- the probe ----------------------------------------------------------------------------------

def probe(run, data_dir, pki_dir, endpoint, bin_dir="/usr/local/bin", unit="etcd.service", inputs=(),
          user="etcd", directories=(), files=(), cluster=False, proc="/proc"):
    """What this member holds and, when etcd runs, what it (and with ``cluster``, its cluster) says."""
    out = {
        "initialized": member_initialized(data_dir),
        "data_dir_empty": directory_empty(data_dir),
        "ca": {"cert": sha256_file(os.path.join(pki_dir, "ca.crt")),
               "key": sha256_file(os.path.join(pki_dir, "ca.key"))},
        "binary": {
            "version": binary_version(run, os.path.join(bin_dir, "etcd")),
            "etcdctl": os.access(os.path.join(bin_dir, "etcdctl"), os.X_OK),
            "etcdutl": os.access(os.path.join(bin_dir, "etcdutl"), os.X_OK),
        },
        "service": systemd_state(run, unit, proc),
        "user": user_info(user),
        "directories": {path: path_info(path) for path in directories or ()},
        "files": {path: file_info(path) for path in files or ()},
        "local": {"endpoint": endpoint, "healthy": False, "status": None, "error": ""},
        "cluster": None,
        "cluster_error": "",
    }
    service = out["service"]
    service["stale"] = stale_inputs(inputs or (), service["started_at"]) if service["active"] else []
    client = [os.path.join(pki_dir, "ca.crt"), os.path.join(pki_dir, "healthcheck-client.crt"),
              os.path.join(pki_dir, "healthcheck-client.key")]
    if not service["active"]:
        out["local"]["error"] = "etcd is not running (%s)" % service["state"]
        return out
    if not out["binary"]["etcdctl"] or not all(os.path.exists(p) for p in client):
        out["local"]["error"] = "no etcdctl or no client certificate to ask the member with"
        return out
    ctl = Etcdctl(run, os.path.join(bin_dir, "etcdctl"), *client)
    status = ctl.status([endpoint]).get(endpoint)
    health = ctl.health([endpoint])[endpoint]
    learner = bool(status and status.get("is_learner"))
    answered = bool(status) and (health["healthy"] or learner)
    out["local"].update(status=status, healthy=answered, error="" if answered else health["error"])
    if status and cluster:
        out["cluster"], out["cluster_error"] = cluster_view(ctl, endpoint)
    return out


def unhealthy_members(result, want_version=None):
    """Why ``result`` (a probe) does not show a fully healthy cluster; empty when it does."""
    problems = []
    local = result["local"]
    if not local["healthy"]:
        problems.append("this member (%s): %s" % (local["endpoint"], local["error"] or "unhealthy"))
    elif want_version and (local["status"] or {}).get("version") != want_version:
        problems.append("this member runs etcd %s, not %s" % ((local["status"] or {}).get("version"), want_version))
    view = result.get("cluster")
    if view is None:
        if local["healthy"]:
            problems.append("the member list cannot be read: %s" % (result.get("cluster_error") or "no answer"))
        return problems
    for member in view["members"]:
        if not member["healthy"]:
            problems.append("%s (id %s, %s): %s" % (member["name"] or "(unstarted)", member["id_hex"],
                                                    member["endpoint"] or ",".join(member["peer_urls"]),
                                                    member["error"] or "unhealthy"))
        elif member["is_learner"]:
            problems.append("%s (id %s) is still a learner" % (member["name"], member["id_hex"]))
    return problems


def wait(run, timeout, want_version=None, interval=2.0, clock=time.time, sleep=time.sleep, **settings):
    """Probe (with the cluster) until this member and every member are healthy, or ``timeout``
    seconds have passed: ``(last probe, problems)``, problems empty on success."""
    settings["cluster"] = True
    deadline = clock() + timeout
    while True:
        result = probe(run, **settings)
        problems = unhealthy_members(result, want_version)
        if not problems or clock() >= deadline:
            return result, problems
        sleep(interval)


def not_healthy_message(timeout, endpoint, problems):
    return "etcd is not healthy after %d s, seen from %s:\n  %s" % (timeout, endpoint, "\n  ".join(problems))
