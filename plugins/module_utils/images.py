# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The container images the collection deploys: the table (images.yml at the collection's root),
the inventory's overrides (kubeforge_images) and the references pods name.

An entry is {name, tag, digest}. An override may give any of them; one that changes the name or
the tag without a digest drops the table's digest (it belongs to the table's name and tag), so the
reference is then name:tag. An override must give a tag or a digest: a bare name would pull
whatever its registry calls latest.
"""

from __future__ import annotations

import re

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
FIELDS = ("name", "tag", "digest")


def merged(entry, override):
    """The entry after ``override`` ({name, tag, digest}, any of them)."""
    override = override or {}
    out = {"name": override.get("name") or entry["name"], "tag": override.get("tag") or entry.get("tag") or "",
           "digest": override.get("digest") or ""}
    if not out["digest"] and not override.get("name") and not override.get("tag"):
        out["digest"] = entry.get("digest") or ""
    return out


def reference(entry):
    """``name:tag@digest``, ``name:tag`` or ``name@digest``."""
    text = entry["name"]
    if entry.get("tag"):
        text += ":" + entry["tag"]
    if entry.get("digest"):
        text += "@" + entry["digest"]
    return text


def references(table, overrides):
    """{key: reference} of every image of ``table``, with ``overrides`` applied."""
    overrides = overrides or {}
    return {key: reference(merged(entry, overrides.get(key))) for key, entry in sorted(table.items())}


def check_overrides(overrides, table):
    """Errors of ``overrides`` (kubeforge_images) as (subject, rule, accepted) triples."""
    errors = []
    if not isinstance(overrides, dict):
        return [("kubeforge_images", f"must be a mapping, got {type(overrides).__name__}",
                 "expected {image: {name, tag, digest}}, e.g. {coredns: {tag: v1.14.2, digest: 'sha256:...'}}")]
    for key, override in sorted(overrides.items(), key=lambda item: str(item[0])):
        subject = f"kubeforge_images.{key}"
        if key not in table:
            errors.append((subject, "is not an image the collection deploys",
                           f"expected one of: {', '.join(sorted(table))}"))
            continue
        if not isinstance(override, dict):
            errors.append((subject, f"must be a mapping, got {type(override).__name__}",
                           "expected {name, tag, digest}, any of them"))
            continue
        unknown = sorted(str(field) for field in override if field not in FIELDS)
        if unknown:
            errors.append((subject, f"has unknown field(s) {', '.join(unknown)}", "expected name, tag, digest"))
        name, tag, digest = (override.get(field) for field in FIELDS)
        if not tag and not digest:
            errors.append((subject, "gives neither a tag nor a digest",
                           f"add tag (e.g. {table[key].get('tag')!s}) or digest (sha256:<64 hex>), or both"))
        if name is not None and not (isinstance(name, str) and _NAME.match(name)):
            errors.append((f"{subject}.name", f"{name!r} is not an image name",
                           f"expected e.g. {table[key]['name']} or registry.example.com:5000/mirror/{key}"))
        if tag is not None and not (isinstance(tag, str) and _TAG.match(tag)):
            errors.append((f"{subject}.tag", f"{tag!r} is not an image tag",
                           "expected letters, digits, '_', '.', '-' (at most 128), e.g. v1.2.3; quote numbers"))
        if digest is not None and not (isinstance(digest, str) and _DIGEST.match(digest)):
            errors.append((f"{subject}.digest", f"{digest!r} is not a sha256 digest", "expected sha256:<64 hex digits>"))
    return errors
