# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Encryption-at-rest filters: thin wrappers over module_utils/encryption.py.

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

import base64

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import encryption


def encryption_plan(held):
    """Who holds which key, from {host: base64 file content or empty}; see module_utils/encryption."""
    documents = {}
    for host, content in (held or {}).items():
        if not content:
            documents[host] = None
            continue
        try:
            documents[host] = yaml.safe_load(base64.b64decode(content))
        except (ValueError, yaml.YAMLError) as exc:
            raise AnsibleFilterError(f"encryption_plan: {host}: the encryption configuration is not YAML ({exc})")
    return encryption.plan(documents)


def encryption_config(key, resources, provider):
    """The EncryptionConfiguration body for ``key`` ({provider, name, secret})."""
    try:
        return encryption.configuration(resources, provider, key)
    except encryption.EncryptionError as exc:
        raise AnsibleFilterError(f"encryption_config: {exc}")


def encryption_key_conflict(held):
    """A message naming the hosts of each key when ``held`` ({host: {provider, name, fingerprint} or
    None}, as the preflight host check reports them) disagree; empty otherwise."""
    return encryption.fingerprint_conflict(dict(held or {}))


class FilterModule:
    """kubeforge.cluster encryption filters."""

    def filters(self):
        return {"encryption_plan": encryption_plan, "encryption_config": encryption_config,
                "encryption_key_conflict": encryption_key_conflict}
