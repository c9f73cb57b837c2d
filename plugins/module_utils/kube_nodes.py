# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Nodes through the API: pod ranges, labels and taints applied, readiness awaited.

The ``nodes`` module's logic. A node's wanted state (its labels, its taints, and a pod range when
the network plugin reads node.spec.podCIDR) is applied with server-side apply under our field
manager, after a dry run shows whether anything would change. A node the kubelet has not registered
yet is created with that state, so that it has its range and taints from its first moment.
"""

from __future__ import annotations

import time

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api, network

FIELD_MANAGER = "kubeforge"
# Taints Kubernetes itself sets and clears (not-ready, unreachable, unschedulable, pressure...):
# kept as they are. Every other taint is the inventory's: one it no longer names is removed.
SYSTEM_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class NodesError(Exception):
    """Something about the nodes that stops the run, said for the user."""


def parse_taint(value, where):
    """``key=value:Effect``, ``key:Effect`` or {key, value, effect} -> {key, value?, effect}."""
    if isinstance(value, dict):
        taint = {k: value[k] for k in ("key", "value", "effect") if value.get(k) not in (None, "")}
    elif isinstance(value, str) and ":" in value:
        head, effect = value.rsplit(":", 1)
        key, _sep, val = head.partition("=")
        taint = {"key": key, "effect": effect}
        if val:
            taint["value"] = val
    else:
        raise NodesError(f"{where}: taint {value!r} is neither key=value:Effect nor a mapping with key and effect")
    if not taint.get("key") or taint.get("effect") not in EFFECTS:
        raise NodesError(f"{where}: taint {value!r} needs a key and an effect of {', '.join(EFFECTS)}")
    return taint


def _taint_id(taint):
    return (taint["key"], taint.get("value", ""), taint["effect"])


def wanted_taints(own, live):
    """The node's taint list: the inventory's, plus the live ones Kubernetes manages itself."""
    keep = [t for t in live or [] if t.get("key", "").startswith(SYSTEM_TAINT_PREFIXES)]
    result, seen = [], set()
    for taint in list(own) + [{k: t[k] for k in ("key", "value", "effect") if t.get(k)} for t in keep]:
        if _taint_id(taint) not in seen:
            seen.add(_taint_id(taint))
            result.append(taint)
    return result


def node_body(name, labels, taints, pod_cidr):
    spec = {"taints": taints}
    if pod_cidr:
        spec.update(podCIDR=pod_cidr, podCIDRs=[pod_cidr])
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec}


def view(node):
    """What of a Node this module decides: labels, taints (as a set), pod range."""
    if not node:
        return None
    spec = node.get("spec") or {}
    return {
        "labels": dict((node.get("metadata") or {}).get("labels") or {}),
        "taints": sorted(_taint_id({k: t.get(k) for k in ("key", "value", "effect") if t.get(k)})
                         for t in spec.get("taints") or []),
        "podCIDR": spec.get("podCIDR") or "",
    }


def pod_ranges(wanted, order, existing, pod_cidr, node_mask):
    """{node: range} for the nodes of ``wanted``: the ones in ``existing`` keep theirs, the others get
    the lowest free ones in ``order`` (nodes not in it last)."""
    names = [name for name in order if name in {w["name"] for w in wanted}]
    names += [w["name"] for w in wanted if w["name"] not in names]
    try:
        return network.assign_pod_cidrs(names, existing, pod_cidr, node_mask)
    except network.NetworkError as exc:
        raise NodesError(str(exc)) from None


def planned_without_cluster(wanted, order, pod_cidr=None, node_mask=None):
    """Check mode where no cluster runs yet: every node of ``wanted`` would be created, with the
    ranges a first registration would hand out. Returns (changed, results, pod_cidrs)."""
    cidrs = pod_ranges(wanted, order, {}, pod_cidr, node_mask) if pod_cidr else {}
    results = []
    for entry in wanted:
        taints = [parse_taint(t, entry["name"]) for t in entry.get("taints") or []]
        after = view(node_body(entry["name"], dict(entry.get("labels") or {}), taints, cidrs.get(entry["name"])))
        results.append({"name": entry["name"], "action": "created", "before": None, "after": after})
    return bool(results), results, cidrs


class Nodes:
    def __init__(self, client, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.sleep = sleep
        self.clock = clock

    def list(self):
        return {item["metadata"]["name"]: item for item in self.client.request("GET", "/api/v1/nodes").get("items", [])}

    def apply(self, body, dry_run):
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return self.client.request("PATCH", "/api/v1/nodes/" + body["metadata"]["name"], query=query, body=body,
                                   content_type="application/apply-patch+yaml")

    def register(self, wanted, order, pod_cidr=None, node_mask=None, check_mode=False):
        """Apply each node of ``wanted`` ([{name, labels, taints}]); returns (changed, results, pod_cidrs)."""
        live = self.list()
        cidrs = {}
        if pod_cidr:
            existing = {name: (node.get("spec") or {}).get("podCIDR") for name, node in live.items()}
            cidrs = pod_ranges(wanted, order, existing, pod_cidr, node_mask)
        results, changed = [], False
        for entry in wanted:
            name = entry["name"]
            taints = [parse_taint(t, name) for t in entry.get("taints") or []]
            current = live.get(name)
            # A range once given stays (the API refuses to change or drop it); without ranges of ours
            # to hand out (kubeforge_network_plugin: none) the one we gave is still ours to keep.
            held = ((current or {}).get("spec") or {}).get("podCIDR")
            body = node_body(name, dict(entry.get("labels") or {}),
                             wanted_taints(taints, ((current or {}).get("spec") or {}).get("taints")),
                             cidrs.get(name) or held)
            try:
                planned = self.apply(body, dry_run=True)
                before, after = view(current), view(planned)
                if before == after:
                    results.append({"name": name, "action": "unchanged"})
                    continue
                if not check_mode:
                    self.apply(body, dry_run=False)
            except kube_api.ApiError as exc:
                raise NodesError(f"node {name}: {exc}") from None
            changed = True
            results.append({"name": name, "action": "created" if current is None else "configured",
                            "before": before, "after": after})
        return changed, results, cidrs

    def wait_ready(self, names, timeout):
        """Until every node of ``names`` reports Ready; fails naming the others and why."""
        deadline = self.clock() + timeout
        while True:
            live = self.list()
            waiting = {}
            for name in names:
                node = live.get(name)
                if node is None:
                    waiting[name] = "not registered"
                    continue
                ready = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}.get("Ready")
                if not ready or ready.get("status") != "True":
                    waiting[name] = (ready or {}).get("message") or "no Ready condition yet"
            if not waiting:
                return
            if self.clock() >= deadline:
                raise NodesError(f"nodes not Ready after {timeout} s: "
                                 + "; ".join(f"{name}: {why}" for name, why in sorted(waiting.items())))
            self.sleep(2)
