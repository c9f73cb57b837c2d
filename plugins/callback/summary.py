# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A summary a person can read at the end of every run, and the same data as JSON."""

from __future__ import annotations

DOCUMENTATION = r"""
name: summary
type: aggregate
short_description: One table at the end of a run, per host and role, with the cluster and the plan
description:
  - At the end of every playbook, prints one table of what happened on each host in each role
    (ok, changed, skipped, failed, seconds spent), the cluster as the run saw it (nodes, versions,
    API endpoint, where C(admin.conf) is) and, for a run with C(--check), the plan - what would
    change, per host and file. A run that failed ends with its first failure, as the command line
    showed it.
  - Writes the same data as JSON. Under ansible-runner (and so AWX and Automation Controller), it
    goes to C(kubeforge_summary.json) in the run's artifacts directory without any setting.
  - While a task runs for longer than O(progress_interval) seconds (downloads, waits for a
    service, a rollout or a node), prints how long it has run, how many hosts are done and which
    ones it still waits for.
  - Tasks outside any role are counted under C(play:<name of the play>). Includes are counted as
    the summary at the end of C(ansible-playbook) counts them, so the counts of each host add up
    to its line in the play recap.
requirements:
  - Enabled in C(ansible.cfg) (C(callbacks_enabled = kubeforge.cluster.summary) in C([defaults]))
    or with the environment variable C(ANSIBLE_CALLBACKS_ENABLED=kubeforge.cluster.summary).
author:
  - kubeforge.cluster contributors (@kubeforge)
options:
  json_path:
    description:
      - Also write the summary as JSON to this file (replaced at the end of each run).
      - Empty, under ansible-runner, means C(kubeforge_summary.json) in the run's artifacts
        directory (the C(AWX_ISOLATED_DATA_DIR) ansible-runner sets); otherwise no file is written.
    type: path
    env:
      - name: KUBEFORGE_SUMMARY_JSON
    ini:
      - section: kubeforge_summary
        key: json_path
  json_in_output:
    description:
      - Also print the JSON summary, on one line that starts with C(KUBEFORGE_SUMMARY_JSON ),
        after the table. For AWX and Automation Controller, which keep a job's output and events
        but not its artifacts directory.
    type: bool
    default: false
    env:
      - name: KUBEFORGE_SUMMARY_JSON_IN_OUTPUT
    ini:
      - section: kubeforge_summary
        key: json_in_output
  progress_interval:
    description:
      - Seconds a task may run before a progress line is printed, and between two such lines.
        C(0) turns progress lines off.
    type: int
    default: 20
    env:
      - name: KUBEFORGE_SUMMARY_PROGRESS_INTERVAL
    ini:
      - section: kubeforge_summary
        key: progress_interval
  max_changes:
    description:
      - Lines of changes (or of the plan, with C(--check)) printed in the table; the JSON always
        holds all of them.
    type: int
    default: 40
    env:
      - name: KUBEFORGE_SUMMARY_MAX_CHANGES
    ini:
      - section: kubeforge_summary
        key: max_changes
notes:
  - The JSON holds C(format) (1), C(playbook), C(status) (C(successful) or C(failed)),
    C(check_mode), C(limit), C(started), C(finished), C(seconds), C(error) (null, or the C(host),
    C(task), C(role) and C(msg) of the first failure), C(recap) (the play recap, per host),
    C(hosts) (per host its C(status), its first C(error) and its C(roles), each with the counts
    and C(seconds)), C(plays),
    C(cluster) (C(name), C(versions), C(endpoint), C(admin_conf), C(nodes)) and C(changes) (per
    host, each changed task with its C(role), C(task) and C(targets)). See docs/automation.md.
"""

import atexit
import datetime
import json
import os
import threading
import time

from ansible import context
from ansible.module_utils.common.text.converters import to_text
from ansible.playbook.role_include import IncludeRole
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback import CallbackBase

from ansible_collections.kubeforge.cluster.plugins.module_utils import files

