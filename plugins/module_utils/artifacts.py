# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Fetch, verify and install release artifacts on a host, idempotently and atomically.

Runs on managed hosts (Python 3.9+, standard library and Ansible's urls helper). The artifact specifications come
from the ``artifacts`` action plugin, which resolved versions, URLs and checksums on the
controller; nothing here reads the versions table.

What is installed is recorded in a state file (``/var/lib/kubeforge/artifacts.json``): per
component the version, the sha256 of the artifact it came from, and each installed file with its
own sha256. An artifact is in place when the recorded version, architecture and artifact sha256
are the wanted ones and every recorded file still has its recorded sha256; then nothing is
downloaded. Archives are not kept on the host.

Order of work for the artifacts that are not in place: every artifact is downloaded (or taken
from the copy the controller pushed) and its sha256 verified; then every member is written to a
temporary file beside its destination; only when all of that succeeded is each destination
replaced by a rename, so a failure before that point installs nothing, and a running program
keeps the inode it was started from.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import http.client
import json
import os
import socket
import tarfile
import time
import urllib.error

from ansible.module_utils import urls
from ansible.module_utils.urls import open_url

from ansible_collections.kubeforge.cluster.plugins.module_utils import files

STATE_FILE = "/var/lib/kubeforge/artifacts.json"
STATE_FORMAT = 1
CHUNK = 1 << 20
PUBLISHED_SUM_LIMIT = 4096
TEMP_PREFIX = files.TEMP_PREFIX
MIRROR_HINT = ("set kubeforge_files_mirror to a mirror this host can reach, or "
               "kubeforge_download_mode: controller to fetch once on the controller and push")


class ArtifactError(Exception):
    """What went wrong, with the artifact, the location and what to do about it."""


def label(spec):
    return "%s %s (%s)" % (spec["component"], spec["version"], spec["arch"])


def user_argument_spec():
    """The options a task gives; the action plugin validates them, the module takes them too."""
    return dict(
        components=dict(type="list", elements="str", default=[]),
        all_for_groups=dict(type="bool", default=False),
        versions=dict(type="dict", default={}),
        arch=dict(type="str"),
        mirror=dict(type="str"),
        mode=dict(type="str", choices=["host", "controller"]),
        checksums=dict(type="dict"),
        cache_dir=dict(type="path"),
        state_file=dict(type="path", default=STATE_FILE),
        timeout=dict(type="int", default=60),
        retries=dict(type="int", default=2),
        validate_certs=dict(type="bool", default=True),
        bundle_dir=dict(type="path"),
        architectures=dict(type="list", elements="str", default=["amd64"]),
        kubernetes_versions=dict(type="list", elements="str"),
        table=dict(type="path"),
        images=dict(type="list", elements="dict", default=[]),
        image_mirror=dict(type="str", default=""),
    )


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_mode(mode):
    if isinstance(mode, int):
        return mode
    return int(str(mode), 8)


def _open(url, timeout, validate_certs):
    # Ansible's opener: honours proxy variables and validate_certs the way every other module does
    return open_url(url, timeout=timeout, validate_certs=validate_certs,
                    http_agent="kubeforge.cluster-artifacts", follow_redirects="all")


def _retryable(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return True


def _describe(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return "HTTP %s %s" % (exc.code, exc.reason)
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or exc.__class__.__name__


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError,
                   urls.ConnectionError)


def download(url, directory, expected=None, what="artifact", timeout=60, retries=2,
             validate_certs=True, hint=MIRROR_HINT, where="this host"):
    """Stream ``url`` into a temporary file in ``directory`` and verify its sha256.

    Returns ``(path, sha256)``. On a mismatch the file is removed and ArtifactError names both
    sums and the URL; on a network failure it names the URL and ``hint``.
    """
    attempt = 0
    while True:
        digest = hashlib.sha256()
        try:
            tmp = files.stage(directory, hashed_chunks(_fetch(url, timeout, validate_certs), digest), suffix=".part")
        except _Network as wrapped:
            exc = wrapped.exc
            if attempt < retries and _retryable(exc):
                attempt += 1
                time.sleep(min(2 ** attempt, 10) * 0.5)
                continue
            raise ArtifactError("could not download %s from %s: %s. %s cannot fetch it: %s."
                                % (what, url, _describe(exc), where.capitalize(), hint))
        except OSError as exc:
            raise ArtifactError("could not write %s to %s: %s" % (what, directory, exc))
        actual = digest.hexdigest()
        if expected and actual != expected:
            files.unlink_quietly(tmp)
            raise ArtifactError("sha256 mismatch for %s downloaded from %s: expected %s, got %s. "
                                "The download was removed and nothing was installed."
                                % (what, url, expected, actual))
        return tmp, actual


def _fetch(url, timeout, validate_certs):
    """The body of ``url`` in chunks; a network failure comes out as _Network."""
    try:
        response = _open(url, timeout, validate_certs)
        with response:
            yield from iter(lambda: response.read(CHUNK), b"")
    except _NETWORK_ERRORS as exc:
        raise _Network(exc)


def hashed_chunks(chunks, digest):
    """Pass ``chunks`` through, feeding each to ``digest`` (a hashlib object) on the way."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


class _Network(Exception):
    def __init__(self, exc):
        Exception.__init__(self, str(exc))
        self.exc = exc


def parse_published_sha256(text, source):
    """The sha256 in a published ``.sha256`` file (``<hex>`` or ``<hex>  <name>``)."""
    tokens = text.split()
    value = tokens[0].lower() if tokens else ""
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ArtifactError("%s does not hold a sha256 (got %r)" % (source, text[:80]))
    return value


def fetch_published_sha256(url, what="artifact", timeout=60, retries=2, validate_certs=True,
                           hint=MIRROR_HINT, where="this host"):
    attempt = 0
    while True:
        try:
            with _open(url, timeout, validate_certs) as response:
                text = response.read(PUBLISHED_SUM_LIMIT).decode("utf-8", "replace")
            return parse_published_sha256(text, url)
        except _NETWORK_ERRORS as exc:
            if attempt < retries and _retryable(exc):
                attempt += 1
                time.sleep(min(2 ** attempt, 10) * 0.5)
                continue
            raise ArtifactError("could not download the published sha256 of %s from %s: %s. "
                                "%s cannot fetch it: %s."
                                % (what, url, _describe(exc), where.capitalize(), hint))


def _normalize_member_name(name):
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _safe_basename(name, source):
    base = os.path.basename(name)
    if base in ("", ".", "..") or "/" in base or "\x00" in base:
        raise ArtifactError("refusing archive member %r from %s" % (name, source))
    return base


def member_destinations(spec):
    """Destinations known before reading the archive (glob members are known only after)."""
    dests = []
    for member in spec["members"]:
        if "dest" in member:
            dests.append(member["dest"])
    return dests


def member_directories(spec):
    dirs = []
    for member in spec["members"]:
        directory = member.get("dest_dir") or os.path.dirname(member["dest"])
        if directory not in dirs:
            dirs.append(directory)
    return dirs


def _copy_to_temp(source_handle, dest, mode):
    """Write a stream to a temporary file beside ``dest``; returns (tmp, sha256)."""
    digest = hashlib.sha256()
    tmp = files.stage(os.path.dirname(dest), hashed_chunks(iter(lambda: source_handle.read(CHUNK), b""), digest),
                      parse_mode(mode), suffix="." + os.path.basename(dest))
    return tmp, digest.hexdigest()


def stage_members(spec, artifact_path, artifact_digest, own_artifact):
    """Write every member of the artifact to a temporary file beside its destination.

    Returns a list of ``{"dest", "tmp", "sha256", "mode"}``. ``own_artifact`` says whether
    ``artifact_path`` is a temporary file of ours that may be renamed into place directly.
    """
    staged = []
    try:
        fmt = spec["format"]
        if fmt in ("binary", "file"):
            member = spec["members"][0]
            dest = member["dest"]
            if own_artifact and os.path.dirname(artifact_path) == os.path.dirname(dest):
                os.chmod(artifact_path, parse_mode(member["mode"]))
                staged.append({"dest": dest, "tmp": artifact_path, "sha256": artifact_digest,
                               "mode": member["mode"]})
            else:
                with open(artifact_path, "rb") as handle:
                    tmp, digest = _copy_to_temp(handle, dest, member["mode"])
                staged.append({"dest": dest, "tmp": tmp, "sha256": digest, "mode": member["mode"]})
            return staged
        if fmt != "tar.gz":
            raise ArtifactError("%s: unknown artifact format %r" % (label(spec), fmt))
        source = spec.get("url") or spec.get("upstream_url") or artifact_path
        try:
            archive = tarfile.open(artifact_path, mode="r:*")
        except (tarfile.TarError, OSError) as exc:
            raise ArtifactError("%s from %s is not a readable archive: %s" % (label(spec), source, exc))
        with archive:
            entries = {}
            for info in archive.getmembers():
                entries.setdefault(_normalize_member_name(info.name), info)
            for member in spec["members"]:
                if "glob" in member:
                    exclude = set(member.get("exclude") or ())
                    picked = [name for name in sorted(entries)
                              if "/" not in name and name and fnmatch.fnmatchcase(name, member["glob"])
                              and name not in exclude and entries[name].isfile()]
                    if not picked:
                        raise ArtifactError("%s: the archive from %s has no file matching %r"
                                            % (label(spec), source, member["glob"]))
                    targets = [(entries[name], os.path.join(member["dest_dir"], _safe_basename(name, source)))
                               for name in picked]
                else:
                    wanted = _normalize_member_name(member["src"])
                    info = entries.get(wanted)
                    if info is None or not info.isfile():
                        shown = ", ".join(sorted(entries)[:12])
                        raise ArtifactError("%s: the archive from %s has no regular file %r (it has: %s)"
                                            % (label(spec), source, wanted, shown))
                    targets = [(info, member["dest"])]
                for info, dest in targets:
                    handle = archive.extractfile(info)
                    if handle is None:
                        raise ArtifactError("%s: cannot read %r from %s" % (label(spec), info.name, source))
                    with handle:
                        tmp, digest = _copy_to_temp(handle, dest, member["mode"])
                    staged.append({"dest": dest, "tmp": tmp, "sha256": digest, "mode": member["mode"]})
        return staged
    except BaseException:
        for item in staged:
            if item["tmp"] != artifact_path:
                files.unlink_quietly(item["tmp"])
        raise


def load_state(path):
    """The recorded state, or an empty one. A corrupt file counts as empty (all reinstalled)."""
    try:
        with open(path, "r") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            return {"format": STATE_FORMAT, "artifacts": {}}, None
        return {"format": STATE_FORMAT, "artifacts": {}}, "ignored unreadable %s: %s" % (path, exc)
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        return {"format": STATE_FORMAT, "artifacts": {}}, "ignored %s: not an artifacts state file" % path
    return data, None


def write_state(path, state):
    files.write_atomic(path, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644)


def installed_files(state):
    files = set()
    for entry in state.get("artifacts", {}).values():
        files.update((entry.get("files") or {}).keys())
    return sorted(files)


def _version_tuple(version):
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return ()


class Installer:
    """Bring the artifacts in ``specs`` into place on this host."""

    def __init__(self, specs, state_file=STATE_FILE, check_mode=False, timeout=60, retries=2,
                 validate_certs=True, mover=None, set_mode=None):
        self.specs = specs
        self.state_file = state_file
        self.check_mode = check_mode
        self.timeout = timeout
        self.retries = retries
        self.validate_certs = validate_certs
        self.mover = mover or os.replace
        self.set_mode = set_mode or (lambda path, mode: os.chmod(path, parse_mode(mode)))
        self.warnings = []
        self.downloaded = []

    # -- comparison ---------------------------------------------------------------------------

    def examine(self, spec, state):
        """``(action, mode_fixes)``: action is None when the artifact is in place."""
        entry = state["artifacts"].get(spec["component"])
        if not entry:
            return "install", []
        if str(entry.get("version")) != spec["version"] or entry.get("arch") != spec["arch"]:
            old, new = _version_tuple(entry.get("version")), _version_tuple(spec["version"])
            return ("downgrade" if old and new and new < old else "upgrade"), []
        if spec.get("sha256") and entry.get("sha256") != spec["sha256"]:
            return "replace", []
        if not entry.get("complete", True):
            return "repair", []
        files = entry.get("files") or {}
        if not files:
            return "repair", []
        wanted = set(member_destinations(spec))
        globs = [m["dest_dir"] for m in spec["members"] if "glob" in m]
        for path in files:
            if path not in wanted and not any(os.path.dirname(path) == d for d in globs):
                return "repair", []
        if not wanted.issubset(files):
            return "repair", []
        mode_fixes = []
        for path, record in sorted(files.items()):
            try:
                info = os.lstat(path)
            except OSError:
                return "repair", []
            if not os.path.isfile(path) or os.path.islink(path):
                return "repair", []
            if sha256_file(path) != record.get("sha256"):
                return "repair", []
            if record.get("mode") and (info.st_mode & 0o7777) != parse_mode(record["mode"]):
                mode_fixes.append((path, record["mode"]))
        return None, mode_fixes

    # -- the run ------------------------------------------------------------------------------

    def run(self, plan_only=False):
        state, warning = load_state(self.state_file)
        if warning:
            self.warnings.append(warning)
        before = {c: e.get("version") for c, e in state["artifacts"].items()}
        results = {}
        todo = []
        fixes = []
        for spec in self.specs:
            action, mode_fixes = self.examine(spec, state)
            entry = state["artifacts"].get(spec["component"]) or {}
            results[spec["component"]] = {
                "changed": bool(action or mode_fixes),
                "action": action or ("mode" if mode_fixes else "none"),
                "version": spec["version"],
                "previous_version": entry.get("version"),
                "arch": spec["arch"],
                "url": spec.get("url") or spec.get("upstream_url"),
                "sha256": spec.get("sha256") or (entry.get("sha256") if not action else None),
                "checksum_source": spec.get("checksum_source"),
                "files": sorted((entry.get("files") or {}).keys()) if not action else self._expected_files(spec),
            }
            if action:
                todo.append(spec)
            fixes.extend(mode_fixes)
        if plan_only or self.check_mode:
            return self._result(results, state, before, needed=[s["component"] for s in todo])
        for path, mode in fixes:
            self.set_mode(path, mode)
        if todo:
            self._install(todo, state, results)
            write_state(self.state_file, state)
        return self._result(results, state, before, needed=[])

    def _expected_files(self, spec):
        files = list(member_destinations(spec))
        files += [os.path.join(m["dest_dir"], m["glob"]) for m in spec["members"] if "glob" in m]
        return sorted(files)

    def _obtain(self, spec, temps):
        """The verified artifact: ``(path, sha256, own)``; ``own`` means a temp file of ours."""
        what = label(spec)
        staging = member_directories(spec)[0]
        for directory in member_directories(spec):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
        if spec.get("src"):
            expected = spec.get("sha256")
            if not expected:
                raise ArtifactError("%s: a pushed artifact needs its sha256" % what)
            actual = sha256_file(spec["src"])
            if actual != expected:
                raise ArtifactError("sha256 mismatch for %s pushed from the controller (%s): expected %s, "
                                    "got %s. Nothing was installed." % (what, spec["src"], expected, actual))
            return spec["src"], actual, False
        if not spec.get("url"):
            raise ArtifactError("%s: no URL to download from (a mirror directory on the controller needs "
                                "kubeforge_download_mode: controller)" % what)
        expected = spec.get("sha256")
        if not expected:
            if not spec.get("checksum_url"):
                raise ArtifactError("%s: no sha256 and no published checksum URL" % what)
            expected = fetch_published_sha256(spec["checksum_url"], what, self.timeout, self.retries,
                                              self.validate_certs)
            spec["sha256"] = expected
        path, actual = download(spec["url"], staging, expected, what, self.timeout, self.retries,
                                self.validate_certs)
        temps.append(path)
        self.downloaded.append(spec["url"])
        return path, actual, True

    def _install(self, todo, state, results):
        temps = []
        staged = {}
        try:
            obtained = {}
            for spec in todo:
                obtained[spec["component"]] = self._obtain(spec, temps)
            for spec in todo:
                path, digest, own = obtained[spec["component"]]
                items = stage_members(spec, path, digest, own)
                temps.extend(item["tmp"] for item in items if item["tmp"] not in temps)
                staged[spec["component"]] = items
            self._commit(todo, obtained, staged, state, results, temps)
        finally:
            for tmp in temps:
                files.unlink_quietly(tmp)

    def _commit(self, todo, obtained, staged, state, results, temps):
        claimed = {}
        for component, entry in state["artifacts"].items():
            for path in entry.get("files") or {}:
                claimed.setdefault(path, set()).add(component)
        for spec in todo:
            component = spec["component"]
            previous = state["artifacts"].get(component) or {}
            entry = {
                "version": spec["version"],
                "arch": spec["arch"],
                "sha256": obtained[component][1],
                "checksum_source": spec.get("checksum_source"),
                "url": spec.get("url") or spec.get("upstream_url"),
                "files": dict(previous.get("files") or {}),
                "complete": False,
            }
            state["artifacts"][component] = entry
            try:
                new_files = {}
                for item in staged[component]:
                    self.mover(item["tmp"], item["dest"])
                    temps.remove(item["tmp"])
                    self.set_mode(item["dest"], item["mode"])
                    record = {"sha256": item["sha256"], "mode": item["mode"]}
                    new_files[item["dest"]] = record
                    entry["files"][item["dest"]] = record
                removed = []
                for path in sorted(set(previous.get("files") or {}) - set(new_files)):
                    if claimed.get(path, set()) - {component}:
                        continue
                    files.unlink_quietly(path)
                    removed.append(path)
                entry["files"] = new_files
                entry["complete"] = True
            except BaseException:
                # Whatever was moved is recorded (complete: false), so a re-run repairs it and a
                # reset still finds every file.
                try:
                    write_state(self.state_file, state)
                except OSError:
                    pass
                raise
            del entry["complete"]
            result = results[component]
            result.update({"files": sorted(new_files), "sha256": entry["sha256"], "changed": True})
            if removed:
                result["removed"] = removed

    def _result(self, results, state, before, needed):
        changed = any(r["changed"] for r in results.values())
        diff_before = []
        diff_after = []
        for component in sorted(results):
            result = results[component]
            if result["action"] in ("none", "mode"):
                continue
            diff_before.append("%s: %s" % (component, before.get(component) or "(not installed)"))
            note = " (%s)" % result["action"] if result["action"] in ("repair", "replace") else ""
            diff_after.append("%s: %s%s" % (component, result["version"], note))
        result = {
            "changed": changed,
            "artifacts": results,
            "state_file": self.state_file,
            "installed_files": installed_files(state),
            "downloaded": list(self.downloaded),
            "needed": needed,
            "diff": {
                "before_header": self.state_file,
                "after_header": self.state_file,
                "before": "\n".join(diff_before) + ("\n" if diff_before else ""),
                "after": "\n".join(diff_after) + ("\n" if diff_after else ""),
            },
        }
        if self.warnings:
            result["warnings"] = list(self.warnings)
        return result
