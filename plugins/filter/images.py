# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Image filters: thin wrappers over module_utils/images.py.

Each filter is documented in the YAML file of the same name next to this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeforge.cluster.plugins.module_utils import images, registry


def image_references(table, overrides=None):
    """{image: name:tag@digest} from the image table and kubeforge_images."""
    errors = images.check_overrides(overrides or {}, table)
    if errors:
        raise AnsibleFilterError("image_references: " + "; ".join(f"{s} {r} ({a})" for s, r, a in errors))
    return images.references(table, overrides)


def image_entries(table, overrides=None):
    """[{key, name, tag, digest}] of every image, overrides applied, for the offline bundle."""
    errors = images.check_overrides(overrides or {}, table)
    if errors:
        raise AnsibleFilterError("image_entries: " + "; ".join(f"{s} {r} ({a})" for s, r, a in errors))
    return [dict(images.merged(entry, (overrides or {}).get(key)), key=key) for key, entry in sorted(table.items())]


def bundle_archives(entries, mirror):
    """container_runtime_image_archives items for ``entries`` (image_entries) held by the offline
    bundle at ``mirror``: its archive path, the pinned digest, the reference pods name."""
    out = []
    for entry in entries:
        if not entry.get("digest"):
            raise AnsibleFilterError(f"bundle_archives: {entry.get('key', entry.get('name'))} has no digest; "
                                     "images from the bundle are checked by digest")
        out.append({"url": str(mirror).rstrip("/") + "/" + registry.archive_path(entry["name"], entry.get("tag", "")),
                    "digest": entry["digest"],
                    "images": [f"{entry['name']}:{entry['tag']}" if entry.get("tag") else entry["name"]]})
    return out


class FilterModule:
    """kubeforge.cluster image filters."""

    def filters(self):
        return {'image_references': image_references, 'image_entries': image_entries,
                'bundle_archives': bundle_archives}