FORMAT = 1
SUMMARY_FILE = "kubeforge_summary.json"
OUTPUT_PREFIX = "KUBEFORGE_SUMMARY_JSON "
COUNTERS = ("ok", "changed", "skipped", "failed", "unreachable", "ignored")
# The collection's inventory groups, as the table names them.
NODE_GROUPS = (("kube_control_plane", "control plane"), ("etcd", "etcd"), ("kube_node", "worker"))
ADMIN_CONF = "/etc/kubernetes/admin.conf"
# cluster settings (as the inventory check resolves them) -> name in the summary
VERSION_SETTINGS = (
    ("kubernetes", "kubeforge_kubernetes_version"),
    ("etcd", "kubeforge_etcd_version"),
    ("containerd", "kubeforge_containerd_version"),
    ("runc", "kubeforge_runc_version"),
    ("cni_plugins", "kubeforge_cni_plugins_version"),
    ("crictl", "kubeforge_crictl_version"),
)
# what a host's kernel_settings result says of a sysctl it set (or would set, in check mode)
_SYSCTL_CHANGED = ("applied", "would set", "set")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment):
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def task_name(task):
    """A task's own name, without the role prefix ansible-playbook adds."""
    return to_text(task.name or task.action or "").strip()


def _result_parts(result):
    """(host name, task, result dict) of a callback's task result, on ansible-core 2.17 to 2.21."""
    host = getattr(result, "host", None) or getattr(result, "_host")
    task = getattr(result, "task", None) or getattr(result, "_task")
    data = getattr(result, "result", None)
    if data is None:
        data = getattr(result, "_result")
    return host.get_name(), task, data


def short_role_name(name):
    """'kubeforge.cluster.etcd' -> 'etcd' (a role's name without its collection)."""
    return to_text(name).rsplit(".", 1)[-1]


def group_label(task, play_name):
    """The row a task's result is counted in: its role, or the play for tasks outside roles."""
    if isinstance(task, IncludeRole):
        # the include's own result belongs to the role it brings in
        return short_role_name(task._role_name)
    role = getattr(task, "_role", None)
    if role is not None:
        return role.get_name(include_role_fqcn=False)
    return f"play:{play_name}"


def changed_targets(data):
    """What a changed result changed, as far as the result says: paths from diffs, ``dest`` or
    ``path``, loop items, and entries of list or mapping returns that carry their own ``changed``
    (the collection's batch modules), plus sysctls. Empty when the result names nothing."""
    found = []

    def add(value):
        if isinstance(value, str) and value and value not in found:
            found.append(value)

    def add_path(value):
        if isinstance(value, str) and value.startswith("/"):
            add(value)

    diffs = data.get("diff")
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        if isinstance(diff, dict):
            for key in ("after_header", "before_header"):
                add_path(diff.get(key))
    add_path(data.get("dest"))
    add_path(data.get("path"))
    invocation = data.get("invocation")
    arguments = invocation.get("module_args") if isinstance(invocation, dict) else None
    if isinstance(arguments, dict):
        for key in ("dest", "path"):
            add_path(arguments.get(key))
    for key, value in data.items():
        if key == "results" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and item.get("changed"):
                    for target in changed_targets(item):
                        add(target)
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict) and entry.get("changed"):
                    add_path(entry.get("dest"))
                    add_path(entry.get("path"))
        elif isinstance(value, dict) and key not in ("diff", "invocation", "ansible_facts"):
            for name, entry in value.items():
                if not isinstance(entry, dict):
                    continue
                if key == "sysctl" and entry.get("state") in _SYSCTL_CHANGED:
                    add(f"sysctl {name}")
                elif entry.get("changed"):
                    files = entry.get("files")
                    for path in files if isinstance(files, list) else []:
                        add_path(path)
                    add_path(entry.get("dest"))
                    add_path(entry.get("path"))
    return found


