# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for kubeforge.cluster.artifacts: resolve on the controller, install on the host.

The controller resolves each component's version, URL (mirror rewrite), checksum and archive
members from the versions table, then:

- ``mode: host``: one module run; the host downloads what is not in place.
- ``mode: controller``: one module run that compares only; if something is missing, the
  controller fetches it once into its cache (a lock per file shared by every fork, and a
  verification record so other forks do not hash it again), pushes it, and runs the module again
  to install. A no-op run costs one module run per host either way.
- ``bundle_dir``: no host is contacted; every artifact goes into a mirror-layout directory with
  ``manifest.json`` and ``SHA256SUMS``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, registry
from ansible_collections.kubeforge.cluster.plugins.plugin_utils import push
from ansible_collections.kubeforge.cluster.plugins.module_utils.artifacts import (
    user_argument_spec,
    ArtifactError,
    download,
    label,
    parse_published_sha256,
    sha256_file,
    fetch_published_sha256,
    hashed_chunks,
)
from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import (
    VersionsError,
    load_table,
    mirror_is_local,
    normalize_overrides,
)

MODULE = "kubeforge.cluster.artifacts"
DEFAULT_CACHE_DIR = "~/.cache/kubeforge/downloads"
CONTROLLER_HINT = ("make it reachable from the controller, or set kubeforge_files_mirror to a mirror "
                   "the controller can reach (an http(s) URL or a directory such as an offline bundle)")
ARCH_FROM_FACTS = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
VARIABLES = (
    "kubeforge_kubernetes_version", "kubeforge_etcd_version", "kubeforge_containerd_version",
    "kubeforge_runc_version", "kubeforge_cni_plugins_version", "kubeforge_crictl_version",
    "kubeforge_nerdctl_version", "kubeforge_helm_version", "kubeforge_gateway_api_version",
)
HOST_KEYS = ("component", "version", "arch", "upstream_url", "url", "sha256", "checksum_source",
             "checksum_url", "format", "members")


# -- controller-side cache --------------------------------------------------------------------

