#!/usr/bin/env python3
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Put numbered keys into etcd in a loop and record which puts etcd acknowledged.

Runs on a node (standard library only) against every member's client URL through etcd's JSON
gateway (POST /v3/kv/put) with a client certificate. A put counts as acknowledged only when a member
answered 200 with a revision; anything else (refused connection, timeout, error status) counts as
failed and the next put goes to the next member.

- ``--stop-file``: until that file appears, each key tried once (``<prefix><n>`` = ``<n>``);
- ``--count N``: exactly N keys, each retried until acknowledged (loading data);
- ``--reload``: read the CA and client certificate files again whenever one of them changes, as a
  client that reloads its certificates does (or one that is restarted, like kube-apiserver).

The result file (JSON) lists the acknowledged numbers and counts the failed puts by error.
"""

import argparse
import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request


def b64(text):
    return base64.b64encode(text.encode()).decode()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True, help="comma-separated client URLs")
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--stop-file", help="stop once this file exists")
    parser.add_argument("--count", type=int, help="put exactly this many keys (each retried until acknowledged)")
    parser.add_argument("--result", required=True)
    parser.add_argument("--prefix", default="/writer/")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--reload", action="store_true", help="re-read the TLS files when they change")
    args = parser.parse_args(argv)

    tls_files = (args.cacert, args.cert, args.key)

    def stamps():
        return tuple(os.stat(path).st_mtime_ns for path in tls_files)

    def tls_context():
        built = ssl.create_default_context(cafile=args.cacert)
        built.load_cert_chain(args.cert, args.key)
        return built

    context, loaded, reloads = tls_context(), stamps(), 0
    endpoints = args.endpoints.split(",")
    acked, failed, errors = [], 0, {}
    current = 0
    number = 0
    started = time.time()
    while time.time() - started < args.max_seconds:
        if args.count is not None and len(acked) >= args.count:
            break
        if args.count is None and (not args.stop_file or os.path.exists(args.stop_file)):
            break
        if args.count is not None:
            number = len(acked)
        if args.reload:
            try:
                now = stamps()
                if now != loaded:
                    context, loaded, reloads = tls_context(), now, reloads + 1
            except (OSError, ssl.SSLError):
                pass  # a file being replaced: the next round reads it
        body = json.dumps({"key": b64(args.prefix + str(number)), "value": b64(str(number))}).encode()
        request = urllib.request.Request(endpoints[current] + "/v3/kv/put", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=args.timeout, context=context) as response:
                answer = json.loads(response.read().decode() or "{}")
            if int((answer.get("header") or {}).get("revision", 0)) > 0:
                acked.append(number)
            else:
                raise ValueError("no revision in the answer")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            failed += 1
            kind = type(exc).__name__ + ": " + str(getattr(exc, "reason", exc))[:80]
            errors[kind] = errors.get(kind, 0) + 1
            current = (current + 1) % len(endpoints)
            time.sleep(0.05)
        if args.count is None:
            number += 1
    attempted = number if args.count is None else len(acked) + failed
    result = {"attempted": attempted, "acknowledged": acked, "failed": failed, "errors": errors,
              "seconds": round(time.time() - started, 1), "reloads": reloads}
    with open(args.result + ".tmp", "w") as handle:
        json.dump(result, handle)
    os.replace(args.result + ".tmp", args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
