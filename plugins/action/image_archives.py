# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Action for kubeforge.cluster.image_archives: archives that lie on the controller (an offline
bundle there, given as a plain absolute path) are copied to the node, and only those the node
lacks: the module is asked first which archives it needs (plan_only), then run on the copies."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.kubeforge.cluster.plugins.plugin_utils import push

MODULE = "kubeforge.cluster.image_archives"


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        args = dict(self._task.args)
        archives = [dict(a) for a in args.get("archives") or []]
        local = [i for i, a in enumerate(archives) if "://" not in str(a.get("url", ""))]
        if not local:
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        for index in local:
            path = archives[index]["url"]
            if not os.path.isabs(path) or not os.path.isfile(path):
                raise AnsibleActionFail("image archive %s: not a file on the controller (a path must be absolute; "
                                        "URLs need a scheme: https://, http://, file:// for the node)" % path)
        plan = self._execute_module(module_name=MODULE, module_args=dict(args, archives=archives, plan_only=True),
                                    task_vars=task_vars)
        needed = [i for i in plan.get("needed") or [] if i in local]
        if plan.get("failed") or self._task.check_mode or not needed:
            result.update(plan)
            result["transferred"] = []
            return result
        files = [(archives[i]["url"], "%d-%s" % (i, os.path.basename(archives[i]["url"]))) for i in needed]

        def module_args(remotes):
            for index, remote in zip(needed, remotes):
                archives[index]["url"] = "file://" + remote
            # archives of the controller the node does not need are left out rather than re-checked
            return dict(args, archives=[a for i, a in enumerate(archives) if i not in local or i in needed])

        outcome = push.run_with_files(self, MODULE, task_vars, files, module_args)
        result.update(outcome)
        return result
