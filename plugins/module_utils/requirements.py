# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""What a module does when a Python library it needs is not on the host (yet).

The os role installs python3-cryptography and python3-yaml on the hosts that need them. A real
run fails naming the library. A check-mode run of a first install reaches the PKI modules before
anything was installed: there the module reports that it would change its files (it cannot say
more without the library) instead of failing, so ``--check --diff`` on fresh hosts lists, per
host, what the run would install and write.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib


def require(module, *needs):
    """``needs``: ``(label, present, import traceback)`` per library."""
    missing = [(label, error) for label, present, error in needs if not present]
    if not missing:
        return
    labels = ", ".join(label for label, _error in missing)
    if module.check_mode:
        module.exit_json(
            changed=True, missing_libraries=[label for label, _error in missing],
            msg="check mode: %s is not installed on this host yet (the os role installs it); everything this "
                "task manages is reported as changed, without the details the library would give" % labels)
    label, error = missing[0]
    module.fail_json(msg=missing_required_lib(label), exception=error)
