# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The plan of a Kubernetes upgrade or downgrade, decided from what the cluster runs.

Every refusal is decided here, before anything changes, and all of them are reported at once:
an API server that does not answer, a node that is not Ready or not registered, a minor skipped,
a downgrade not asked for or of more than one minor, kubelets further behind than the version
skew policy allows.

The rules (Kubernetes version skew policy): the API servers of a cluster differ by at most one
minor; kubelet and kube-proxy are never newer than the oldest API server and at most three minors
older; controller-manager and scheduler move with their API server. So an upgrade moves the
control planes first (one at a time) and then the other nodes; a downgrade the other way round.
"""

from __future__ import annotations

KUBELET_MAX_MINORS_BEHIND = 3


class PlanError(Exception):
    """Input the plan cannot work with."""


def parse_version(value):
    """(major, minor, patch) of ``v1.36.4``, ``1.36.4`` or ``v1.36.4-rc.0+abc`` (pre-release ignored)."""
    text = str(value or "").strip().lstrip("v")
    core = text.split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise PlanError("%r is not a version (MAJOR.MINOR.PATCH)" % value)
    return tuple(int(part) for part in parts)


def text(version):
    return "%d.%d.%d" % version


def minor_text(version):
    return "%d.%d" % version[:2]


def minors_between(older, newer):
    return (newer[0] - older[0]) * 1000 + newer[1] - older[1]


def runtime_version(value):
    """``containerd://2.3.4`` -> ``2.3.4`` (None for another runtime or nothing)."""
    value = str(value or "")
    return value.split("://", 1)[1] if value.startswith("containerd://") else None


def plan(target, apiservers, nodes, control_planes, members, allow_downgrade=False, runtime_target=None):
    """Decide the plan.

    ``apiservers``: {control plane host: version string, or {"error": why} when its API server does
    not answer}.
    ``nodes``: {node name: {"kubelet": version, "ready": bool, "reason": str, "runtime": str}} as the
    API reports them. ``control_planes``: the inventory's control planes; ``members``: every host of
    the inventory's k8s_cluster. ``runtime_target``: the containerd version the nodes should run.
    """
    want = parse_version(target)
    refusals = []
    running = {}
    for host in control_planes:
        answer = apiservers.get(host)
        if isinstance(answer, dict) or answer is None:
            why = (answer or {}).get("error") or "no answer"
            refusals.append("kube-apiserver on %s does not answer (%s): the control planes must all be healthy "
                            "before an upgrade" % (host, why))
            continue
        running[host] = parse_version(answer)
    kubelets = {}
    # without an API server that answers, nothing is known of the nodes: no refusals about them
    for host in members if running else ():
        node = nodes.get(host)
        if node is None:
            refusals.append("%s is in the inventory but not a node of the cluster: join it with scale.yml first, "
                            "or take it out of the inventory" % host)
            continue
        kubelets[host] = parse_version(node.get("kubelet"))
        if not node.get("ready"):
            refusals.append("node %s is not Ready (%s): every node must be Ready before an upgrade"
                            % (host, node.get("reason") or "no reason given"))

    result = {"target": text(want), "direction": "none", "control_planes": [], "workers": [],
              "versions": {}, "refusals": refusals, "from": None}
    for host in members:
        entry = {}
        if host in running:
            entry["kube-apiserver"] = text(running[host])
        if host in kubelets:
            entry["kubelet"] = text(kubelets[host])
        if host in nodes and nodes[host].get("runtime"):
            entry["runtime"] = nodes[host]["runtime"]
        result["versions"][host] = entry
    everything = list(running.values()) + list(kubelets.values())
    if not everything:
        return result
    newest_api = max(running.values()) if running else max(everything)
    oldest_api = min(running.values()) if running else min(everything)
    result["from"] = text(newest_api)

    if minors_between(oldest_api, want) > 1:
        refusals.append("Kubernetes %s would skip a minor: the oldest kube-apiserver runs %s; upgrade one minor at a "
                        "time (to %d.%d first)" % (text(want), text(oldest_api), oldest_api[0], oldest_api[1] + 1))
    # a control plane is in both running and kubelets: each host once
    newer = sorted({host for host, version in list(running.items()) + list(kubelets.items()) if version > want})
    older = sorted({host for host, version in list(running.items()) + list(kubelets.items()) if version < want})
    if newer:
        newest = max(everything)
        if not allow_downgrade:
            refusals.append("Kubernetes %s is older than what %s run%s (%s): a downgrade is done only when asked, with "
                            "kubeforge_allow_downgrade: true; the etcd snapshot taken before the upgrade is the way "
                            "back for the data" % (text(want), ", ".join(sorted(set(newer))),
                                                   "s" if len(set(newer)) == 1 else "", text(newest)))
        if minors_between(want, newest) > 1:
            refusals.append("Kubernetes %s is more than one minor below %s: a downgrade goes back one minor at most"
                            % (text(want), text(newest)))
        if older:
            refusals.append("the cluster runs versions both above and below %s (%s above, %s below): bring it to one "
                            "version first" % (text(want), ", ".join(newer), ", ".join(older)))
        result["direction"] = "downgrade"
    elif older:
        result["direction"] = "upgrade"
        for host, version in sorted(kubelets.items()):
            if minors_between(version, want) > KUBELET_MAX_MINORS_BEHIND:
                refusals.append("kubelet on %s runs %s, more than %d minors behind %s: move it up first"
                                % (host, text(version), KUBELET_MAX_MINORS_BEHIND, text(want)))

    def stale(host):
        runtime = runtime_version((nodes.get(host) or {}).get("runtime"))
        return (running.get(host, want) != want or kubelets.get(host, want) != want
                or bool(runtime_target and runtime and runtime != runtime_target))

    result["control_planes"] = [host for host in control_planes if stale(host)]
    result["workers"] = [host for host in members if host not in control_planes and stale(host)]
    if result["direction"] == "none" and (result["control_planes"] or result["workers"]):
        result["direction"] = "runtime"
    return result


def summary(result):
    """One line for the run's output."""
    if result["refusals"]:
        return "refused: " + "; ".join(result["refusals"])
    moving = result["control_planes"] + result["workers"]
    if not moving:
        return "every node already runs Kubernetes %s; nothing to do" % result["target"]
    order = ("control planes %s, then workers %s" if result["direction"] != "downgrade"
             else "workers %s, then control planes %s")
    parts = ((result["control_planes"], result["workers"]) if result["direction"] != "downgrade"
             else (result["workers"], result["control_planes"]))
    return "%s from %s to %s: %s" % (
        result["direction"], result["from"], result["target"],
        order % tuple(", ".join(part) or "none" for part in parts))
