# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Cordon, drain, uncordon and delete a node through the API, the way an upgrade or a removal needs.

A drain evicts (the eviction API, which keeps every PodDisruptionBudget) every pod of the node
but those a drain leaves: DaemonSet pods (their controller would put them back at once) and static
pods (the kubelet runs them from files; their API objects are mirrors). A pod that no controller
recreates is refused before anything changes, unless ``force``. An eviction a budget refuses is
tried again until the time allowed runs out; then the drain stops naming each pod still there and
the budget that holds it. Nothing is ever deleted past a budget unless ``disable_eviction``.

The cordon of a drain carries the annotation ``CORDON_ANNOTATION``: uncordoning lifts only a cordon
of ours, so a node a person cordoned stays cordoned through an upgrade.
"""

from __future__ import annotations

import time
import urllib.parse

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api

CORDON_ANNOTATION = "kubeforge.io/cordoned-for"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
POLL_SECONDS = 2


class DrainError(Exception):
    """A drain that cannot go on, with the node and the pods at fault."""


def selector_matches(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``.

    An empty selector selects every pod (policy/v1); a missing one selects none.
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def is_ready(node):
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_id(pod):
    meta = pod.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def _controller(pod):
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def workloads_started_before(pods, namespaces, since):
    """``[[namespace, "kind/name"]]``, sorted and each once, of the Deployments, DaemonSets and
    StatefulSets in ``namespaces`` with a pod that started before ``since`` (an RFC 3339 UTC time,
    ``2026-12-03T10:00:00Z``; such times sort as text); what ``kubectl rollout restart`` takes. A
    Deployment is known by its ReplicaSet's name, the Deployment's and the pod template hash."""
    out = set()
    for pod in pods:
        meta = pod.get("metadata") or {}
        started = (pod.get("status") or {}).get("startTime")
        owner = _controller(pod)
        if meta.get("namespace") not in namespaces or not started or started >= since or owner is None:
            continue
        template_hash = (meta.get("labels") or {}).get("pod-template-hash") or ""
        name = owner.get("name") or ""
        if owner.get("kind") == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
            out.add((meta["namespace"], "deployment/" + name[:-len(template_hash) - 1]))
        elif owner.get("kind") in ("DaemonSet", "StatefulSet"):
            out.add((meta["namespace"], owner["kind"].lower() + "/" + name))
    return [list(entry) for entry in sorted(out)]


def classify(pods, force=False):
    """Split the pods of a node into (to evict, left alone with why, refused with why)."""
    evict, left, refused = [], [], []
    for pod in pods:
        meta = pod.get("metadata") or {}
        controller = _controller(pod)
        phase = (pod.get("status") or {}).get("phase")
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            left.append({"pod": pod_id(pod), "reason": "static pod (the kubelet runs it from a file)"})
        elif controller and controller.get("kind") == "DaemonSet":
            left.append({"pod": pod_id(pod), "reason": "DaemonSet %s" % controller.get("name")})
        elif controller is None and phase not in ("Succeeded", "Failed") and not force:
            refused.append({"pod": pod_id(pod), "reason": "no controller would recreate it elsewhere"})
        else:
            evict.append(pod)
    return evict, left, refused


def describe_budget(pdb):
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    rule = ("minAvailable %s" % spec["minAvailable"] if "minAvailable" in spec
            else "maxUnavailable %s" % spec.get("maxUnavailable"))
    return "PodDisruptionBudget %s/%s (%s; %s of %s pods healthy, %s disruptions allowed)" % (
        (pdb.get("metadata") or {}).get("namespace"), (pdb.get("metadata") or {}).get("name"), rule,
        status.get("currentHealthy", "?"), status.get("expectedPods", "?"), status.get("disruptionsAllowed", "?"))


class Drainer(object):
    def __init__(self, client, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.sleep = sleep
        self.clock = clock

    # --- the node ---------------------------------------------------------------------------------

    def node(self, name):
        try:
            return self.client.request("GET", "/api/v1/nodes/" + name)
        except kube_api.ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _patch_node(self, name, patch):
        return self.client.request("PATCH", "/api/v1/nodes/" + name, body=patch,
                                   content_type="application/merge-patch+json")

    def cordon(self, name, reason, check_mode=False):
        """Mark the node unschedulable (ours, with ``reason``); False when it already was."""
        node = self.node(name)
        if node is None:
            raise DrainError("node %s is not registered in the cluster" % name)
        if (node.get("spec") or {}).get("unschedulable"):
            return False
        if not check_mode:
            self._patch_node(name, {"metadata": {"annotations": {CORDON_ANNOTATION: reason}},
                                    "spec": {"unschedulable": True}})
        return True

    def uncordon(self, name, check_mode=False):
        """Lift a cordon of ours. Returns (changed, note): a cordon of someone else stays."""
        node = self.node(name)
        if node is None:
            raise DrainError("node %s is not registered in the cluster" % name)
        ours = CORDON_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        if not ours:
            return False, ("%s was cordoned before this run, not by it: it stays cordoned" % name) if cordoned else ""
        if not check_mode:
            self._patch_node(name, {"metadata": {"annotations": {CORDON_ANNOTATION: None}},
                                    "spec": {"unschedulable": None}})
        return True, ""

    def delete_node(self, name, check_mode=False):
        if self.node(name) is None:
            return False
        if not check_mode:
            try:
                self.client.request("DELETE", "/api/v1/nodes/" + name)
            except kube_api.ApiError as exc:
                if exc.status != 404:
                    raise
        return True

    # --- the pods ---------------------------------------------------------------------------------

    def pods_on(self, name):
        query = {"fieldSelector": "spec.nodeName=" + name}
        return self.client.request("GET", "/api/v1/pods", query=query).get("items") or []

    def _pod_path(self, pod):
        meta = pod["metadata"]
        return "/api/v1/namespaces/%s/pods/%s" % (urllib.parse.quote(meta["namespace"]), urllib.parse.quote(meta["name"]))

    def _still_there(self, pod):
        try:
            live = self.client.request("GET", self._pod_path(pod))
        except kube_api.ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return (live.get("metadata") or {}).get("uid") == pod["metadata"].get("uid")

    def _evict(self, pod, grace_period, disable_eviction):
        """True when the pod is going; a string (the API's reason) when an eviction is refused for now."""
        options = {} if grace_period < 0 else {"gracePeriodSeconds": grace_period}
        options["preconditions"] = {"uid": pod["metadata"].get("uid")}
        try:
            if disable_eviction:
                self.client.request("DELETE", self._pod_path(pod), body=options)
            else:
                meta = pod["metadata"]
                self.client.request("POST", self._pod_path(pod) + "/eviction", no_retry=(429,), body={
                    "apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "deleteOptions": options})
        except kube_api.ApiError as exc:
            if exc.status in (404, 409):  # gone, or replaced by a new pod of the same name
                return True
            if exc.status == 429:
                return exc.message or "refused by a disruption budget"
            raise
        return True

    def budgets_of(self, pod):
        namespace = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        items = self.client.request(
            "GET", "/apis/policy/v1/namespaces/%s/poddisruptionbudgets" % urllib.parse.quote(namespace)).get("items") or []
        return [pdb for pdb in items if selector_matches((pdb.get("spec") or {}).get("selector"), labels)]

    def drain(self, name, timeout, force=False, disable_eviction=False, grace_period=-1, reason="drain",
              check_mode=False, skip_unready=False):
        """Cordon and empty the node; returns a dict of what happened (or would).

        ``skip_unready``: a node that is not Ready (its kubelet is gone: no pod on it can stop
        cleanly) is left as it is, and the result says why.
        """
        node = self.node(name)
        if node is None and skip_unready:
            return {"cordoned": False, "evicted": [], "left": [], "seconds": 0.0,
                    "skipped": "%s is not a node of the cluster: nothing to drain" % name}
        if node is None:
            raise DrainError("node %s is not registered in the cluster" % name)
        if skip_unready and not is_ready(node):
            return {"cordoned": False, "evicted": [], "left": [], "seconds": 0.0,
                    "skipped": "node %s is not Ready: not drained (its pods go when the Node object does)" % name}
        evict, left, refused = classify(self.pods_on(name), force)
        if refused:
            raise DrainError("node %s was not drained, nothing changed: %s. Such a pod is gone for good once "
                             "evicted; move it yourself, or drain with force to evict it anyway"
                             % (name, "; ".join("%s: %s" % (r["pod"], r["reason"]) for r in refused)))
        cordoned = self.cordon(name, reason, check_mode)
        result = {"cordoned": cordoned, "evicted": [pod_id(pod) for pod in evict], "left": left, "seconds": 0.0,
                  "skipped": ""}
        if check_mode or not evict:
            return result
        start = self.clock()
        deadline = start + timeout
        pending = list(evict)      # not yet accepted for eviction
        going = []                 # accepted, not yet gone
        refusals = {}
        while True:
            for pod in list(pending):
                outcome = self._evict(pod, grace_period, disable_eviction)
                if outcome is True:
                    pending.remove(pod)
                    going.append(pod)
                    refusals.pop(pod_id(pod), None)
                else:
                    refusals[pod_id(pod)] = outcome
            going = [pod for pod in going if self._still_there(pod)]
            if not pending and not going:
                result["seconds"] = round(self.clock() - start, 1)
                return result
            if self.clock() >= deadline:
                break
            self.sleep(POLL_SECONDS)
        problems = []
        for pod in pending:
            budgets = self.budgets_of(pod)
            held = ", ".join(describe_budget(pdb) for pdb in budgets) or refusals.get(pod_id(pod), "eviction refused")
            problems.append("pod %s is held by %s" % (pod_id(pod), held))
        for pod in going:
            problems.append("pod %s is still terminating" % pod_id(pod))
        raise DrainError(
            "drain of node %s stopped after %d s; it stays cordoned and no pod was deleted past its budget: %s. "
            "Free the budget (scale the workload up, or relax the budget) and run again, or allow deleting "
            "past budgets (disable_eviction; in the playbooks node_drain_disable_eviction=true)"
            % (name, timeout, "; ".join(problems)))