class ControllerCache:
    """Files fetched once on the controller, laid out like a mirror below ``root``.

    ``markers`` holds, per file, the sha256 that was verified with the size and modification time
    it had then, so the many forks of one run (and later runs) do not hash the same file again.
    A lock per file makes concurrent forks wait for one download instead of starting their own.
    """

    def __init__(self, root, markers=None, timeout=60, retries=2, validate_certs=True, collect=False):
        self.root = os.path.abspath(os.path.expanduser(root))
        # collect: copy artifacts from a mirror directory into root too (offline bundle); otherwise
        # a mirror directory on the controller is used where it is.
        self.collect = collect
        self.markers = os.path.abspath(os.path.expanduser(markers or root))
        self.timeout = timeout
        self.retries = retries
        self.validate_certs = validate_certs

    def _key(self, path):
        return hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()

    def _marker_path(self, path):
        return os.path.join(self.markers, ".verified", self._key(path) + ".json")

    def _marker_ok(self, path, expected):
        try:
            with open(self._marker_path(path)) as handle:
                marker = json.load(handle)
            info = os.stat(path)
        except (OSError, ValueError):
            return False
        return (marker.get("sha256") == expected and marker.get("size") == info.st_size
                and marker.get("mtime_ns") == info.st_mtime_ns and marker.get("ino") == info.st_ino)

    def _write_marker(self, path, sha256):
        info = os.stat(path)
        marker = {"path": os.path.abspath(path), "sha256": sha256, "size": info.st_size,
                  "mtime_ns": info.st_mtime_ns, "ino": info.st_ino}
        files.write_atomic(self._marker_path(path), json.dumps(marker, sort_keys=True) + "\n")

    def _lock(self, path):
        lock_dir = os.path.join(self.markers, ".locks")
        os.makedirs(lock_dir, exist_ok=True)
        handle = open(os.path.join(lock_dir, self._key(path) + ".lock"), "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def target(self, spec):
        """Where the artifact lives on the controller: the local mirror file, or the cache."""
        return os.path.join(self.root, *spec["mirror_path"].split("/"))

    def _published(self, spec, target):
        """The published sha256 of a ``checksum: published`` artifact, kept beside it as ``.sha256``."""
        sidecar = target + ".sha256"
        if os.path.exists(sidecar):
            with open(sidecar) as handle:
                return parse_published_sha256(handle.read(), sidecar)
        if spec.get("checksum_path"):
            source = spec["checksum_path"]
            if not os.path.exists(source):
                raise ArtifactError(
                    "%s: the mirror directory has no %s (the published sha256 of %s). Add it, or pin the "
                    "sha256 in kubeforge_download_checksums" % (label(spec), source, spec["upstream_url"]))
            with open(source) as handle:
                value = parse_published_sha256(handle.read(), source)
        else:
            value = fetch_published_sha256(spec["checksum_url"], label(spec), self.timeout, self.retries,
                                           self.validate_certs, CONTROLLER_HINT, "the controller")
        if os.path.abspath(sidecar) != os.path.abspath(spec.get("checksum_path") or ""):
            files.write_atomic(sidecar, value + "\n")
        return value

    def ensure(self, spec, dry_run=False):
        """Make the verified artifact available on the controller.

        Returns ``{"path", "sha256", "fetched"}``; ``fetched`` is True when it was downloaded or
        copied in this call. With ``dry_run`` nothing is written and ``fetched`` says whether it
        would be.
        """
        local_source = spec.get("path")
        in_place = bool(local_source) and (
            not self.collect or os.path.abspath(local_source) == os.path.abspath(self.target(spec)))
        target = local_source if in_place else self.target(spec)
        expected = spec.get("sha256")
        if not expected and os.path.exists(target + ".sha256"):
            with open(target + ".sha256") as handle:
                expected = parse_published_sha256(handle.read(), target + ".sha256")
        if expected and self._marker_ok(target, expected):
            return {"path": target, "sha256": expected, "fetched": False}
        if dry_run:
            present = expected and os.path.exists(target) and sha256_file(target) == expected
            return {"path": target, "sha256": expected, "fetched": not present}
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with self._lock(target):
            if not expected:
                expected = self._published(spec, target)
            if self._marker_ok(target, expected):
                return {"path": target, "sha256": expected, "fetched": False}
            if os.path.exists(target):
                actual = sha256_file(target)
                if actual == expected:
                    self._write_marker(target, expected)
                    return {"path": target, "sha256": expected, "fetched": False}
                if in_place:
                    raise ArtifactError(
                        "sha256 mismatch for %s in the mirror directory (%s): expected %s, got %s. "
                        "Replace the file with the release artifact" % (label(spec), target, expected, actual))
                os.unlink(target)
            if in_place:
                raise ArtifactError("%s: %s is missing from the mirror directory (kubeforge_files_mirror). "
                                    "Add it (hack/update-versions lists the URLs; playbooks/offline_bundle.yml "
                                    "builds such a directory)" % (label(spec), target))
            if local_source:
                tmp, actual = _copy_verified(local_source, os.path.dirname(target), expected, label(spec))
            else:
                tmp, actual = download(spec["url"], os.path.dirname(target), expected, label(spec),
                                       self.timeout, self.retries, self.validate_certs, CONTROLLER_HINT,
                                       "the controller")
            os.chmod(tmp, 0o644)
            files.replace(tmp, target)
            self._write_marker(target, actual)
            return {"path": target, "sha256": actual, "fetched": True}


def _copy_verified(source, directory, expected, what):
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as src:
            tmp = files.stage(directory, hashed_chunks(iter(lambda: src.read(1 << 20), b""), digest), suffix=".part")
    except OSError as exc:
        raise ArtifactError("could not copy %s from %s: %s" % (what, source, exc))
    if digest.hexdigest() != expected:
        os.unlink(tmp)
        raise ArtifactError("sha256 mismatch for %s in %s: expected %s, got %s"
                            % (what, source, expected, digest.hexdigest()))
    return tmp, expected


# -- offline bundle ---------------------------------------------------------------------------

def bundle_images(images, bundle_dir, architectures, previous, image_mirror="", check_mode=False,
                  timeout=60, validate_certs=True, workers=2):
    """Put each of ``images`` ({name, tag, digest}) into ``bundle_dir`` as an OCI archive; return
    (entries, fetched). An archive that is there, names the same digest and matches ``previous``
    (the manifest's entries) is kept unread beyond its index."""
    client = registry.Client(timeout=timeout, validate_certs=validate_certs)
    known = {e.get("path"): e for e in previous or [] if isinstance(e, dict)}

    def one(image):
        for field in ("name", "digest"):
            if not image.get(field):
                raise ArtifactError("image %r has no %s; the bundle holds images by digest only" % (image, field))
        relative = registry.archive_path(image["name"], image.get("tag", ""))
        path = os.path.join(bundle_dir, relative)
        entry = {"name": image["name"], "tag": image.get("tag", ""), "digest": image["digest"], "path": relative,
                 "architectures": sorted(architectures)}
        old = known.get(relative)
        if (old and old.get("digest") == image["digest"] and old.get("architectures") == entry["architectures"]
                and os.path.isfile(path) and os.path.getsize(path) == old.get("size")
                and registry.archive_digest(path) == image["digest"]):
            return dict(old), False
        if check_mode:
            return dict(entry, sha256=None, size=None), True
        work = os.path.join(bundle_dir, ".partial")
        os.makedirs(work, exist_ok=True)
        try:
            entry["sha256"] = registry.pull(client, image["name"], image.get("tag", ""), image["digest"],
                                            architectures, path, work, mirror=image_mirror)
        except registry.RegistryError as exc:
            raise ArtifactError("could not put %s@%s in the bundle: %s" % (image["name"], image["digest"], exc))
        entry["size"] = os.path.getsize(path)
        return entry, True

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, images))
    return [entry for entry, _f in outcomes], sum(1 for _e, fetched in outcomes if fetched)


