# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""For action plugins: copy files from the controller to the host, then run a module on them."""

from __future__ import annotations


def run_with_files(action, module, task_vars, files, module_args):
    """Copy ``files`` ([(controller path, name on the host)]) into the host's temporary directory,
    then run ``module`` with ``module_args(paths on the host)``; the directory, when made here, is
    removed afterwards. Returns the module's result with ``transferred`` (the controller paths)."""
    shell = action._connection._shell
    created = False
    try:
        remotes = []
        if files:
            if not shell.tmpdir:
                action._make_tmp_path()
                created = True
            for local, name in files:
                remote = shell.join_path(shell.tmpdir, name)
                action._transfer_file(local, remote)
                remotes.append(remote)
            action._fixup_perms2([shell.tmpdir] + remotes, execute=False)
        outcome = action._execute_module(module_name=module, module_args=module_args(remotes), task_vars=task_vars)
    finally:
        if created:
            action._remove_tmp_path(shell.tmpdir)
    outcome["transferred"] = [local for local, _name in files]
    return outcome
