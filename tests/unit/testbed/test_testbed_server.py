# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The mirror's HTTP server: ranges, HEAD, and one log line per request (a real server thread)."""

import threading
import time
import urllib.error
import urllib.request

import pytest

from testbed.server import RangeNotSatisfiable, make_server, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-3", 10, (0, 3)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=5-100", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=6-2", 10, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "mirror"
    (root / "dl.k8s.io/release/v1.0.0").mkdir(parents=True)
    (root / "dl.k8s.io/release/v1.0.0/kubectl").write_bytes(bytes(range(256)) * 4)
    log = tmp_path / "server.log"
    server = make_server(str(root), 0, str(log), bind="127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()


def test_get_head_range_and_log(served):
    base, log = served
    url = f"{base}/dl.k8s.io/release/v1.0.0/kubectl"
    with urllib.request.urlopen(url) as response:
        assert response.status == 200
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.read() == bytes(range(256)) * 4
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        assert response.headers["Content-Length"] == "1024"
        assert response.read() == b""
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=256-259"})) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == "bytes 256-259/1024"
        assert response.read() == bytes([0, 1, 2, 3])
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=5000-"}))
    assert caught.value.code == 416
    assert caught.value.headers["Content-Range"] == "bytes */1024"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/missing")
    assert caught.value.code == 404

    # A request is logged once its response is sent: the client may be a moment faster.
    deadline = time.monotonic() + 5
    while True:
        requests = [line.split() for line in log.read_text().splitlines() if not line.startswith("#")]
        if len(requests) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert [(r[2], r[3], r[4], r[5]) for r in requests] == [
        ("GET", "/dl.k8s.io/release/v1.0.0/kubectl", "200", "1024"),
        ("HEAD", "/dl.k8s.io/release/v1.0.0/kubectl", "200", "0"),
        ("GET", "/dl.k8s.io/release/v1.0.0/kubectl", "206", "4"),
        ("GET", "/dl.k8s.io/release/v1.0.0/kubectl", "416", "0"),
        ("GET", "/missing", "404", "0"),
    ]
    assert all(r[1] == "127.0.0.1" for r in requests)
