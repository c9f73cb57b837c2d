# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The versions table (versions.yml at the top of the collection) and everything derived from it.

Controller-side: reads the table with PyYAML, picks the version of each component, resolves its
checksum (user override, then pinned, then the upstream-published ``<url>.sha256``) and rewrites
URLs to a mirror. The result is a plain list of artifact specifications that the ``artifacts``
module installs on a host; the module itself never reads the table.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE_PATH = os.path.join(COLLECTION_ROOT, "versions.yml")

PREFIX = "__download_"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
NOARCH = "noarch"
MIRROR_VARIABLE = "kubeforge_files_mirror"
CHECKSUMS_VARIABLE = "kubeforge_download_checksums"

_CACHE = {}


class VersionsError(ValueError):
    """A component, version, architecture or setting the table cannot serve, with the fix."""


def version_key(version):
    return tuple(int(part) for part in str(version).split("."))


def minor_of(version):
    """``'1.36'`` of ``'1.36.4'`` (or of ``'v1.36.4'``)."""
    return ".".join(str(version or "").lstrip("v").split(".")[:2])


def normalize_sha256(value, what):
    """``sha256:<hex>`` or a bare 64-hex string -> lower-case hex. Anything else is an error."""
    if not isinstance(value, str):
        raise VersionsError(f"{what}: expected \"sha256:<64 hex digits>\", got {value!r}")
    text = value.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    if not HEX64.match(text):
        raise VersionsError(f"{what}: expected \"sha256:<64 hex digits>\", got {value!r}")
    return text


def normalize_overrides(checksums):
    """Validate ``kubeforge_download_checksums``: {component: {version: {arch: "sha256:<hex>"}}}."""
    if checksums in (None, ""):
        return {}
    if not isinstance(checksums, dict):
        raise VersionsError(f"{CHECKSUMS_VARIABLE} must be a mapping component -> version -> arch -> "
                            f"\"sha256:<hex>\", got {type(checksums).__name__}")
    result = {}
    for component, per_version in checksums.items():
        if not isinstance(per_version, dict):
            raise VersionsError(f"{CHECKSUMS_VARIABLE}.{component} must map versions to architectures")
        for version, per_arch in per_version.items():
            version = str(version).lstrip("v")
            if not isinstance(per_arch, dict):
                raise VersionsError(f"{CHECKSUMS_VARIABLE}.{component}.{version} must map architectures "
                                    f"(amd64, arm64, noarch) to \"sha256:<hex>\"")
            for arch, value in per_arch.items():
                what = f"{CHECKSUMS_VARIABLE}.{component}.{version}.{arch}"
                result.setdefault(str(component), {}).setdefault(version, {})[str(arch)] = \
                    normalize_sha256(value, what)
    return result


def rewrite_url(url, mirror):
    """Where to fetch ``url`` from: ``("url", URL)`` or ``("path", absolute path on the controller)``.

    A mirror holds the upstream paths below ``<mirror>/<upstream host>/``.
    """
    mirror = (mirror or "").strip()
    if not mirror:
        return "url", url
    parts = urlsplit(url)
    relative = parts.netloc + parts.path
    if mirror.startswith("file://"):
        mirror = mirror[len("file://"):]
    if mirror.startswith("/"):
        return "path", os.path.join(os.path.normpath(mirror), *relative.split("/"))
    if re.match(r"^https?://[^/]+", mirror):
        return "url", mirror.rstrip("/") + "/" + relative
    raise VersionsError(f"{MIRROR_VARIABLE} must be empty (upstream), an http(s) URL or an absolute "
                        f"directory on the controller; got {mirror!r}")


def mirror_relative_path(url):
    """The path of ``url`` inside a mirror: ``<host>/<path>``."""
    parts = urlsplit(url)
    return parts.netloc + parts.path


def mirror_is_local(mirror):
    mirror = (mirror or "").strip()
    return mirror.startswith("/") or mirror.startswith("file://")


