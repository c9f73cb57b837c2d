# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The stale_workloads filter: the workloads whose pods started before a time (module_utils/kube_drain.py).

Documented in stale_workloads.yml next to this file.
"""

from __future__ import annotations

import datetime

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_drain


def stale_workloads(pod_list, namespaces, since_epoch):
    """``[[namespace, "kind/name"]]`` of the workloads in ``namespaces`` with a pod started before
    ``since_epoch`` (seconds), from a pod list (``kubectl get pods -o json``, parsed)."""
    try:
        since = datetime.datetime.fromtimestamp(float(since_epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return kube_drain.workloads_started_before(list(dict(pod_list).get("items") or []), list(namespaces), since)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise AnsibleFilterError("stale_workloads: %s" % exc)


class FilterModule:
    """kubeforge.cluster workload filter."""

    def filters(self):
        return {"stale_workloads": stale_workloads}
