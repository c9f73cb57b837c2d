# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Shared helpers: state directory, commands, locks, timing, atomic writes."""

import contextlib
import fcntl
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

DEFAULT_STATE = "/var/tmp/kubeforge-testbed"


class TestbedError(Exception):
    """A failure reported to the user as one line."""


def state_dir():
    return os.environ.get("KUBEFORGE_TESTBED_HOME") or DEFAULT_STATE


def state_path(*parts):
    return os.path.join(state_dir(), *parts)


def log(message):
    print(message, file=sys.stderr, flush=True)


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(cmd, *, input=None, check=True, timeout=None, cwd=None, env=None, capture=True, binary=False):
    """Run a command; on failure raise TestbedError naming the command and its last error line."""
    kwargs = {}
    if capture:
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.PIPE
    if input is None:
        kwargs["stdin"] = subprocess.DEVNULL
    try:
        proc = subprocess.run(
            cmd, input=input, timeout=timeout, cwd=cwd, env=env, text=not binary, check=False, **kwargs
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"{cmd[0]}: command not found (hack/testbed host-setup installs it)") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"`{shlex.join(cmd[:6])}` gave no result within {timeout} s") from exc
    if check and proc.returncode != 0:
        detail = proc.stderr if capture else ""
        if binary and isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        reason = _last_line(detail) or _last_line(proc.stdout if capture and not binary else "")
        raise TestbedError(
            f"`{shlex.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}` failed (exit {proc.returncode}): {reason}"
        )
    return proc


@contextlib.contextmanager
def locked(name):
    """Serialise concurrent runs that touch the same part of the state directory."""
    os.makedirs(state_dir(), exist_ok=True)
    path = state_path(f".{name}.lock")
    with open(path, "w", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Timer:
    """Records how long named steps took and prints each as it ends."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.steps = []

    @contextlib.contextmanager
    def step(self, label):
        start = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - start
            self.steps.append((label, seconds))
            log(f"{self.prefix}{label}: {seconds:.1f} s")


def atomic_write(path, data, mode=0o644):
    """Write text or bytes to ``path`` through a temporary file in the same directory."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise TestbedError(f"{path}: not valid JSON ({exc})") from exc


def mounts_below(path):
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def safe_rmtree(path):
    """Remove a build tree, but never through a mount point (a bind-mounted /dev or /proc)."""
    import shutil

    if not os.path.lexists(path):
        return
    for point in mounts_below(path):
        run(["umount", "-l", point], check=False)
    left = mounts_below(path)
    if left:
        raise TestbedError(f"{path}: refusing to delete, still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def ssh_key_path():
    return state_path("ssh", "id_ed25519")


def ensure_ssh_key():
    """The test bed's own key pair: nodes authorise it, inventories point at it."""
    key = ssh_key_path()
    if not (os.path.exists(key) and os.path.exists(key + ".pub")):
        os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
        for leftover in (key, key + ".pub"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeforge-testbed", "-f", key])
    os.chmod(key, 0o600)
    with open(key + ".pub", encoding="ascii") as handle:
        return handle.read().strip()


DEBIAN_SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid", "oldstable", "stable", "testing", "unstable")
DEFAULT_ARCHIVE = "http://deb.debian.org/debian"
DEFAULT_SECURITY_ARCHIVE = "http://deb.debian.org/debian-security"


def apt_source_entries(texts):
    """(URI, suite) pairs of the `deb` entries in apt sources, one-line or deb822 format."""
    entries = []
    for name, text in texts:
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
                if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"])[0] == "no":
                    continue
                entries += [(uri, suite) for uri in fields.get("uris", []) for suite in fields.get("suites", [])]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], words[2]))
    return entries


def debian_archives(environ=None, sources_dir="/etc/apt"):
    """(archive URL, security archive URL) for Debian packages.

    ``KUBEFORGE_DEBIAN_MIRROR`` / ``KUBEFORGE_DEBIAN_SECURITY_MIRROR`` when set, else the first
    Debian entries of the machine's own apt sources (a machine behind its own mirror keeps using
    it), else deb.debian.org.
    """
    environ = os.environ if environ is None else environ
    texts = []
    for path in [os.path.join(sources_dir, "sources.list")] + sorted(
            glob.glob(os.path.join(sources_dir, "sources.list.d", "*.list"))
            + glob.glob(os.path.join(sources_dir, "sources.list.d", "*.sources"))):
        try:
            with open(path, encoding="utf-8") as handle:
                texts.append((path, handle.read()))
        except OSError:
            continue
    archive = security = None
    for uri, suite in apt_source_entries(texts):
        base = suite.split("/")[0].split("-")[0]
        if base not in DEBIAN_SUITES:
            continue
        if suite.endswith("-security") or suite.endswith("/updates"):
            security = security or uri.rstrip("/")
        else:
            archive = archive or uri.rstrip("/")
    return (environ.get("KUBEFORGE_DEBIAN_MIRROR") or archive or DEFAULT_ARCHIVE,
            environ.get("KUBEFORGE_DEBIAN_SECURITY_MIRROR") or security or DEFAULT_SECURITY_ARCHIVE)