class Table:
    """The parsed versions table."""

    def __init__(self, data, path="<table>"):
        if not isinstance(data, dict) or PREFIX + "components" not in data:
            raise VersionsError(f"{path} is not a versions table (no {PREFIX}components)")
        self.path = path
        self.data = data
        self.components = data[PREFIX + "components"]
        self.supported_minors = [str(m) for m in data[PREFIX + "supported_kubernetes_minors"]]
        self.default_kubernetes_version = str(data[PREFIX + "default_kubernetes_version"])
        self.kubernetes_defaults = {str(k): v for k, v in data[PREFIX + "kubernetes_defaults"].items()}
        self.architectures = list(data[PREFIX + "architectures"])

    # -- components ---------------------------------------------------------------------------

    def component(self, name):
        try:
            return self.components[name]
        except KeyError:
            raise VersionsError(f"unknown component {name!r}; the table has: "
                                f"{', '.join(sorted(self.components))}") from None

    def family(self, name):
        """The key used in __download_kubernetes_defaults and in ``versions`` shortcuts."""
        var = self.component(name)["version_var"]
        return var[len("kubeforge_"):-len("_version")]

    def components_for_groups(self, groups):
        groups = set(groups or ())
        return [name for name, comp in self.components.items() if groups.intersection(comp.get("groups") or ())]

    def cluster_components(self):
        """Every component some inventory group needs (the extras have no groups)."""
        return [name for name, comp in self.components.items() if comp.get("groups")]

    def known_versions(self, name):
        comp = self.component(name)
        if comp["checksum"] == "published":
            versions = [str(v) for v in comp["versions"]]
        else:
            versions = [str(v) for v in comp["checksums"]]
        return sorted(versions, key=version_key, reverse=True)

    # -- versions -----------------------------------------------------------------------------

    def defaults_for(self, kubernetes_version):
        """The pairing for the minor of ``kubernetes_version`` ({} for a minor the table lacks)."""
        return dict(self.kubernetes_defaults.get(minor_of(kubernetes_version), {}))

    def version_for(self, name, versions=None, variables=None):
        """Version of component ``name``: explicit > variable > pairing of the Kubernetes minor > default."""
        versions = versions or {}
        variables = variables or {}
        comp = self.component(name)
        family = self.family(name)
        for key in (name, family):
            if versions.get(key):
                return str(versions[key]).lstrip("v")
        value = variables.get(comp["version_var"])
        if value:
            return str(value).lstrip("v")
        kubernetes = (versions.get("kubernetes") or variables.get("kubeforge_kubernetes_version")
                      or self.default_kubernetes_version)
        kubernetes = str(kubernetes).lstrip("v")
        if family == "kubernetes":
            return kubernetes
        paired = self.defaults_for(kubernetes).get(family)
        return str(paired or comp["default_version"])

    # -- checksums ----------------------------------------------------------------------------

    def checksum(self, name, version, arch, overrides=None):
        """``(hex or None, source)``; source is ``override``, ``pinned`` or ``published``."""
        comp = self.component(name)
        key = NOARCH if comp.get("arch_independent") else arch
        override = ((overrides or {}).get(name) or {}).get(version) or {}
        if key in override:
            return override[key], "override"
        if comp["checksum"] == "pinned":
            pinned = (comp["checksums"].get(version) or {}).get(key)
            if pinned:
                return normalize_sha256(pinned, f"{self.path}: {name} {version} {key}"), "pinned"
        elif version in [str(v) for v in comp["versions"]]:
            return None, "published"
        known = self.known_versions(name)
        shown = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
        raise VersionsError(
            f"no sha256 for {name} {version} ({key}): the versions table has {shown or 'none'}. "
            f"Choose one of those, or give its checksum in {CHECKSUMS_VARIABLE}: "
            f"{{{name}: {{\"{version}\": {{{key}: \"sha256:<hex>\"}}}}}}")

    # -- artifacts ----------------------------------------------------------------------------

    def resolve(self, name, version, arch, mirror="", overrides=None):
        """Everything the host needs to fetch, verify and install one artifact."""
        comp = self.component(name)
        if not VERSION_RE.match(version):
            raise VersionsError(f"{name}: version {version!r} is not MAJOR.MINOR.PATCH")
        if not comp.get("arch_independent") and arch not in self.architectures:
            raise VersionsError(f"{name}: architecture {arch!r} is not one of {', '.join(self.architectures)}")
        sha256, source = self.checksum(name, version, arch, overrides)
        fill = {"version": version, "arch": arch}
        upstream = comp["url"].format(**fill)
        kind, location = rewrite_url(upstream, mirror)
        members = []
        for member in comp["members"]:
            # a member the archives carry only from some release on ("since") is left out before it
            if member.get("since") and version_key(version) < version_key(member["since"]):
                continue
            rendered = {}
            for key, value in member.items():
                if key != "since":
                    rendered[key] = value.format(**fill) if isinstance(value, str) else value
            members.append(rendered)
        spec = {
            "component": name,
            "version": version,
            "arch": NOARCH if comp.get("arch_independent") else arch,
            "upstream_url": upstream,
            "url": location if kind == "url" else None,
            "path": location if kind == "path" else None,
            "sha256": sha256,
            "checksum_source": source,
            "checksum_url": None,
            "checksum_path": None,
            "format": comp["format"],
            "members": members,
            "mirror_path": mirror_relative_path(upstream),
        }
        if source == "published":
            ckind, clocation = rewrite_url(upstream + ".sha256", mirror)
            spec["checksum_url" if ckind == "url" else "checksum_path"] = clocation
        return spec

    def resolve_many(self, names, arch, versions=None, variables=None, mirror="", overrides=None):
        specs = []
        errors = []
        for name in names:
            try:
                version = self.version_for(name, versions, variables)
                specs.append(self.resolve(name, version, arch, mirror, overrides))
            except VersionsError as exc:
                errors.append(str(exc))
        if errors:
            raise VersionsError("; ".join(errors))
        claimed = {}
        for spec in specs:
            for member in spec["members"]:
                dest = member.get("dest") or member.get("dest_dir")
                if dest in claimed and claimed[dest] != spec["component"]:
                    raise VersionsError(f"{dest} would be installed by both {claimed[dest]} and {spec['component']}")
                claimed[dest] = spec["component"]
        return specs


def load_table(path=None):
    """Load (and cache by modification time) the versions table."""
    import yaml  # controller only; the module on the host never reads the table

    path = path or TABLE_PATH
    stamp = os.stat(path).st_mtime_ns
    cached = _CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    with open(path, encoding="utf-8") as handle:
        table = Table(yaml.safe_load(handle), path)
    _CACHE[path] = (stamp, table)
    return table