def _listed(bundle_dir, previous, entries):
    """The manifest's list: entries of earlier runs whose file is still there, then this run's, by path."""
    merged = {e["path"]: e for e in previous if isinstance(e, dict) and e.get("path")
              and os.path.exists(os.path.join(bundle_dir, e["path"]))}
    merged.update({e["path"]: e for e in entries})
    return [merged[p] for p in sorted(merged)]


def build_bundle(table, bundle_dir, names, architectures, kubernetes_versions, versions, variables,
                 mirror, overrides, cache, check_mode=False, workers=4, images=(), image_mirror="",
                 timeout=60, validate_certs=True):
    """Fetch every artifact (and image) into ``bundle_dir`` and write ``manifest.json`` and ``SHA256SUMS``."""
    specs = {}
    for kubernetes in kubernetes_versions:
        wanted = dict(versions)
        wanted["kubernetes"] = str(kubernetes).lstrip("v")
        for arch in architectures:
            for spec in table.resolve_many(names, arch, wanted, variables, mirror, overrides):
                specs[(spec["component"], spec["version"], spec["arch"])] = spec
    ordered = [specs[key] for key in sorted(specs)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda s: cache.ensure(s, dry_run=check_mode), ordered))
    entries = []
    for spec, outcome in zip(ordered, outcomes):
        entry = {
            "component": spec["component"], "version": spec["version"], "arch": spec["arch"],
            "path": spec["mirror_path"], "sha256": outcome["sha256"],
            "checksum_source": spec["checksum_source"], "url": spec["upstream_url"],
        }
        if spec["checksum_source"] == "published":
            entry["checksum_file"] = spec["mirror_path"] + ".sha256"
        entries.append(entry)
    manifest_path = os.path.join(bundle_dir, "manifest.json")
    sums_path = os.path.join(bundle_dir, "SHA256SUMS")
    previous, previous_images = [], []
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as handle:
                loaded = json.load(handle)
            previous, previous_images = loaded.get("artifacts", []), loaded.get("images", [])
        except (OSError, ValueError, AttributeError):
            previous, previous_images = [], []
    artifacts = _listed(bundle_dir, previous, entries)
    image_entries, images_fetched = bundle_images(
        list(images), bundle_dir, architectures, previous_images, image_mirror=image_mirror, check_mode=check_mode,
        timeout=timeout, validate_certs=validate_certs)
    bundled_images = _listed(bundle_dir, previous_images, image_entries)
    manifest = {"format": 1, "artifacts": artifacts, "images": bundled_images}
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    lines = []
    for entry in artifacts:
        if entry.get("sha256"):
            lines.append("%s  %s" % (entry["sha256"], entry["path"]))
        sidecar = entry.get("checksum_file")
        if sidecar and os.path.exists(os.path.join(bundle_dir, sidecar)):
            lines.append("%s  %s" % (sha256_file(os.path.join(bundle_dir, sidecar)), sidecar))
    lines += ["%s  %s" % (e["sha256"], e["path"]) for e in bundled_images if e.get("sha256")]
    sums_text = "\n".join(sorted(lines, key=lambda line: line[66:])) + "\n"
    changed = any(o["fetched"] for o in outcomes) or images_fetched > 0
    for path, text in ((manifest_path, manifest_text), (sums_path, sums_text)):
        current = None
        if os.path.exists(path):
            with open(path) as handle:
                current = handle.read()
        if current != text:
            changed = True
            if not check_mode:
                files.write_atomic(path, text)
    if not check_mode:
        os.makedirs(os.path.join(bundle_dir, "images"), exist_ok=True)
    return {
        "changed": changed,
        "bundle": {
            "dir": bundle_dir, "manifest": manifest_path, "sha256sums": sums_path,
            "artifacts": len(artifacts),
            "fetched": sum(1 for o in outcomes if o["fetched"]),
            "images": len(bundled_images),
            "images_fetched": images_fetched,
        },
        "artifacts": {"%s %s %s" % (s["component"], s["version"], s["arch"]):
                      {"changed": o["fetched"], "path": o["path"], "sha256": o["sha256"]}
                      for s, o in zip(ordered, outcomes)},
    }


