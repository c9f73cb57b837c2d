# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: image_table
author: kubeforge.cluster contributors (@kubeforge)
version_added: 0.1.0
short_description: The collection's image table
description:
  - Returns the table of the container images the collection deploys, C(images.yml) at the collection's
    root, read once per controller process; for each image its C(name), C(tag) and C(digest).
  - Roles and playbooks read it here rather than by a path relative to themselves.
"""

EXAMPLES = r"""
- name: Every image, kubeforge_images applied
  ansible.builtin.debug:
    msg: "{{ query('kubeforge.cluster.image_table') | first | kubeforge.cluster.image_references(kubeforge_images | default({})) }}"
"""

RETURN = r"""
_raw:
  description: One element, the table.
  type: list
  elements: dict
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.kubeforge.cluster.plugins.module_utils import addon_check


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        return [addon_check.image_table()]
