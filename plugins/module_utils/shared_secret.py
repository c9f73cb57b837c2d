# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Material that several hosts must hold alike: the CAs and the service-account key pair of the
control planes, the etcd CA of the members, the encryption key of the API servers.

Each is created once, on the first host that holds it (or the first host, when none does), copied
to the others in memory, never regenerated, and refused when two hosts hold different ones. The
control planes' CA files (``pki_catalog.ca_plan``) and their encryption key (``encryption.plan``)
are compared with :func:`holders`, so "different" means the same for both. The etcd plan differs
on purpose: a fresh member holding a stale etcd CA simply receives the cluster's.
"""

from __future__ import annotations


def holders(held):
    """``{value: [hosts]}`` from ``held`` = ``{host: value or None}`` (a checksum, a fingerprint, a
    parsed key), in the order given. Hosts holding nothing are left out; more than one entry means
    the hosts differ."""
    out = {}
    for host, value in held.items():
        if value:
            out.setdefault(value, []).append(host)
    return out
