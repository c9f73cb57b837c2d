# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Action for kubeforge.cluster.image_archives: archives that lie on the controller (an offline
bundle there, given as a plain absolute path) are copied to the node, and only those the node
lacks: the module is asked first which archives it needs (plan_only), then run on the copies."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

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
        created = False
        transferred = []
        try:
            if not self._connection._shell.tmpdir:
                self._make_tmp_path()
                created = True
            for index in needed:
                source = archives[index]["url"]
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir,
                                                           "%d-%s" % (index, os.path.basename(source)))
                self._transfer_file(source, remote)
                archives[index]["url"] = "file://" + remote
                transferred.append(source)
            self._fixup_perms2([self._connection._shell.tmpdir] + [archives[i]["url"][7:] for i in needed],
                               execute=False)
            # archives of the controller the node does not need are left out rather than re-checked
            wanted = [a for i, a in enumerate(archives) if i not in local or i in needed]
            outcome = self._execute_module(module_name=MODULE, module_args=dict(args, archives=wanted),
                                           task_vars=task_vars)
        finally:
            if created:
                self._remove_tmp_path(self._connection._shell.tmpdir)
        outcome["transferred"] = transferred
        result.update(outcome)
        return result