def failure_message(data):
    """The message a failed (or unreachable) result gives, as ansible-playbook shows it."""
    for key in ("msg", "reason", "stderr", "module_stderr"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    results = data.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                message = failure_message(item)
                if message:
                    return message
    return "failed without a message"


class RunState:
    """Everything the summary holds, fed by the callback's events. Pure bookkeeping: unit tests
    drive it without Ansible."""

    def __init__(self, playbook="", check_mode=False, limit=None, clock=time.monotonic):
        self.clock = clock
        self.playbook = playbook
        self.check_mode = bool(check_mode)
        self.limit = limit
        self.started = _now()
        self.started_clock = clock()
        self.hosts = {}        # host -> {label: counters}
        self.plays = []        # [{name, started, seconds}]
        self.changes = {}      # host -> [{role, task, targets}]
        self.errors = []       # [{host, task, role, msg}]
        self.settings = {}
        self.host_facts = {}   # host -> kubeforge_host facts
        self.admin_conf_hosts = []
        self.task_starts = {}  # (host, task uuid) -> clock

    # --- events ---------------------------------------------------------------------------
    def play_start(self, name):
        now = self.clock()
        self._close_play(now)
        self.plays.append({"name": name, "started": now, "seconds": None})

    def _close_play(self, now):
        if self.plays and self.plays[-1]["seconds"] is None:
            self.plays[-1]["seconds"] = round(now - self.plays[-1]["started"], 2)

    def host_start(self, host, task_id):
        self.task_starts[(host, task_id)] = self.clock()

    def _row(self, host, label):
        rows = self.hosts.setdefault(host, {})
        if label not in rows:
            rows[label] = dict.fromkeys(COUNTERS, 0)
            rows[label]["seconds"] = 0.0
        return rows[label]

    def result(self, host, task_id, label, task_name, kind, data, counted=True, ignore_errors=False,
               fallback_start=None, task_args=()):
        """One task result of one host. ``kind``: ok, failed, skipped or unreachable. ``counted``
        is false for an include's own result (counted when its file is loaded, see included()).
        ``task_args``: the task's literal dest/path arguments, named when the result names no file."""
        row = self._row(host, label)
        start = self.task_starts.pop((host, task_id), fallback_start)
        if start is not None:
            row["seconds"] = round(row["seconds"] + max(self.clock() - start, 0.0), 3)
        if not counted:
            return
        changed = bool(data.get("changed"))
        if kind == "ok":
            row["ok"] += 1
            row["changed"] += int(changed)
        elif kind == "skipped":
            row["skipped"] += 1
        elif kind == "failed":
            if ignore_errors:
                row["ok"] += 1
                row["ignored"] += 1
                row["changed"] += int(changed)
            else:
                row["failed"] += 1
                self.errors.append({"host": host, "task": task_name, "role": label, "msg": failure_message(data)})
        elif kind == "unreachable":
            if ignore_errors:
                row["ok"] += 1
                row["ignored"] += 1
            else:
                row["unreachable"] += 1
                self.errors.append({"host": host, "task": task_name, "role": label,
                                    "msg": failure_message(data), "unreachable": True})
        if changed and kind in ("ok", "failed"):
            targets = changed_targets(data) or [a for a in task_args if isinstance(a, str) and a.startswith("/") and "{{" not in a]
            self.changes.setdefault(host, []).append({"role": label, "task": task_name, "targets": targets})
        self._observe(host, data)

    def included(self, hosts, label):
        for host in hosts:
            self._row(host, label)["ok"] += 1

    def _observe(self, host, data):
        if isinstance(data.get("settings"), dict) and "kubeforge_kubernetes_version" in data["settings"]:
            self.settings = dict(data["settings"])
        facts = data.get("ansible_facts")
        if isinstance(facts, dict) and isinstance(facts.get("kubeforge_host"), dict):
            self.host_facts[host] = facts["kubeforge_host"]
        for entry in data.get("kubeconfigs") or []:
            if isinstance(entry, dict) and entry.get("dest") == ADMIN_CONF and host not in self.admin_conf_hosts:
                self.admin_conf_hosts.append(host)
        if data.get("dest") == ADMIN_CONF and host not in self.admin_conf_hosts:
            self.admin_conf_hosts.append(host)

    # --- the summary ----------------------------------------------------------------------
    def summary(self, recap, inventory=None):
        """The summary as plain data. ``recap``: host -> Ansible's stats for it (ok, changed,
        unreachable, failures, skipped, rescued, ignored). ``inventory``: {'groups': {group:
        [hosts]}, 'hosts': {host: {'ansible_host', 'ip'}}} or None."""
        now = self.clock()
        self._close_play(now)
        failed = any(r.get("failures") or r.get("unreachable") for r in recap.values())
        hosts = {}
        for host in sorted(set(self.hosts) | set(recap)):
            stats = recap.get(host, {})
            if stats.get("unreachable"):
                status = "unreachable"
            elif stats.get("failures"):
                status = "failed"
            elif stats.get("changed"):
                status = "changed"
            else:
                status = "ok"
            first = next((e for e in self.errors if e["host"] == host), None)
            hosts[host] = {"status": status, "roles": self.hosts.get(host, {}),
                           "error": {k: v for k, v in first.items() if k != "host"} if first else None}
        return {
            "format": FORMAT,
            "playbook": self.playbook,
            "status": "failed" if failed else "successful",
            "check_mode": self.check_mode,
            "limit": self.limit,
            "started": _iso(self.started),
            "finished": _iso(_now()),
            "seconds": round(now - self.started_clock, 2),
            "error": self.errors[0] if failed and self.errors else None,
            "recap": recap,
            "hosts": hosts,
            "plays": [{"name": p["name"], "seconds": p["seconds"]} for p in self.plays],
            "cluster": self.cluster(inventory or {}),
            "changes": self.changes,
        }

    def cluster(self, inventory):
        groups = inventory.get("groups") or {}
        addresses = inventory.get("hosts") or {}
        members = {}
        for group, _label in NODE_GROUPS:
            for host in groups.get(group) or []:
                members.setdefault(host, []).append(group)
        nodes = {}
        for host in sorted(members):
            facts = self.host_facts.get(host, {})
            hostvars = addresses.get(host, {})
            nodes[host] = {
                "groups": members[host],
                "address": to_text(hostvars.get("ip") or hostvars.get("ansible_host") or host),
                "os": facts.get("os_pretty"),
                "arch": facts.get("arch"),
                "found": facts.get("artifacts") or {},
            }
        settings = self.settings
        control_planes = [h for h in (groups.get("kube_control_plane") or []) if h in nodes]
        endpoint, endpoint_source = None, None
        if settings.get("kubeforge_api_endpoint"):
            endpoint, endpoint_source = f"https://{settings['kubeforge_api_endpoint']}", "kubeforge_api_endpoint"
        elif control_planes and settings:
            port = settings.get("kubeforge_apiserver_port") or 6443
            endpoint = f"https://{nodes[control_planes[0]]['address']}:{port}"
            endpoint_source = "first control plane"
        return {
            "name": settings.get("kubeforge_cluster_name"),
            "versions": {name: settings.get(key) for name, key in VERSION_SETTINGS if settings.get(key)},
            "endpoint": endpoint,
            "endpoint_source": endpoint_source,
            "admin_conf": {
                "path": ADMIN_CONF,
                "hosts": self.admin_conf_hosts or control_planes,
                "written_or_checked_by_this_run": bool(self.admin_conf_hosts),
            } if self.admin_conf_hosts or (control_planes and settings) else None,
            "nodes": nodes,
        }


def _table(headers, rows, right=()):
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]
    lines = []
    for row in [headers] + rows:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(summary, max_changes=40):
    """The summary as the lines a person reads at the end of the run."""
    verdict = "succeeded" if summary["status"] == "successful" else "FAILED"
    mode = " (check mode: nothing was changed)" if summary["check_mode"] else ""
    limit = f", --limit {summary['limit']}" if summary.get("limit") else ""
    lines = [f"KUBEFORGE SUMMARY: {summary['playbook']} {verdict} in {summary['seconds']:.1f} s{mode}{limit}"]
    rows = []
    for host, info in summary["hosts"].items():
        first = True
        for label, counts in info["roles"].items():
            failed = counts["failed"] + counts["unreachable"]
            rows.append([host if first else "", label, counts["ok"], counts["changed"], counts["skipped"],
                         failed, f"{counts['seconds']:.1f}"])
            first = False
        if first:
            rows.append([host, "-", 0, 0, 0, 0, "0.0"])
    if rows:
        lines += _table(["host", "role", "ok", "changed", "skipped", "failed", "seconds"], rows, right=(2, 3, 4, 5, 6))

    cluster = summary["cluster"]
    if cluster["nodes"]:
        lines.append("")
        versions = ", ".join(f"{name.replace('_', ' ')} {version}" for name, version in cluster["versions"].items())
        if cluster["name"] or versions:
            lines.append(f"cluster {cluster['name'] or '?'}: {versions or 'versions not resolved in this run'}")
        if cluster["endpoint"]:
            how = ("from kubeforge_api_endpoint" if cluster["endpoint_source"] == "kubeforge_api_endpoint" else
                   "the first control plane; other nodes reach the API through their local load balancer")
            lines.append(f"API endpoint: {cluster['endpoint']} ({how})")
        if cluster["admin_conf"]:
            admin = cluster["admin_conf"]
            how = "checked by this run" if admin["written_or_checked_by_this_run"] else "where install.yml writes it; not checked by this run"
            lines.append(f"admin.conf: {admin['path']} on {', '.join(admin['hosts'])} ({how})")
        node_rows = []
        for host, node in cluster["nodes"].items():
            labels = dict(NODE_GROUPS)
            groups = ", ".join(labels[g] for g in node["groups"])
            system = " ".join(x for x in (node["os"], node["arch"]) if x) or "-"
            status = summary["hosts"].get(host, {}).get("status", "not in this run")
            node_rows.append([host, node["address"], groups, system, status])
        lines += _table(["node", "address", "groups", "system", "result"], node_rows)

    changes = [(host, change) for host, entries in sorted(summary["changes"].items()) for change in entries]
    if changes:
        lines.append("")
        title = "plan (would change, per host and file)" if summary["check_mode"] else "changed (per host and file)"
        lines.append(f"{title}:")
        shown = 0
        for host, change in changes:
            shown_targets = change["targets"][:4] + ([f"{len(change['targets']) - 4} more"] if len(change["targets"]) > 4 else [])
            unnamed = "(the result names no file; --diff shows more)" if summary["check_mode"] else "(the result names no file)"
            targets = ", ".join(shown_targets) or unnamed
            lines.append(f"  {host}  {change['role']}: {change['task']}: {targets}")
            shown += 1
            if shown >= max_changes and len(changes) > shown:
                lines.append(f"  ... and {len(changes) - shown} more in the JSON summary")
                break
    elif summary["check_mode"]:
        lines += ["", "plan: nothing would change"]

    error = summary.get("error")
    if error:
        lines.append("")
        lines.append(f"first failure: {error['host']}, {error['role']}: {error['task']}:")
        lines += [f"  {line}" for line in error["msg"].splitlines()]
    return "\n".join(lines)


