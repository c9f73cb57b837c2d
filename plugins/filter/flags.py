# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The component_flags filter: a dict of flags to a sorted list of --name=value strings.

Documented in component_flags.yml next to this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.kubeforge.cluster.plugins.module_utils.flags import FlagError, render_flags

display = Display()


def component_flags(flags, component, allow_unknown=None, version=None):
    """Render ``flags`` for ``component``; every unknown flag is reported in one error."""
    if allow_unknown is not None and isinstance(allow_unknown, str):
        allow_unknown = [allow_unknown]
    try:
        result = render_flags(component, flags, allow_unknown=allow_unknown or (), version=version)
    except FlagError as exc:
        raise AnsibleFilterError('component_flags: %s' % '; '.join(exc.errors))
    for warning in result.warnings:
        display.warning(warning)
    return list(result)


class FilterModule:
    """kubeforge.cluster flag filters."""

    def filters(self):
        return {'component_flags': component_flags}
