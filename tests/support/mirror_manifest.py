# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Turn a mirror's manifest.json into ``kubeforge_download_checksums``.

A mirror that serves artifacts the versions table does not pin (the test bed repackages Debian's
etcd, containerd, runc and CNI plugins into the upstream layout) lists them in a manifest:
``{"artifacts": [{"component", "version", "arch", "path", "sha256", ...}]}``. The same shape is
written by playbooks/offline_bundle.yml. This converts it into the override variable, so an
install pointed at that mirror verifies every file against the manifest.

    python3 tests/support/mirror_manifest.py MANIFEST [--mirror URL] > vars.json
    ansible-playbook ... -e @vars.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys

HEX64 = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")


def load_manifest(manifest):
    if isinstance(manifest, dict):
        return manifest
    with open(manifest, encoding="utf-8") as handle:
        return json.load(handle)


def checksums_from_manifest(manifest, components=None):
    """``{component: {version: {arch: "sha256:<hex>"}}}`` from a manifest (path or parsed dict).

    ``components`` limits the result to those names. Entries without a sha256 are an error: a
    mirror that cannot say what it serves must not be trusted.
    """
    data = load_manifest(manifest)
    result = {}
    for index, entry in enumerate(data.get("artifacts") or []):
        try:
            component, version, arch, sha256 = (str(entry["component"]), str(entry["version"]).lstrip("v"),
                                                str(entry["arch"]), str(entry["sha256"]))
        except KeyError as exc:
            raise ValueError(f"manifest artifact #{index} lacks {exc.args[0]}: {entry!r}") from None
        if components and component not in components:
            continue
        if not HEX64.match(sha256):
            raise ValueError(f"manifest artifact #{index} ({component} {version} {arch}): bad sha256 {sha256!r}")
        hexdigest = sha256.lower().rsplit(":", maxsplit=1)[-1]
        arches = result.setdefault(component, {}).setdefault(version, {})
        previous = arches.get(arch)
        if previous and previous != "sha256:" + hexdigest:
            raise ValueError(f"manifest lists {component} {version} {arch} twice with different sums")
        arches[arch] = "sha256:" + hexdigest
    return result


def versions_from_manifest(manifest, arch="amd64"):
    """``{component: version}`` for the components the manifest carries for ``arch`` (newest wins)."""
    def key(version):
        return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+~-]", version))

    found = {}
    for component, per_version in checksums_from_manifest(manifest).items():
        usable = [v for v, arches in per_version.items() if arch in arches or "noarch" in arches]
        if usable:
            found[component] = max(usable, key=key)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description="manifest.json -> kubeforge_download_checksums (JSON)")
    parser.add_argument("manifest")
    parser.add_argument("--mirror", help="also set kubeforge_files_mirror to this URL or directory")
    parser.add_argument("--component", action="append", help="only these components (repeatable)")
    args = parser.parse_args(argv)
    variables = {"kubeforge_download_checksums": checksums_from_manifest(args.manifest, args.component)}
    if args.mirror:
        variables["kubeforge_files_mirror"] = args.mirror
    json.dump(variables, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