# -- the action -------------------------------------------------------------------------------

class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def _var(self, task_vars, name, default=None):
        if name not in task_vars:
            return default
        value = self._templar.template(task_vars[name])
        return default if value is None else value

    def _options(self, task_vars):
        validation, args = self.validate_argument_spec(argument_spec=user_argument_spec())
        del validation
        if args.get("mirror") is None:
            args["mirror"] = self._var(task_vars, "kubeforge_files_mirror", "")
        if args.get("mode") is None:
            args["mode"] = self._var(task_vars, "kubeforge_download_mode", "host")
        if args.get("checksums") is None:
            args["checksums"] = self._var(task_vars, "kubeforge_download_checksums", {})
        if args.get("cache_dir") is None:
            args["cache_dir"] = self._var(task_vars, "kubeforge_download_cache_dir", DEFAULT_CACHE_DIR)
        if args["mode"] not in ("host", "controller"):
            raise AnsibleActionFail("kubeforge_download_mode must be host or controller, got %r" % args["mode"])
        if mirror_is_local(args["mirror"]):
            args["mode"] = "controller"
        args["variables"] = {name: self._var(task_vars, name) for name in VARIABLES
                             if self._var(task_vars, name)}
        return args

    def _arch(self, args, task_vars):
        if args.get("arch"):
            return args["arch"]
        host = self._var(task_vars, "kubeforge_host", {}) or {}
        if isinstance(host, dict) and host.get("arch"):
            return host["arch"]
        facts = self._var(task_vars, "ansible_facts", {}) or {}
        arch = ARCH_FROM_FACTS.get(str(facts.get("architecture", "")))
        if arch:
            return arch
        raise AnsibleActionFail("cannot tell the architecture of %s: set kubeforge_host.arch (preflight does) "
                                "or pass arch" % task_vars.get("inventory_hostname", "this host"))

    def run(self, tmp=None, task_vars=None):
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        try:
            args = self._options(task_vars)
            table = load_table(args.get("table"))
            overrides = normalize_overrides(args["checksums"])
            cache = ControllerCache(args["bundle_dir"] or args["cache_dir"], markers=args["cache_dir"],
                                    timeout=args["timeout"], retries=args["retries"],
                                    validate_certs=args["validate_certs"], collect=bool(args["bundle_dir"]))
            if args["bundle_dir"]:
                names = list(args["components"]) or table.cluster_components()
                kubernetes_versions = args.get("kubernetes_versions") or [
                    args["variables"].get("kubeforge_kubernetes_version") or table.default_kubernetes_version]
                result.update(build_bundle(
                    table, os.path.abspath(os.path.expanduser(args["bundle_dir"])), names,
                    args["architectures"], kubernetes_versions, args["versions"], args["variables"],
                    args["mirror"], overrides, cache, check_mode=self._task.check_mode,
                    images=args["images"], image_mirror=args["image_mirror"], timeout=args["timeout"],
                    validate_certs=args["validate_certs"]))
                return result
            names = list(args["components"])
            if args["all_for_groups"]:
                for name in table.components_for_groups(task_vars.get("group_names", [])):
                    if name not in names:
                        names.append(name)
            if not names:
                result.update(changed=False, artifacts={}, downloaded=[], needed=[],
                              state_file=args["state_file"], installed_files=[],
                              msg="no component asked for (components empty, and no group of this host needs one)")
                return result
            specs = table.resolve_many(names, self._arch(args, task_vars), args["versions"],
                                       args["variables"], args["mirror"], overrides)
        except (VersionsError, ArtifactError) as exc:
            raise AnsibleActionFail(to_text(exc))
        if args["mode"] == "host":
            return self._install_from_host(specs, args, task_vars, result)
        return self._install_from_controller(specs, args, cache, task_vars, result)

    def _module_args(self, specs, args, plan_only=False):
        return {
            "resolved": [{k: spec.get(k) for k in HOST_KEYS + ("src",) if spec.get(k) is not None}
                         for spec in specs],
            "state_file": args["state_file"],
            "timeout": args["timeout"],
            "retries": args["retries"],
            "validate_certs": args["validate_certs"],
            "plan_only": plan_only,
        }

    def _install_from_host(self, specs, args, task_vars, result):
        result.update(self._execute_module(module_name=MODULE, module_args=self._module_args(specs, args),
                                           task_vars=task_vars))
        return result

    def _install_from_controller(self, specs, args, cache, task_vars, result):
        plan = self._execute_module(module_name=MODULE, module_args=self._module_args(specs, args, plan_only=True),
                                    task_vars=task_vars)
        if plan.get("failed") or self._task.check_mode or not plan.get("changed"):
            plan["transferred"] = []
            result.update(plan)
            return result
        needed = set(plan.get("needed") or [])
        pushes = []
        for spec in specs:
            if spec["component"] not in needed:
                continue
            try:
                local = cache.ensure(spec)
            except ArtifactError as exc:
                raise AnsibleActionFail(to_text(exc))
            spec["sha256"] = local["sha256"]
            pushes.append((spec, local["path"], "%s-%s" % (spec["component"], os.path.basename(local["path"]))))

        def module_args(remotes):
            for (spec, _local, _name), remote in zip(pushes, remotes):
                spec["src"] = remote
            return self._module_args(specs, args)

        outcome = push.run_with_files(self, MODULE, task_vars, [(local, name) for _s, local, name in pushes],
                                      module_args)
        result.update(outcome)
        return result
