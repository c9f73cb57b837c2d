# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Read what an etcd member host holds and what its cluster says, without changing anything.

Runs on the member (Python 3.9+, standard library only) through ``ansible.builtin.script`` and
prints one JSON document:

- ``initialized``: the data directory holds a member (etcd would ignore the bootstrap settings);
- ``data_dir_empty``: nothing at all in the data directory;
- ``ca``: sha256 of the etcd CA certificate and key files (null when absent), to find the host that
  holds the CA and to notice two different CAs;
- ``binary``: the version of the installed etcd binary, and whether etcdctl and etcdutl exist;
- ``service``: systemd's view of etcd (active, enabled, start time) and ``stale``, the inputs
  (environment, unit, certificates, binary) changed after the running process started, i.e. what a
  restart would pick up;
- ``local``: health and status of this host's own member;
- ``cluster``: when the local member answers, the member list and every member's health and
  status as the cluster sees them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import grp
import os
import pwd
import re
import subprocess
import sys
import time

ETCDCTL_TIMEOUTS = ["--dial-timeout=2s", "--command-timeout=3s"]


def sha256_file(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def run(argv, timeout=30):
    """``(rc, stdout, stderr)``; rc 127 when the program is missing, 124 on timeout."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              universal_newlines=True, check=False)
    except FileNotFoundError:
        return 127, "", "%s: not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: no answer within %d s" % (" ".join(argv[:3]), timeout)
    return proc.returncode, proc.stdout, proc.stderr


def member_initialized(data_dir):
    """True when etcd would start this member from its data (a WAL exists)."""
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


def path_info(path):
    """Owner, group and mode of a directory, or None when it is absent (or not a directory)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return {"owner": _name(pwd.getpwuid, info.st_uid), "group": _name(grp.getgrgid, info.st_gid),
            "mode": "%04o" % (info.st_mode & 0o7777)}


def binary_version(path):
    rc, out, _err = run([path, "--version"], timeout=15)
    if rc != 0:
        return None
    match = re.search(r"etcd Version:\s*v?(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else None


def boot_time(proc="/proc"):
    with open(os.path.join(proc, "stat")) as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def process_start(pid, proc="/proc"):
    """Start time of ``pid`` in seconds since the epoch (float), or None."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as handle:
            text = handle.read()
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = text[text.rindex(")") + 2:].split()
        ticks = int(fields[19])
        return boot_time(proc) + ticks / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def systemd_state(unit):
    rc, out, _err = run(["systemctl", "show", unit, "--property=ActiveState,SubState,UnitFileState,MainPID,"
                         "NeedDaemonReload,LoadState"], timeout=15)
    props = {}
    if rc == 0:
        for line in out.splitlines():
            key, _sep, value = line.partition("=")
            props[key] = value
    pid = int(props.get("MainPID") or 0)
    return {
        "loaded": props.get("LoadState") == "loaded",
        "active": props.get("ActiveState") == "active",
        "state": "%s/%s" % (props.get("ActiveState", "unknown"), props.get("SubState", "unknown")),
        "enabled": props.get("UnitFileState") == "enabled",
        "need_daemon_reload": props.get("NeedDaemonReload") == "yes",
        "pid": pid,
        "started_at": process_start(pid) if pid else None,
    }


def stale_inputs(paths, started_at):
    """Inputs whose inode changed after the process started (ctime: a rename or write sets it)."""
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


def _json_or_none(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _first_line(text):
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:300]
    return (text or "").strip()[:300]


class Etcdctl:
    def __init__(self, binary, cacert, cert, key):
        self.base = [binary, "--cacert=" + cacert, "--cert=" + cert, "--key=" + key] + ETCDCTL_TIMEOUTS

    def call(self, endpoints, *args):
        return run(self.base + ["--endpoints=" + ",".join(endpoints), "-w", "json"] + list(args), timeout=60)


def endpoint_health(ctl, endpoints):
    """``{endpoint: {"healthy": bool, "error": str}}`` for every endpoint asked."""
    result = {ep: {"healthy": False, "error": "no answer"} for ep in endpoints}
    if not endpoints:
        return result
    _rc, out, err = ctl.call(endpoints, "endpoint", "health")
    for item in _json_or_none(out) or []:
        ep = item.get("endpoint")
        if ep in result:
            result[ep] = {"healthy": bool(item.get("health")), "error": item.get("error") or ""}
    if not out.strip():
        for ep in endpoints:
            result[ep]["error"] = _first_line(err) or "no answer"
    return result


def endpoint_status(ctl, endpoints):
    """``{endpoint: status}`` for the endpoints that answered."""
    found = {}
    if not endpoints:
        return found
    _rc, out, _err = ctl.call(endpoints, "endpoint", "status")
    for item in _json_or_none(out) or []:
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


def member_list(ctl, endpoints):
    rc, out, err = ctl.call(endpoints, "member", "list")
    data = _json_or_none(out) if rc == 0 else None
    if not data:
        return None, _first_line(err) or "member list failed"
    members = []
    for item in data.get("members") or []:
        members.append({
            "id": item.get("ID"),
            "id_hex": "%x" % item.get("ID", 0),
            "name": item.get("name") or "",
            "peer_urls": item.get("peerURLs") or [],
            "client_urls": item.get("clientURLs") or [],
            "is_learner": bool(item.get("isLearner")),
        })
    return {"members": members, "cluster_id": (data.get("header") or {}).get("cluster_id")}, ""


def cluster_view(ctl, local_endpoint):
    """Members, each with its health and status, as seen through the local member."""
    listed, error = member_list(ctl, [local_endpoint])
    if listed is None:
        return None, error
    endpoints = sorted({url for m in listed["members"] for url in m["client_urls"][:1]})
    health = endpoint_health(ctl, endpoints)
    status = endpoint_status(ctl, endpoints)
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


def probe(args):
    pki = args.pki_dir
    out = {
        "initialized": member_initialized(args.data_dir),
        "data_dir_empty": directory_empty(args.data_dir),
        "ca": {"cert": sha256_file(os.path.join(pki, "ca.crt")), "key": sha256_file(os.path.join(pki, "ca.key"))},
        "binary": {
            "version": binary_version(os.path.join(args.bin_dir, "etcd")),
            "etcdctl": os.access(os.path.join(args.bin_dir, "etcdctl"), os.X_OK),
            "etcdutl": os.access(os.path.join(args.bin_dir, "etcdutl"), os.X_OK),
        },
        "service": systemd_state(args.unit),
        "user": user_info(args.user),
        "directories": {path: path_info(path) for path in args.directory or []},
        "local": {"endpoint": args.endpoint, "healthy": False, "status": None, "error": ""},
        "cluster": None,
        "cluster_error": "",
    }
    service = out["service"]
    service["stale"] = stale_inputs(args.input or [], service["started_at"]) if service["active"] else []
    client = [os.path.join(pki, "ca.crt"), os.path.join(pki, "healthcheck-client.crt"),
              os.path.join(pki, "healthcheck-client.key")]
    if not service["active"]:
        out["local"]["error"] = "etcd is not running (%s)" % service["state"]
        return out
    if not out["binary"]["etcdctl"] or not all(os.path.exists(p) for p in client):
        out["local"]["error"] = "no etcdctl or no client certificate to ask the member with"
        return out
    ctl = Etcdctl(os.path.join(args.bin_dir, "etcdctl"), *client)
    status = endpoint_status(ctl, [args.endpoint]).get(args.endpoint)
    health = endpoint_health(ctl, [args.endpoint])[args.endpoint]
    learner = bool(status and status.get("is_learner"))
    out["local"].update(status=status, healthy=bool(status) and (health["healthy"] or learner),
                        error="" if status and (health["healthy"] or learner) else health["error"])
    if status and args.cluster:
        out["cluster"], out["cluster_error"] = cluster_view(ctl, args.endpoint)
    return out


def unhealthy_members(result, want_version=None):
    """Why ``result`` (a probe) does not show a fully healthy cluster; empty when it does."""
    problems = []
    local = result["local"]
    if not local["healthy"]:
        problems.append("this member (%s): %s" % (local["endpoint"], local["error"] or "unhealthy"))
    elif want_version and (local["status"] or {}).get("version") != want_version:
        problems.append("this member runs etcd %s, not %s" % ((local["status"] or {}).get("version"), want_version))
    cluster = result.get("cluster")
    if cluster is None:
        if local["healthy"]:
            problems.append("the member list cannot be read: %s" % (result.get("cluster_error") or "no answer"))
        return problems
    for member in cluster["members"]:
        if not member["healthy"]:
            problems.append("%s (id %s, %s): %s" % (member["name"] or "(unstarted)", member["id_hex"],
                                                    member["endpoint"] or ",".join(member["peer_urls"]),
                                                    member["error"] or "unhealthy"))
        elif member["is_learner"]:
            problems.append("%s (id %s) is still a learner" % (member["name"], member["id_hex"]))
    return problems


def wait(args):
    """Probe until this member and every member of its cluster are healthy, or give up."""
    deadline = time.time() + args.wait
    while True:
        result = probe(args)
        problems = unhealthy_members(result, args.want_version)
        if not problems:
            return result, []
        if time.time() >= deadline:
            return result, problems
        time.sleep(2)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--pki-dir", required=True)
    parser.add_argument("--bin-dir", default="/usr/local/bin")
    parser.add_argument("--unit", default="etcd.service")
    parser.add_argument("--endpoint", required=True, help="this member's client URL, e.g. https://127.0.0.1:2379")
    parser.add_argument("--input", action="append", help="a file the running etcd read at start (repeatable)")
    parser.add_argument("--user", default="etcd", help="the user etcd runs as")
    parser.add_argument("--directory", action="append", help="a directory to report owner and mode of (repeatable)")
    parser.add_argument("--cluster", action="store_true", help="also read the member list and every member's health")
    parser.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                        help="wait until this member and every member are healthy; exit 1 when they are not in time")
    parser.add_argument("--want-version", help="with --wait: also wait until this member runs that version")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.wait:
        json.dump(probe(args), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    args.cluster = True
    result, problems = wait(args)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    if problems:
        sys.stderr.write("etcd is not healthy after %d s, seen from %s:\n  %s\n"
                         % (args.wait, args.endpoint, "\n  ".join(problems)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
