# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Validate the whole inventory on the controller, contacting no host."""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_check, inventory_check


class ActionModule(ActionBase):
    """Reads ``groups`` and every cluster host's variables; runs no module on any host."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("table", "table_file"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        table = self._task.args.get("table")
        table_file = self._task.args.get("table_file")
        if table is None and table_file:
            try:
                table = self._loader.load_from_file(table_file)
            except AnsibleError as exc:
                return {"failed": True, "msg": f"inventory_check: cannot read the versions table {table_file}: {exc}"}
        table = inventory_check.normalize_table(table or {})

        groups = {name: list(task_vars.get("groups", {}).get(name) or []) for name in inventory_check.CLUSTER_GROUPS}
        cluster_hosts = sorted({h for members in groups.values() for h in members})
        hosts, read_errors = self._collect_host_vars(task_vars.get("hostvars", {}), cluster_hosts)

        errors, warnings, settings = inventory_check.check_inventory(groups, hosts, table)
        errors = read_errors + errors
        result.update(changed=False, settings=settings, errors=errors, hosts=len(cluster_hosts))
        if warnings:
            result["warnings"] = warnings
        if errors:
            del result["settings"]
            lines = "\n".join(f"  - {e}" for e in errors)
            result.update(failed=True, msg=(
                f"Inventory check found {len(errors)} error{'s' if len(errors) != 1 else ''}; "
                f"no host was contacted or changed:\n{lines}"))
        else:
            result["msg"] = f"Inventory is valid: {len(cluster_hosts)} hosts"
        return result

    @staticmethod
    def _collect_host_vars(hostvars, cluster_hosts):
        """Only the variables the checks read, templated one by one so a broken one names itself."""
        hosts, errors = {}, []
        wanted_fixed = ("ip", "ansible_host")
        for host in cluster_hosts:
            try:
                host_vars = hostvars[host]
            except KeyError:
                errors.append(f"host {host}: has no variables (not in the inventory?)")
                continue
            values = {}
            names = [n for n in host_vars if to_text(n).startswith(("kubeforge_",) + component_check.ROLE_VARIABLE_PREFIXES)]
            names += list(wanted_fixed)
            for name in names:
                try:
                    if name in host_vars:
                        values[name] = host_vars[name]
                except AnsibleError as exc:
                    errors.append(f"host {host}: variable {name} cannot be evaluated ({to_text(exc).splitlines()[0]})")
            hosts[host] = values
        return hosts, errors
