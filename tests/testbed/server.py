# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Static HTTP server for the mirror, and its control (start detached, find, stop).

The server answers GET and HEAD, single byte ranges (206/416), and writes one line per request
to its log: ``<UTC time> <client> <METHOD> <path> <status> <bytes sent>``.
"""

import argparse
import datetime
import functools
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

_RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header, size):
    """(first, last) byte of a single-range ``Range`` header, None to serve the whole file.

    Raises RangeNotSatisfiable for a range that starts beyond the file. Several ranges in one
    header are answered with the whole file, which RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - length), size - 1
    first = int(first)
    if first >= size:
        raise RangeNotSatisfiable(header)
    last = size - 1 if not last else min(int(last), size - 1)
    if last < first:
        return None
    return first, last


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    server_version = "kubeforge-testbed-mirror/1"
    log_lock = threading.Lock()
    log_handle = None

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def end_headers(self):
        if getattr(self, "_status", None) in (200, 206):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self):
        self._remaining = None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not header or not os.path.isfile(path):
            return super().send_head()
        try:
            handle = open(path, "rb")
        except OSError:
            return super().send_head()
        stat = os.fstat(handle.fileno())
        try:
            wanted = parse_range(header, stat.st_size)
        except RangeNotSatisfiable:
            handle.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{stat.st_size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if wanted is None:
            handle.close()
            return super().send_head()
        first, last = wanted
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {first}-{last}/{stat.st_size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Last-Modified", self.date_time_string(stat.st_mtime))
        self.end_headers()
        handle.seek(first)
        self._remaining = last - first + 1
        return handle

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        while remaining is None or remaining > 0:
            block = source.read(65536 if remaining is None else min(65536, remaining))
            if not block:
                break
            outputfile.write(block)
            self._sent += len(block)
            if remaining is not None:
                remaining -= len(block)

    def _handle(self, method):
        self._status, self._sent, self._remaining = None, 0, None
        try:
            if method == "GET":
                super().do_GET()
            else:
                super().do_HEAD()
        finally:
            self._write_log(method)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def _write_log(self, method):
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        line = f"{stamp} {self.client_address[0]} {method} {self.path} {self._status or '-'} {self._sent}\n"
        with self.log_lock:
            if self.log_handle:
                self.log_handle.write(line)
                self.log_handle.flush()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        # Requests are logged by _write_log; other messages (errors) go to the log as well.
        if self.log_handle and not format.startswith('"%s" %s %s'):
            with self.log_lock:
                self.log_handle.write(f"# {self.address_string()} {format % args}\n")
                self.log_handle.flush()


def make_server(root, port, log_path, bind="0.0.0.0"):
    """A threaded server for ``root``; requests are logged to ``log_path``."""
    MirrorHandler.log_handle = open(log_path, "a", encoding="utf-8", buffering=1)
    handler = functools.partial(MirrorHandler, directory=root)
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    return server


def serve_forever(root, port, log_path, bind="0.0.0.0"):
    server = make_server(root, port, log_path, bind)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    MirrorHandler.log_handle.write(f"# serving {root} on {bind}:{port} (pid {os.getpid()})\n")
    server.serve_forever()
    server.server_close()


# --- control ---------------------------------------------------------------------------------------


def _paths():
    from .common import state_path

    return state_path("mirror-server.pid"), state_path("mirror-server.port"), state_path("mirror-server.log")


def _is_server(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"testbed.server" in handle.read()
    except OSError:
        return False


def running():
    """(pid, port) of the mirror server this state directory started, or None."""
    pid_file, port_file, _log = _paths()
    try:
        with open(pid_file, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        with open(port_file, encoding="ascii") as handle:
            port = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return (pid, port) if _is_server(pid) else None


def answers(port, timeout=2.0):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200 and "kubeforge-testbed-mirror" in (response.headers.get("Server") or "")
    except (urllib.error.URLError, OSError):
        return False


def _port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def url(port=None):
    from . import podman as pm
    from .common import TestbedError

    if port is None:
        state = running()
        if not state:
            raise TestbedError("the mirror server is not running: hack/testbed mirror --serve")
        port = state[1]
    return f"http://{pm.network_gateway()}:{port}"


def serve(port):
    """Start the server (detached, own session) unless it already runs on ``port``; return the URL."""
    from .common import TestbedError, log, state_dir
    from .mirror import mirror_root

    state = running()
    if state and state[1] == port and answers(port):
        log(f"mirror server: already running (pid {state[0]}, port {port})")
        return url(port)
    if _port_taken(port) and not (state and state[1] == port):
        raise TestbedError(f"port {port} is taken by another program: choose another with --port")
    if state:
        stop()
    pid_file, port_file, log_path = _paths()
    os.makedirs(state_dir(), exist_ok=True)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=package_parent)
    with open(log_path, "ab") as log_handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "testbed.server", "--root", mirror_root(), "--port", str(port), "--log", log_path],
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    with open(pid_file, "w", encoding="ascii") as handle:
        handle.write(f"{process.pid}\n")
    with open(port_file, "w", encoding="ascii") as handle:
        handle.write(f"{port}\n")
    deadline = time.monotonic() + 10
    while not answers(port, timeout=1):
        if process.poll() is not None or time.monotonic() > deadline:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                tail = [line.strip() for line in handle.read().splitlines() if line.strip()][-1:]
            raise TestbedError(f"the mirror server did not start on port {port}: {tail[0] if tail else 'no output'}")
        time.sleep(0.1)
    log(f"mirror server: started (pid {process.pid}, port {port}, log {log_path})")
    return url(port)


def stop():
    from .common import log

    pid_file, port_file, _log = _paths()
    state = running()
    if state:
        pid = state[0]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _is_server(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_server(pid):
            os.kill(pid, signal.SIGKILL)
        log(f"mirror server: stopped (pid {pid})")
    else:
        log("mirror server: not running")
    for path in (pid_file, port_file):
        if os.path.exists(path):
            os.unlink(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="serve the test bed mirror")
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args(argv)
    serve_forever(args.root, args.port, args.log, args.bind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
