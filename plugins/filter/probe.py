# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The probe_results filter: one probe's registrations by host (module_utils/probe.py).

Documented in probe_results.yml next to this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import probe


def probe_results(hostvars, hosts, var, delegated=None):
    """What ``hosts`` registered in ``var``, and the results of the ``delegated`` loop, by host."""
    try:
        return probe.by_host(hostvars, list(hosts), var, dict(delegated or {}))
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("probe_results: %s" % exc)


class FilterModule:
    """kubeforge.cluster probe filter."""

    def filters(self):
        return {"probe_results": probe_results}