def write_json(path, summary):
    """Replace ``path`` with the summary in one step (readers never see half a file)."""
    files.write_atomic(path, json.dumps(summary, indent=2, sort_keys=False, default=to_text) + "\n")


class _Progress(threading.Thread):
    """Wakes up every few seconds and asks the callback whether a task has run long enough to
    say so."""

    def __init__(self, tick, interval):
        super().__init__(name="kubeforge-summary-progress", daemon=True)
        self._tick = tick
        self._interval = interval
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(min(self._interval, 5)):
            self._tick()


class CallbackModule(CallbackBase):
    """Collects the run and prints the summary at its end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubeforge.cluster.summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._lock = threading.RLock()
        self._state = None
        self._play_name = ""
        self._inventory = None
        self._current = None      # the task running now: {id, name, label, started, hosts, done, retries, reported}
        self._progress = None
        self._finished = False

    # --- setup ----------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        name = os.path.basename(to_text(getattr(playbook, "_file_name", "") or ""))
        args = context.CLIARGS or {}
        with self._lock:
            self._state = RunState(playbook=name, check_mode=args.get("check", False), limit=args.get("subset"))
        atexit.register(self._write_if_unfinished)

    def _ensure_state(self):
        if self._state is None:
            self._state = RunState()
        return self._state

    def v2_playbook_on_play_start(self, play):
        with self._lock:
            self._play_name = to_text(play.get_name()).strip()
            self._ensure_state().play_start(self._play_name)
            manager = play.get_variable_manager() if hasattr(play, "get_variable_manager") else None
            self._inventory = getattr(manager, "_inventory", None) or self._inventory

    # --- tasks ----------------------------------------------------------------------------
    def _task_start(self, task):
        with self._lock:
            self._current = {"id": task._uuid, "name": task_name(task),
                             "label": group_label(task, self._play_name), "started": time.monotonic(),
                             "hosts": set(), "done": set(), "retries": {}, "reported": None}
        self._start_progress()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def v2_runner_on_start(self, host, task):
        with self._lock:
            self._ensure_state().host_start(host.get_name(), task._uuid)
            if self._current and self._current["id"] == task._uuid:
                self._current["hosts"].add(host.get_name())

    def v2_runner_retry(self, result):
        host, _task, data = _result_parts(result)
        with self._lock:
            if self._current is not None:
                self._current["retries"][host] = (data.get("attempts"), data.get("retries"))

    def _result(self, result, kind, ignore_errors=False):
        host, task, data = _result_parts(result)
        with self._lock:
            state = self._ensure_state()
            fallback = None
            if self._current and self._current["id"] == task._uuid:
                self._current["done"].add(host)
                fallback = self._current["started"]
            state.result(host, task._uuid, group_label(task, self._play_name), task_name(task),
                         kind, data, counted=not (kind == "ok" and isinstance(task, TaskInclude)),
                         ignore_errors=ignore_errors or (kind == "unreachable" and bool(getattr(task, "ignore_unreachable", False))),
                         fallback_start=fallback, task_args=[task.args.get(k) for k in ("dest", "path")])

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed", ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_include(self, included_file):
        task = included_file._task
        with self._lock:
            self._ensure_state().included([h.get_name() for h in included_file._hosts], group_label(task, self._play_name))

    # --- progress -------------------------------------------------------------------------
    def _start_progress(self):
        interval = self.get_option("progress_interval")
        if self._progress is None and interval and interval > 0 and not self._finished:
            self._progress = _Progress(self._progress_tick, interval)
            self._progress.start()

    def _progress_tick(self):
        interval = self.get_option("progress_interval")
        with self._lock:
            current = self._current
            if current is None or self._finished:
                return
            now = time.monotonic()
            running = now - current["started"]
            last = current["reported"]
            if running < interval or (last is not None and now - last < interval):
                return
            waiting = sorted(current["hosts"] - current["done"])
            if current["hosts"] and not waiting:
                return
            current["reported"] = now
            done = len(current["done"])
            total = len(current["hosts"])
            retries = current["retries"]
        detail = []
        for host in waiting[:5]:
            attempts, limit = retries.get(host, (None, None))
            detail.append(f"{host} (attempt {attempts} of {limit})" if attempts else host)
        if len(waiting) > 5:
            detail.append(f"{len(waiting) - 5} more")
        hosts = f"{done} of {total} hosts done" if total else "starting"
        waits = f"; waiting for {', '.join(detail)}" if detail else ""
        self._display.display(f"  ... {current['label']}: {current['name']}: running for {running:.0f} s, {hosts}{waits}")

    # --- the end --------------------------------------------------------------------------
    def _inventory_view(self):
        inventory = self._inventory
        if inventory is None:
            return None
        groups = {}
        for group, _label in NODE_GROUPS:
            found = getattr(inventory, "groups", {}).get(group)
            if found is not None:
                groups[group] = [h.get_name() for h in found.get_hosts()]
        hosts = {}
        for name in {h for members in groups.values() for h in members}:
            host = inventory.get_host(name)
            if host is not None:
                hosts[name] = {k: host.vars.get(k) for k in ("ansible_host", "ip") if host.vars.get(k)}
        return {"groups": groups, "hosts": hosts}

    def _json_path(self):
        path = self.get_option("json_path")
        if path:
            return path
        artifacts = os.environ.get("AWX_ISOLATED_DATA_DIR")
        return os.path.join(artifacts, SUMMARY_FILE) if artifacts else None

    def v2_playbook_on_stats(self, stats):
        with self._lock:
            self._finished = True
            self._current = None
            recap = {host: dict(stats.summarize(host)) for host in sorted(stats.processed)}
            summary = self._ensure_state().summary(recap, self._inventory_view())
        if self._progress is not None:
            self._progress.stopped.set()
        self._display.display("")
        self._display.display(render(summary, self.get_option("max_changes")))
        self._emit_json(summary)

    def _emit_json(self, summary):
        path = self._json_path()
        if path:
            try:
                write_json(path, summary)
            except OSError as exc:
                self._display.warning(f"kubeforge.cluster.summary: cannot write {path}: {exc}")
        if self.get_option("json_in_output"):
            self._display.display(OUTPUT_PREFIX + json.dumps(summary, sort_keys=False, default=to_text))

    def _write_if_unfinished(self):
        """A run that ends without its recap (an error outside any task) still leaves a summary."""
        with self._lock:
            if self._finished or self._state is None:
                return
            self._finished = True
            summary = self._state.summary({}, self._inventory_view())
        summary["status"] = "failed"
        summary["error"] = summary["error"] or {
            "host": None, "task": None, "role": None,
            "msg": "the run stopped before the end of the playbook (an error outside any task; see the output)"}
        path = self._json_path()
        if path:
            try:
                write_json(path, summary)
            except OSError:
                pass
