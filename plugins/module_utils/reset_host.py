# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Take a host back to what it was before the collection, removing only what the collection made.

Runs on the host (Python 3.9+, standard library only) inside the ``reset_host`` module; what to
remove comes from the caller (the reset role's one list, roles/reset/vars/main.yml). Programs are
run through a ``run(argv, data=None)`` callable that returns ``(rc, stdout, stderr)``, with rc 127
for a missing program; :func:`command_runner` builds it on ``AnsibleModule.run_command``. ``which``
finds a program by name (``AnsibleModule.get_bin_path``). Every file-system path is taken below
``root``, which is ``/`` except in the unit tests.

:class:`Reset` works in this order, each step finding out first what is there and acting only on
that, so a second run finds nothing and changes nothing:

1. the artifacts record is read (the binaries it lists are removed in step 5);
2. services are stopped in the order given; then the containers of containerd (pods through the CRI
   with ``crictl``, then any task left with ``ctr``), then containerd itself; then every unit that
   is enabled is disabled;
3. mounts matching the patterns are unmounted, deepest first (lazily when a plain unmount fails);
4. network devices, routes of the given protocols, iptables rules and chains (one
   ``iptables-restore --noflush`` per family) and nftables tables;
5. the unit files and the links that enable them, the recorded binaries, the listed files and
   directories, then the directories that are empty after that; a directory that is a mount point
   is emptied and kept, and nothing is removed across a mount point;
6. users;
7. one ``systemctl daemon-reload`` when a unit file or link was removed or a unit was disabled.

In check mode nothing is run that changes the host; the result lists what would be done.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil

# iptables families: (save, restore) programs
FIREWALL_FAMILIES = (("iptables", "iptables-save", "iptables-restore"),
                     ("ip6tables", "ip6tables-save", "ip6tables-restore"))
# systemd ActiveState values with processes that a stop ends
RUNNING_STATES = ("active", "activating", "deactivating", "reloading", "refreshing")
ENABLED_STATES = ("enabled", "enabled-runtime", "linked", "linked-runtime")
SYSTEMD_PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState", "NeedDaemonReload")
# containerd keeps one directory per running task here (below its state directory)
TASK_STATE = "io.containerd.runtime.v2.task"
UMOUNT_ROUNDS = 5
GLOB_MAGIC = re.compile(r"[*?[]")
RESULT_KEYS = ("stopped", "pods", "containers", "disabled", "unmounted", "interfaces", "routes", "firewall",
               "removed", "users")


class ResetError(Exception):
    """What could not be done, on which object, and what to do about it."""


# -- running programs ----------------------------------------------------------------------------

def command_runner(run_command, timeout_program=None, timeout=300):
    """``run(argv, data=None)`` on top of ``run_command(argv, data) -> (rc, out, err)``.

    With ``timeout_program`` (coreutils ``timeout``) a program that does not finish within
    ``timeout`` seconds is stopped and reported with rc 124; a missing program is rc 127.
    """

    def run(argv, data=None):
        argv = [str(a) for a in argv]
        wrapped = [timeout_program, "--kill-after=10", "%d" % timeout] + argv if timeout_program else argv
        try:
            rc, out, err = run_command(wrapped, data)
        except FileNotFoundError:
            return 127, "", "%s: not found" % argv[0]
        except OSError as exc:
            return 126, "", "%s: %s" % (argv[0], exc)
        if timeout_program and rc in (124, 137):
            return 124, out or "", "%s: gave no answer within %d s" % (" ".join(argv[:3]), timeout)
        return rc, out or "", err or ""

    return run


def _fail_text(argv, rc, out, err):
    return "%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip() or "no message")


# -- parsing -------------------------------------------------------------------------------------

def unit_name(name):
    """``kubelet`` -> ``kubelet.service``; a name with a suffix stays."""
    return name if "." in name else name + ".service"


def parse_systemctl_show(text, units):
    """``{unit: {property: value}}`` from ``systemctl show -p ... UNIT...`` (blocks in order)."""
    blocks = [block for block in text.replace("\r", "").split("\n\n") if block.strip()]
    found = {}
    for index, block in enumerate(blocks):
        props = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        name = props.get("Id")
        if name not in units and index < len(units):
            name = units[index]
        if name:
            found[name] = props
    return found


def _unescape_mount(field):
    """Mount points in mountinfo escape space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text):
    """Mount points of ``/proc/self/mountinfo``, in mount order (a later one may cover an earlier)."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            points.append(_unescape_mount(fields[4]))
    return points


def self_binds(text, directories):
    """The directories of ``directories`` that ``/proc/self/mountinfo`` shows bound onto themselves
    (the mount's root within its file system is the mount point's own path)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            root, point = _unescape_mount(fields[3]), _unescape_mount(fields[4])
            if point in directories and root == point and point not in found:
                found.append(point)
    return found


def mount_depth_order(points):
    """Deepest first, and of mounts on one point the one mounted last first."""
    indexed = list(enumerate(points))
    indexed.sort(key=lambda item: (-item[1].rstrip("/").count("/"), -item[0]))
    ordered = []
    for _index, point in indexed:
        if point not in ordered:
            ordered.append(point)
    return ordered


def owned_chain(chain, prefixes):
    return any(chain.startswith(prefix) for prefix in prefixes)


def parse_iptables_save(text):
    """``{table: {"chains": [name, ...], "rules": [(chain, line), ...]}}`` of ``iptables-save``."""
    tables, table = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:].strip(), {"chains": [], "rules": []})
        elif table is None or line == "COMMIT":
            continue
        elif line.startswith(":"):
            table["chains"].append(line[1:].split()[0])
        elif line.startswith("-A "):
            table["rules"].append((line.split()[1], line))
    return tables


def _rule_refers(line, prefixes, comments):
    """Whether a rule jumps or goes to an owned chain, or carries one of ``comments``."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    for index, token in enumerate(tokens[:-1]):
        value = tokens[index + 1]
        if token in ("-j", "--jump", "-g", "--goto") and owned_chain(value, prefixes):
            return True
        if token == "--comment" and value in comments:
            return True
    return False


def firewall_plan(saved, prefixes, comments):
    """What to take out of one family: ``{table: {"rules": [lines], "chains": [names]}}``.

    Rules in chains of others that lead into an owned chain (or carry an owned comment) are
    deleted; owned chains are flushed and deleted. Tables without either are left out.
    """
    plan = {}
    for name, table in saved.items():
        chains = [c for c in table["chains"] if owned_chain(c, prefixes)]
        rules = [line for chain, line in table["rules"]
                 if not owned_chain(chain, prefixes) and _rule_refers(line, prefixes, comments)]
        if chains or rules:
            plan[name] = {"rules": rules, "chains": chains}
    return plan


def restore_input(plan):
    """The ``iptables-restore --noflush`` input that carries out :func:`firewall_plan`.

    In --noflush mode, declaring an existing user chain flushes it (as kube-proxy does); then the
    rules that lead into those chains go, then the chains.
    """
    lines = []
    for name in sorted(plan):
        lines.append("*" + name)
        lines += [":%s - [0:0]" % chain for chain in plan[name]["chains"]]
        lines += ["-D" + line[2:] for line in plan[name]["rules"]]
        lines += ["-X " + chain for chain in plan[name]["chains"]]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _is_below(path, directory):
    return path != directory and path.startswith(directory.rstrip("/") + "/")


def check_path(path, what="path"):
    """An absolute path or pattern without ``.`` or ``..`` whose fixed part (before the first
    wildcard) has at least two components: nothing like ``/``, ``/etc`` or ``/*/x``."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ResetError("%s %r is not an absolute path; nothing was changed" % (what, path))
    parts = path.split("/")
    fixed = []
    for part in parts[1:]:
        if GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    if ".." in parts or "." in parts or len([p for p in fixed if p]) < 2:
        raise ResetError("%s %r is too broad (it needs two components before any wildcard, and no '.' or "
                         "'..'); nothing was changed" % (what, path))
    return path


# -- the reset -----------------------------------------------------------------------------------

class Reset:
    """Find what is there and remove it (only plan it in check mode).

    ``params``: the module's options (see plugins/modules/reset_host.py).
    """

    def __init__(self, params, run, which, check_mode=False, root="/"):
        self.params = params
        self.run = run
        self.which = which
        self.check_mode = check_mode
        self.root = root
        self.result = {key: [] for key in RESULT_KEYS}
        self.result["daemon_reload"] = False
        self.warnings = []
        self._units = {}
        self._unit_files_removed = False

    # paths ------------------------------------------------------------------------------------
    def on_disk(self, path):
        """Where a host path is on this file system (below ``root``)."""
        return os.path.join(self.root, path.lstrip("/"))

    def on_host(self, path):
        """The host path of a path below ``root``."""
        if self.root in ("", "/"):
            return path
        relative = os.path.relpath(path, self.root)
        return "/" if relative == "." else "/" + relative

    def expand(self, pattern):
        """Host paths that exist for a path or a glob pattern (``*`` does not cross ``/``)."""
        if GLOB_MAGIC.search(pattern):
            base = glob.escape(self.root.rstrip("/")) if self.root not in ("", "/") else ""
            return sorted(self.on_host(p) for p in glob.glob(base + pattern))
        path = os.path.normpath(pattern)
        return [path] if os.path.lexists(self.on_disk(path)) else []

    def _read(self, path):
        try:
            with open(self.on_disk(path), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def _must(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise ResetError("%s: %s" % (what, _fail_text(argv, rc, out, err)))
        return out

    # the whole run ----------------------------------------------------------------------------
    def reset(self):
        for path in self.params.get("paths") or []:
            check_path(path)
        for path in self.params.get("empty_dirs") or []:
            check_path(path, "empty_dirs entry")
        for pattern in self.params.get("unmount") or []:
            check_path(pattern, "unmount pattern")
        recorded = self.recorded_files()
        self.stop_services()
        self.remove_containers()
        self.disable_units()
        self.unmount()
        self.remove_interfaces()
        self.remove_routes()
        self.remove_firewall()
        self.remove_nftables()
        self.remove_files(recorded)
        self.remove_users()
        self.reload_systemd()
        return self.result

    @property
    def changed(self):
        return self.result["daemon_reload"] or any(self.result[key] for key in RESULT_KEYS)

    # 1. the artifacts record ------------------------------------------------------------------
    def recorded_files(self):
        """The files the artifacts record lists below ``artifacts_dirs`` (read before anything changes)."""
        state = self.params.get("artifacts_state")
        if not state:
            return []
        text = self._read(state)
        if text is None:
            return []
        try:
            data = json.loads(text)
            entries = data["artifacts"]
            listed = sorted({path for entry in entries.values() for path in (entry.get("files") or {})})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ResetError("%s is not a readable artifacts record (%s); it names the binaries to remove, so "
                             "nothing was changed. Repair it, or move it away to keep those binaries, and run "
                             "again" % (state, exc))
        allowed = [os.path.normpath(d) for d in self.params.get("artifacts_dirs") or []]
        files = []
        for path in listed:
            normal = os.path.normpath(path) if isinstance(path, str) and path.startswith("/") else None
            if normal and any(_is_below(normal, d) for d in allowed):
                files.append(normal)
            else:
                self.warnings.append("kept %s: %s lists it, but outside %s" % (path, state, ", ".join(allowed)))
        return files

    # 2. services and containers ---------------------------------------------------------------
    def _all_units(self):
        units = [unit_name(name) for name in self.params.get("services") or []]
        containerd = self.params.get("containerd")
        if containerd and containerd.get("service"):
            units.append(unit_name(containerd["service"]))
        return units

    def read_units(self):
        units = self._all_units()
        if not units:
            return {}
        systemctl = self.which("systemctl")
        if not systemctl:
            self.warnings.append("systemctl not found: no service was stopped or disabled (%s)" % ", ".join(units))
            return {}
        argv = [systemctl, "show", "--property=" + ",".join(SYSTEMD_PROPERTIES), "--"] + units
        out = self._must(argv, "reading the services")
        self._units = parse_systemctl_show(out, units)
        return self._units

    def _systemctl(self, *args):
        return self._must([self.which("systemctl")] + list(args), "systemd")

    def _running(self, unit):
        return self._units.get(unit, {}).get("ActiveState") in RUNNING_STATES

    def stop_services(self):
        self.read_units()
        for unit in [unit_name(name) for name in self.params.get("services") or []]:
            if self._running(unit):
                if not self.check_mode:
                    self._systemctl("stop", unit)
                self.result["stopped"].append(unit)

    def _task_dirs(self, state_dir):
        """``namespace/id`` of every task containerd keeps state for (their shims run)."""
        base = self.on_disk(os.path.join(state_dir, TASK_STATE))
        found = []
        try:
            namespaces = sorted(os.listdir(base))
        except OSError:
            return []
        for namespace in namespaces:
            try:
                found += ["%s/%s" % (namespace, task) for task in sorted(os.listdir(os.path.join(base, namespace)))]
            except OSError:
                continue
        return found

    def remove_containers(self):
        containerd = self.params.get("containerd")
        if not containerd:
            return
        unit = unit_name(containerd["service"])
        running = self._running(unit)
        leftovers = self._task_dirs(containerd["state_dir"])
        if not running and leftovers:
            loaded = self._units.get(unit, {}).get("LoadState") == "loaded"
            if not loaded:
                raise ResetError(
                    "containers of containerd still run (%s) but %s is not running and cannot be started to "
                    "stop them; reboot the host and run the reset again" % (", ".join(leftovers), unit))
            if self.check_mode:
                self.result["containers"] += leftovers
                return
            # its containers are stopped through containerd itself, which knows their processes and mounts
            self._systemctl("start", unit)
            running = True
        if not running:
            return
        ctr = containerd["ctr"]
        if not os.path.exists(self.on_disk(ctr)):
            if leftovers:
                raise ResetError("containers of containerd still run (%s) but %s is missing; reboot the host "
                                 "and run the reset again" % (", ".join(leftovers), ctr))
        else:
            self._remove_pods(containerd)
            self._remove_tasks(containerd)
        if not self.check_mode:
            self._systemctl("stop", unit)
        self.result["stopped"].append(unit)

    def _remove_pods(self, containerd):
        """Pods through the CRI, so that each one's network is torn down by its CNI plugins."""
        crictl = containerd.get("crictl")
        if not crictl or not os.path.exists(self.on_disk(crictl)):
            return
        base = [crictl, "--runtime-endpoint", "unix://" + containerd["address"], "--timeout", "60s"]
        rc, out, err = self.run(base + ["pods", "--quiet"])
        if rc != 0:
            self.warnings.append("could not list the pods: %s; their containers are stopped with ctr"
                                 % _fail_text(base + ["pods"], rc, out, err))
            return
        pods = out.split()
        if not pods:
            return
        self.result["pods"] += pods
        if not self.check_mode:
            rc, out, err = self.run(base + ["rmp", "--all", "--force"])
            if rc != 0:
                self.warnings.append("not every pod could be removed through the CRI (%s); their containers are "
                                     "stopped with ctr" % _fail_text(base + ["rmp", "--all", "--force"], rc, out, err))

    def _remove_tasks(self, containerd):
        base = [containerd["ctr"], "--address", containerd["address"]]
        namespaces = self._must(base + ["namespaces", "list", "--quiet"], "listing containerd's namespaces").split()
        for namespace in namespaces:
            tasks = self._must(base + ["--namespace", namespace, "tasks", "list", "--quiet"],
                               "listing the containers of namespace %s" % namespace).split()
            if not tasks:
                continue
            if not self.check_mode:
                self._must(base + ["--namespace", namespace, "tasks", "delete", "--force"] + tasks,
                           "stopping the containers of namespace %s" % namespace)
            self.result["containers"] += ["%s/%s" % (namespace, task) for task in tasks]

    def disable_units(self):
        enabled = [unit for unit in self._all_units()
                   if self._units.get(unit, {}).get("UnitFileState") in ENABLED_STATES]
        if not enabled:
            return
        if not self.check_mode:
            # one daemon-reload at the end serves every change
            self._systemctl("disable", "--no-reload", "--", *enabled)
        self.result["disabled"] += enabled

    # 3. mounts --------------------------------------------------------------------------------
    def mounts(self):
        return parse_mountinfo(self._read("/proc/self/mountinfo") or "")

    def _matching(self):
        patterns = self.params.get("unmount") or []
        binds = self_binds(self._read("/proc/self/mountinfo") or "", self.params.get("unmount_self_binds") or [])
        wanted = [m for m in self.mounts() if m in binds or any(fnmatch.fnmatchcase(m, p) for p in patterns)]
        return mount_depth_order(wanted)

    def unmount(self):
        targets = self._matching()
        if not targets:
            return
        self.result["unmounted"] += targets
        if self.check_mode:
            return
        umount = self.which("umount")
        if not umount:
            raise ResetError("umount not found; still mounted: %s" % ", ".join(targets))
        remaining = targets
        for attempt in range(UMOUNT_ROUNDS):
            # a busy mount is detached lazily: it is gone from the tree at once, so nothing below is
            # reached through it any more
            self.run([umount] + (["--lazy"] if attempt else []) + remaining)
            remaining = self._matching()
            if not remaining:
                break
            for point in remaining:
                if point not in self.result["unmounted"]:
                    self.result["unmounted"].append(point)
        if remaining:
            raise ResetError("could not unmount %s; nothing below them was removed" % ", ".join(remaining))

    # 4. network -------------------------------------------------------------------------------
    def _ip(self):
        ip = self.which("ip")
        if not ip:
            raise ResetError("the ip command (iproute2) is not found")
        return ip

    def remove_interfaces(self):
        for name in self.params.get("interfaces") or []:
            if not os.path.lexists(self.on_disk("/sys/class/net/" + name)):
                continue
            if not self.check_mode:
                argv = [self._ip(), "link", "delete", name]
                rc, out, err = self.run(argv)
                if rc != 0 and os.path.lexists(self.on_disk("/sys/class/net/" + name)):
                    raise ResetError("network device %s: %s" % (name, _fail_text(argv, rc, out, err)))
            self.result["interfaces"].append(name)

    def remove_routes(self):
        protocols = self.params.get("route_protocols") or []
        if not protocols:
            return
        ip = self.which("ip")
        if not ip:
            return
        for proto in protocols:
            routes = [line.strip() for line in
                      self._must([ip, "-4", "route", "show", "proto", str(proto)], "reading the routes").splitlines()
                      if line.strip()]
            if not routes:
                continue
            if not self.check_mode:
                self._must([ip, "-4", "route", "flush", "proto", str(proto)], "removing the routes of protocol %s" % proto)
            self.result["routes"] += ["%s (proto %s)" % (route, proto) for route in routes]

    def remove_firewall(self):
        prefixes = self.params.get("iptables_chain_prefixes") or []
        comments = self.params.get("iptables_comments") or []
        if not prefixes and not comments:
            return
        for family, save_name, restore_name in FIREWALL_FAMILIES:
            save = self.which(save_name)
            if not save:
                continue
            rc, out, err = self.run([save])
            if rc != 0:
                self.warnings.append("%s: could not read the rules, left as they are: %s"
                                     % (family, _fail_text([save], rc, out, err)))
                continue
            plan = firewall_plan(parse_iptables_save(out), prefixes, comments)
            if not plan:
                continue
            if not self.check_mode:
                restore = self.which(restore_name)
                if not restore:
                    raise ResetError("%s is not found; %s holds rules to remove" % (restore_name, family))
                argv = [restore, "--wait", "--noflush"]
                rc, out, err = self.run(argv, restore_input(plan))
                if rc != 0:
                    raise ResetError("%s rules: %s" % (family, _fail_text(argv, rc, out, err)))
            for table in sorted(plan):
                self.result["firewall"] += ["%s -t %s %s" % (family, table, "-D" + line[2:])
                                            for line in plan[table]["rules"]]
                self.result["firewall"] += ["%s -t %s -X %s" % (family, table, chain) for chain in plan[table]["chains"]]

    def remove_nftables(self):
        wanted = [" ".join(t.split()) for t in self.params.get("nftables_tables") or []]
        if not wanted:
            return
        nft = self.which("nft")
        if not nft:
            return
        out = self._must([nft, "list", "tables"], "reading the nftables tables")
        present = [" ".join(line.split()[1:]) for line in out.splitlines() if line.startswith("table ")]
        for table in wanted:
            if table not in present:
                continue
            if not self.check_mode:
                self._must([nft, "delete", "table"] + table.split(), "removing nftables table %s" % table)
            self.result["firewall"].append("nft delete table " + table)

    # 5. files --------------------------------------------------------------------------------
    def unit_paths(self):
        """Each unit's file and the links that enable it, in ``unit_dir``."""
        unit_dir = self.params.get("unit_dir") or "/etc/systemd/system"
        paths = []
        for unit in self._all_units():
            paths += self.expand(os.path.join(unit_dir, unit))
            if self.check_mode and unit in self.result["disabled"]:
                continue  # disabling removes its links
            for pattern in ("*.wants", "*.requires"):
                paths += [p for p in self.expand(os.path.join(unit_dir, pattern, unit))
                          if os.path.islink(self.on_disk(p))]
        return paths

    def _targets(self, recorded, mounts):
        """Host paths to remove, in order, after what the mount table says."""
        targets = []

        def add(path):
            if path in targets:
                return
            disk = self.on_disk(path)
            if os.path.isdir(disk) and not os.path.islink(disk):
                below = [m for m in mounts if _is_below(m, path)]
                if path in mounts:
                    # someone's own file system: keep it, empty it
                    for child in sorted(os.listdir(disk)):
                        add(os.path.join(path, child))
                    return
                if below:
                    raise ResetError("%s holds mount points (%s) that are not to be unmounted; nothing was removed "
                                     "from it. Unmount them and run again" % (path, ", ".join(sorted(below))))
            targets.append(path)

        for path in self.unit_paths():
            add(path)
        for path in recorded:
            if os.path.lexists(self.on_disk(path)):
                add(path)
        for pattern in self.params.get("paths") or []:
            for path in self.expand(pattern):
                add(path)
        return targets

    def _empty_after(self, targets):
        """The ``empty_dirs`` that hold nothing once ``targets`` are gone (deepest first)."""
        gone = set(targets)
        removed = []
        for directory in sorted({os.path.normpath(d) for d in self.params.get("empty_dirs") or []},
                                key=lambda d: (-d.count("/"), d)):
            disk = self.on_disk(directory)
            if directory in gone or not os.path.isdir(disk) or os.path.islink(disk):
                continue
            if all(os.path.join(directory, child) in gone for child in os.listdir(disk)):
                gone.add(directory)
                removed.append(directory)
        return removed

    def remove_files(self, recorded):
        # in check mode the mounts step only listed its mounts: count them as gone
        mounts = [m for m in self.mounts() if not (self.check_mode and m in self.result["unmounted"])]
        targets = self._targets(recorded, mounts)
        empty = self._empty_after(targets)
        unit_dir = os.path.normpath(self.params.get("unit_dir") or "/etc/systemd/system")
        if any(t.startswith(unit_dir + "/") for t in targets):
            self._unit_files_removed = True
        if not self.check_mode:
            for path in targets:
                disk = self.on_disk(path)
                try:
                    if os.path.isdir(disk) and not os.path.islink(disk):
                        shutil.rmtree(disk)
                    else:
                        os.unlink(disk)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise ResetError("could not remove %s: %s" % (path, exc.strerror or exc))
            for directory in list(empty):
                try:
                    os.rmdir(self.on_disk(directory))
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY):
                        empty.remove(directory)
                        continue
                    raise ResetError("could not remove %s: %s" % (directory, exc.strerror or exc))
        self.result["removed"] += targets + empty

    # 6. users ---------------------------------------------------------------------------------
    def remove_users(self):
        names = self.params.get("users") or []
        if not names:
            return
        passwd = self._read("/etc/passwd") or ""
        present = {line.split(":", 1)[0] for line in passwd.splitlines() if ":" in line}
        for name in names:
            if name not in present:
                continue
            if not self.check_mode:
                userdel = self.which("userdel")
                if not userdel:
                    raise ResetError("userdel not found; the user %s is left" % name)
                self._must([userdel, name], "removing the user %s" % name)
            self.result["users"].append(name)

    # 7. systemd -------------------------------------------------------------------------------
    def reload_systemd(self):
        stale = any(props.get("NeedDaemonReload") == "yes" for props in self._units.values())
        if not (self._unit_files_removed or self.result["disabled"] or stale) or not self.which("systemctl"):
            return
        if not self.check_mode:
            self._systemctl("daemon-reload")
        self.result["daemon_reload"] = True


