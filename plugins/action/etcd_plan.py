# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Plan the etcd role's work on the controller, from the inventory and the members' answers."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_plan


class ActionModule(ActionBase):
    """Runs no module on any host and opens no connection: the members were asked before."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # a wrong option fails the task here (AnsibleActionFail), naming the option
        _validation, args = self.validate_argument_spec(argument_spec=etcd_plan.argument_spec())

        hosts = etcd_plan.read_probes(args["hosts"], args["probes"])
        data = dict(mode=args["mode"], target_version=args["target_version"],
                    allow_downgrade=args["allow_downgrade"], force=args["force"], remove=args["remove"],
                    ca_rotating=args["ca_rotating"],
                    etcd_hosts=args["etcd_hosts"], play_hosts=args["play_hosts"], hosts=hosts)
        try:
            plan = etcd_plan.plan(data)
        except etcd_plan.Refusal as exc:
            plan = {"errors": [str(exc)], "warnings": []}

        result["changed"] = False
        if plan["warnings"]:
            result["warnings"] = list(plan["warnings"])
        if plan["errors"]:
            # every refusal at once; nothing of the plan is used after one
            result.update(failed=True, msg="\n".join(plan["errors"]), errors=plan["errors"])
            return result
        result.update(plan=plan, probes={host: entry["probe"] for host, entry in hosts.items()}, errors=[])
        return result
