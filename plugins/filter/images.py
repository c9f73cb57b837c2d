# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Image filters: thin wrappers over module_utils/images.py.

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import images


def image_references(table, overrides=None):
    """{image: name:tag@digest} from the image table and kubeforge_images."""
    errors = images.check_overrides(overrides or {}, table)
    if errors:
        raise AnsibleFilterError("image_references: " + "; ".join(f"{s} {r} ({a})" for s, r, a in errors))
    return images.references(table, overrides)


class FilterModule:
    """kubeforge.cluster image filters."""

    def filters(self):
        return {'image_references': image_references}
