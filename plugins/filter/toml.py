# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The to_toml filter: the collection's one TOML writer (module_utils/toml_emit.py) for templates.

Documented in to_toml.yml next to this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils.toml_emit import TomlEmitError, dumps


def to_toml(data, header=None, sort_keys=True):
    try:
        return dumps(data, header=header, sort_keys=sort_keys)
    except TomlEmitError as exc:
        raise AnsibleFilterError('to_toml: %s' % exc)


class FilterModule:
    """kubeforge.cluster TOML filter."""

    def filters(self):
        return {'to_toml': to_toml}
