# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Material that several hosts must hold alike: the CAs and the service-account key pair of the
control planes, the etcd CA of the members, the encryption key of the API servers.

Each is created once, on the first host that holds it (or the first host, when none does), copied
to the others in memory, never regenerated, and refused when two hosts hold different ones.
:func:`share` makes that decision for the cluster CAs (``pki_catalog.ca_plan``) and the etcd CA
(``etcd_plan``): which host is the source, which hosts of the run receive a copy, which hosts
differ. The two plans differ only in the arguments they give it: a control plane holding another CA
is refused, while an etcd member is compared only when it runs or holds data (a fresh member holding
a stale etcd CA simply receives the cluster's). Values are compared with :func:`holders`, so
"different" means the same for the CAs and for the encryption key (``encryption.plan``).
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


def share(hosts, play_hosts, held, names, prefer, creators, required=None, compare=None, compared=None):
    """Where material that every host of ``hosts`` must hold alike comes from, and who gets a copy.

    ``held``: ``{host: {name: value or None}}`` for the hosts that were asked (a host absent was
    not asked, or could not be: it is neither a source nor copied to); ``names``: the files that
    make up the material, a value identifies a file's content (a checksum), None means absent.

    * ``prefer``: tests of one host's entry, best first. The source is the first host, in ``hosts``
      order, that passes the first test any host passes (a *holder*); when none does, the first of
      ``creators``, which creates the material; None when there is none.
    * ``required``: the names a host must hold, else it receives a copy (default: ``names``).
    * ``compare``, ``compared``: the names and hosts whose different versions are conflicts
      (default: every name, every host asked). A host that is not compared and holds another version
      than the source receives the source's.

    Returns a dict:

    * ``host``: the source; ``holder``: whether it was found holding the material;
    * ``held``: the names the source holds;
    * ``copy_to``: the hosts of the run, asked, other than the source and not conflicting, that lack
      a required name or hold a version other than the source's (or what the source lacks);
    * ``differ``: ``{name: {value: [hosts]}}``, the compared names that the compared hosts (and
      the source) hold in more than one version;
    * ``conflicting``: the compared hosts holding a compared name in another version than the
      holder's (none when the source creates the material: there is nothing to compare with);
    * ``missing``: the compared names, sorted, that a compared host holds and the source lacks.
    """
    names = list(names)
    required = names if required is None else list(required)
    compare = names if compare is None else list(compare)
    asked = [h for h in hosts if h in held]
    compared = asked if compared is None else [h for h in hosts if h in compared and h in held]

    source, holder = None, False
    for test in prefer:
        source = next((h for h in asked if test(held[h])), None)
        if source is not None:
            holder = True
            break
    if source is None:
        source = next(iter(creators), None)
    reference = held.get(source) or {}

    judged = [h for h in hosts if h in compared or (h == source and h in held)]
    differ = {}
    for name in compare:
        groups = holders({h: held[h].get(name) for h in judged})
        if len(groups) > 1:
            differ[name] = groups
    conflicting = []
    if holder:
        conflicting = [h for h in compared if h != source
                       and any(held[h].get(n) and reference.get(n) and held[h].get(n) != reference.get(n)
                               for n in compare)]
    missing = sorted({n for h in compared if h != source for n in compare
                      if held[h].get(n) and not reference.get(n)})
    copy_to = [h for h in asked if h in play_hosts and h != source and h not in conflicting
               and (any(not held[h].get(n) for n in required)
                    or any(held[h].get(n) and held[h].get(n) != reference.get(n) for n in names))]
    return {"host": source, "holder": holder, "held": [n for n in names if reference.get(n)],
            "copy_to": copy_to, "differ": differ, "conflicting": conflicting, "missing": missing}