# -- reporting -----------------------------------------------------------------------------------

def _count(result, key, one, many):
    count = len(result.get(key) or [])
    return "%d %s" % (count, one if count == 1 else many) if count else None


def summary(result, check_mode):
    """One line: what was (or would be) done."""
    removed = [_count(result, key, one, many) for key, one, many in (
        ("pods", "pod", "pods"), ("containers", "container", "containers"),
        ("interfaces", "network device", "network devices"), ("routes", "route", "routes"),
        ("firewall", "firewall rule or chain", "firewall rules and chains"), ("removed", "path", "paths"),
        ("users", "user", "users"))]
    phrases = [(("would stop " if check_mode else "stopped ") + _count(result, "stopped", "service", "services"))
               if result.get("stopped") else None,
               (("would unmount " if check_mode else "unmounted ") + _count(result, "unmounted", "mount", "mounts"))
               if result.get("unmounted") else None,
               (("would remove " if check_mode else "removed ") + ", ".join(p for p in removed if p))
               if any(removed) else None]
    phrases = [p for p in phrases if p]
    if not phrases:
        return "nothing of the cluster is left on this host"
    return "; ".join(phrases)


def diff(result):
    """One entry per path removed, and one for everything else (services, mounts, network)."""
    entries = [dict(before_header=path, after_header=path, before="present\n", after="absent\n")
               for path in result.get("removed") or []]
    other = []
    for key, label in (("stopped", "service running"), ("disabled", "unit enabled"), ("pods", "pod"),
                       ("containers", "container"), ("unmounted", "mounted"), ("interfaces", "network device"),
                       ("routes", "route"), ("firewall", "firewall"), ("users", "user")):
        other += ["%s: %s\n" % (label, item) for item in result.get(key) or []]
    if other:
        entries.append(dict(before_header="services, containers, mounts and network",
                            after_header="services, containers, mounts and network",
                            before="".join(other), after=""))
    return entries
