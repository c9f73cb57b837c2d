# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The local file mirror: release files in the upstream layout (path below the mirror root =
upstream host + path), and OCI image archives for containers inside the nodes.

Two sources: the Go builds (gobuild: Kubernetes, etcd 3.6, containerd 2.x, runc, crictl, CNI
plugins at the versions of the versions table) and Debian's packages of etcd, containerd, runc and
the CNI plugins, repackaged, for the older releases that upgrade tests start from. Debian's
versions are whatever bookworm, trixie and sid carry at the time of the build; an artifact is
rebuilt only when the Debian package or the Go recipe it comes from changes.
"""

import concurrent.futures
import datetime
import glob
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time

from . import gobuild, goartifacts, oci
from . import image as node_image
from . import podman as pm
from .common import TestbedError, Timer, atomic_write, debian_archives, locked, log, run, state_path
from .manifest import glibc_key, load_manifest, upstream_version, write_manifest
from .release import binary_glibc, copy_file, write_checksums, write_tar_gz

ARCH = "amd64"
# The machine's own Debian archive (or KUBEFORGE_DEBIAN_MIRROR), for every suite.
DEBIAN, DEBIAN_SECURITY = debian_archives()
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITE_ORDER = ("bookworm", "trixie", "sid")
APT_SOURCES = {
    "bookworm": ((DEBIAN, "bookworm"), (DEBIAN, "bookworm-updates"), (DEBIAN_SECURITY, "bookworm-security")),
    "trixie": ((DEBIAN, "trixie"), (DEBIAN, "trixie-updates"), (DEBIAN_SECURITY, "trixie-security")),
    "sid": ((DEBIAN, "sid"),),
}
LISTS_MAX_AGE = 6 * 3600

# component -> the Debian packages it is built from (the first gives the version)
PACKAGES = {
    "etcd": ("etcd-server", "etcd-client"),
    "containerd": ("containerd",),
    "runc": ("runc",),
    "cni_plugins": ("containernetworking-plugins",),
}
IMAGE_SOURCE_SUITE = "bookworm"
IMAGE_PACKAGES = ("busybox", "libc6")
# flannel's image: iptables and every library it and its extensions load.
IPTABLES_PACKAGES = ("iptables", "libxtables12", "libip4tc2", "libip6tc2", "libnftnl11", "libmnl0",
                     "libnetfilter-conntrack3", "libnfnetlink0")
IPTABLES_COMMANDS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                     "ip6tables-restore")

# Files of each release archive: (name, required)
ETCD_BINARIES = (("etcd", True), ("etcdctl", True), ("etcdutl", False))
CONTAINERD_BINARIES = (
    ("containerd", True),
    ("containerd-shim", False),
    ("containerd-shim-runc-v1", False),
    ("containerd-shim-runc-v2", True),
    ("containerd-stress", False),
    ("ctr", True),
)

# How each binary is asked for its version in the node check.
VERSION_COMMANDS = {
    "etcd": "{bin} --version",
    "etcdctl": "{bin} version",
    "etcdutl": "{bin} version",
    "containerd": "{bin} --version",
    "containerd-shim": "{bin} -h",  # the v1 shim has no version flag; -h proves it loads
    "containerd-shim-runc-v1": "{bin} -v",
    "containerd-shim-runc-v2": "{bin} -v",
    "containerd-stress": "{bin} --version",
    "ctr": "{bin} --version",
    "runc": "{bin} --version",
    "kubectl": "{bin} version --client",
    "kubeadm": "{bin} version -o short",
    "crictl": "{bin} --version",
}
CNI_VERSION_COMMAND = "CNI_COMMAND=VERSION {bin}"
# Bumped when the commands above change: artifacts are then checked again.
CHECK_VERSION = 2

PAUSE_SOURCE = r"""/* Test bed pause: holds a pod's namespaces; exits on SIGINT/SIGTERM; reaps children. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void)
{
    struct sigaction action;

    memset(&action, 0, sizeof(action));
    action.sa_handler = stop;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    for (;;)
        pause();
    return 0;
}
"""
IMAGE_RECIPE_VERSION = "3"
IMAGES_DIR = "testbed/images"
BUSYBOX_IMAGE = "docker.io/library/busybox:testbed"
PAUSE_NAME = "registry.k8s.io/pause"


def mirror_root():
    return state_path("mirror")


def manifest_path():
    return os.path.join(mirror_root(), "manifest.json")


# --- upstream paths -------------------------------------------------------------------------


def artifact_path(component, version, arch=ARCH):
    """Path below the mirror root: the upstream host and path of the release artifact."""
    if component == "etcd":
        return f"github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-{arch}.tar.gz"
    if component == "containerd":
        return f"github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-{arch}.tar.gz"
    if component == "runc":
        return f"github.com/opencontainers/runc/releases/download/v{version}/runc.{arch}"
    if component == "cni_plugins":
        return f"github.com/containernetworking/plugins/releases/download/v{version}/cni-plugins-linux-{arch}-v{version}.tgz"
    raise ValueError(f"unknown component {component!r}")


# --- apt for other suites -------------------------------------------------------------------


class AptSuite:
    """apt with its own sources list, lists, cache and (empty) dpkg status: the host is untouched."""

    def __init__(self, suite):
        self.suite = suite
        self.dir = state_path("cache", "apt", suite)

    def _p(self, *parts):
        return os.path.join(self.dir, *parts)

    def options(self):
        return [
            "-o",
            f"Dir::Etc::SourceList={self._p('sources.list')}",
            "-o",
            f"Dir::Etc::SourceParts={self._p('sources.list.d')}",
            "-o",
            f"Dir::Etc::Preferences={self._p('preferences')}",
            "-o",
            f"Dir::Etc::PreferencesParts={self._p('preferences.d')}",
            "-o",
            f"Dir::State::Lists={self._p('lists')}",
            "-o",
            f"Dir::State::status={self._p('status')}",
            "-o",
            f"Dir::Cache={self._p('cache')}",
            "-o",
            f"Dir::Cache::archives={self._p('archives')}",
            # The host may switch these caches off; without them every query re-reads the lists.
            "-o",
            "Dir::Cache::pkgcache=pkgcache.bin",
            "-o",
            "Dir::Cache::srcpkgcache=srcpkgcache.bin",
            "-o",
            f"APT::Architecture={ARCH}",
            "-o",
            "APT::Architectures::=",
            "-o",
            f"APT::Architectures::={ARCH}",
        ]

    def prepare(self):
        for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache", "archives/partial"):
            os.makedirs(self._p(sub), exist_ok=True)
        if not os.path.exists(self._p("status")):
            atomic_write(self._p("status"), "")
        text = "".join(f"deb [signed-by={KEYRING}] {url} {dist} main\n" for url, dist in APT_SOURCES[self.suite])
        current = None
        if os.path.exists(self._p("sources.list")):
            with open(self._p("sources.list"), encoding="utf-8") as handle:
                current = handle.read()
        if current != text:
            atomic_write(self._p("sources.list"), text)
            stamp = self._p("updated")
            if os.path.exists(stamp):
                os.unlink(stamp)

    def update(self, refresh=False):
        """apt-get update unless the lists are younger than LISTS_MAX_AGE. True when updated."""
        self.prepare()
        stamp = self._p("updated")
        if not refresh and os.path.exists(stamp) and time.time() - os.path.getmtime(stamp) < LISTS_MAX_AGE:
            return False
        run(["apt-get", "-q", *self.options(), "update"], timeout=900)
        atomic_write(stamp, datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
        return True

    def candidates(self, packages):
        """Candidate version of each package; packages the suite does not carry are left out."""
        proc = run(["apt-cache", *self.options(), "show", "--no-all-versions", *packages], check=False)
        found = {}
        name = None
        for line in proc.stdout.splitlines():
            if line.startswith("Package: "):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("Version: ") and name:
                found.setdefault(name, line.split(":", 1)[1].strip())
        return found

    def download(self, package, version, directory):
        """Download ``package=version`` into ``directory``; return the .deb path."""
        os.makedirs(directory, exist_ok=True)
        before = set(glob.glob(os.path.join(directory, "*.deb")))
        run(["apt-get", "-q", *self.options(), "download", f"{package}={version}"], cwd=directory, timeout=1800)
        new = sorted(set(glob.glob(os.path.join(directory, "*.deb"))) - before)
        if len(new) != 1:
            raise TestbedError(f"apt-get download {package}={version} ({self.suite}) gave {len(new)} files")
        return new[0]


# --- planning -----------------------------------------------------------------------------------


def plan_artifacts(candidates_by_suite, order=SUITE_ORDER):
    """Which artifact to build from which suite.

    ``candidates_by_suite``: {suite: {package: debian_version}}. For every component and every
    upstream version found, the first suite in ``order`` that carries it is the source (the
    oldest suite: the lowest glibc need). Returns a list of plans sorted by component and version.
    """
    plans = {}
    for suite in order:
        available = candidates_by_suite.get(suite) or {}
        for component, packages in PACKAGES.items():
            if all(package in available for package in packages):
                version = upstream_version(available[packages[0]])
                key = (component, version)
                if key not in plans:
                    plans[key] = {
                        "component": component,
                        "version": version,
                        "suite": suite,
                        "packages": [(package, available[package]) for package in packages],
                        "suites": [],
                    }
                plans[key]["suites"].append(suite)
    return [plans[key] for key in sorted(plans, key=lambda k: (list(PACKAGES).index(k[0]), glibc_key(k[1])))]


def source_text(suite, packages):
    return f"debian {suite} " + ", ".join(f"{name} {version}" for name, version in packages)


# --- archives -----------------------------------------------------------------------------------


def _find_file(root, name, prefer=("usr/bin", "usr/sbin", "bin", "sbin")):
    for directory in prefer:
        candidate = os.path.join(root, directory, name)
        if os.path.isfile(candidate) and not os.path.islink(candidate):
            return candidate
    for dirpath, _dirs, files in os.walk(root):
        if name in files:
            candidate = os.path.join(dirpath, name)
            if os.path.isfile(candidate) and not os.path.islink(candidate):
                return candidate
    return None


def _is_elf(path):
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _collect(root, wanted, what):
    found = []
    for name, required in wanted:
        path = _find_file(root, name)
        if path:
            found.append((name, path))
        elif required:
            raise TestbedError(f"{what}: no {name} in the Debian package")
    return found


def repackage(component, version, root, destination):
    """Build the upstream-shaped artifact from an unpacked package tree; return the binaries used."""
    if component == "etcd":
        binaries = _collect(root, ETCD_BINARIES, f"etcd {version}")
        top = f"etcd-v{version}-linux-{ARCH}"
        mtime = max(os.path.getmtime(path) for _name, path in binaries)
        entries = [(top, None, 0o755, mtime)] + [
            (f"{top}/{name}", path, 0o755, os.path.getmtime(path)) for name, path in binaries
        ]
        write_tar_gz(destination, entries)
    elif component == "containerd":
        binaries = _collect(root, CONTAINERD_BINARIES, f"containerd {version}")
        mtime = max(os.path.getmtime(path) for _name, path in binaries)
        entries = [("bin", None, 0o755, mtime)] + [
            (f"bin/{name}", path, 0o755, os.path.getmtime(path)) for name, path in binaries
        ]
        write_tar_gz(destination, entries)
    elif component == "runc":
        binaries = _collect(root, ((component, True),), f"{component} {version}")
        copy_file(binaries[0][1], destination)
    elif component == "cni_plugins":
        plugin_dir = os.path.join(root, "usr/lib/cni")
        if not os.path.isdir(plugin_dir):
            raise TestbedError(f"CNI plugins {version}: no usr/lib/cni in the Debian package")
        binaries = sorted(
            (name, os.path.join(plugin_dir, name))
            for name in os.listdir(plugin_dir)
            if os.path.isfile(os.path.join(plugin_dir, name)) and _is_elf(os.path.join(plugin_dir, name))
        )
        if not binaries:
            raise TestbedError(f"CNI plugins {version}: usr/lib/cni holds no programs")
        mtime = max(os.path.getmtime(path) for _name, path in binaries)
        entries = [("./", None, 0o755, mtime)] + [
            (f"./{name}", path, 0o755, os.path.getmtime(path)) for name, path in binaries
        ]
        write_tar_gz(destination, entries)
    else:
        raise ValueError(component)
    return binaries


def build_artifact(plan, apt_suites, previous):
    """Download, unpack and repackage one artifact; return its manifest record."""
    component, version = plan["component"], plan["version"]
    relative = artifact_path(component, version)
    destination = os.path.join(mirror_root(), relative)
    source = source_text(plan["suite"], plan["packages"])
    old = previous.get(relative)
    if (
        old
        and old.get("source") == source
        and os.path.isfile(destination)
        and os.path.getsize(destination) == old.get("size")
    ):
        record = dict(old)
        record["suites"] = plan["suites"]
        return record, False
    timer = Timer(prefix=f"mirror {component} {version}: ")
    work = tempfile.mkdtemp(prefix=f"{component}-", dir=state_path("build"))
    try:
        tree = os.path.join(work, "tree")
        os.makedirs(tree)
        with timer.step(f"download ({source})"):
            debs = [
                apt_suites[plan["suite"]].download(name, ver, os.path.join(work, "debs"))
                for name, ver in plan["packages"]
            ]
        with timer.step("repackage"):
            for deb in debs:
                run(["dpkg-deb", "-x", deb, tree])
            binaries = repackage(component, version, tree, destination)
            glibc = [g for g in (binary_glibc(path) for _name, path in binaries) if g]
            digest = write_checksums(destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "component": component,
        "version": version,
        "arch": ARCH,
        "path": relative,
        "sha256": digest,
        "size": os.path.getsize(destination),
        "source": source,
        "glibc": max(glibc, key=glibc_key) if glibc else None,
        "runs_on": [],
        "checked_on": [],
        "failed_on": {},
        "binaries": [name for name, _path in binaries],
        "suites": plan["suites"],
    }
    return record, True


# --- OCI images for containers inside the nodes ---------------------------------------------------


def image_file(reference):
    """``registry.k8s.io/pause:3.10.2`` -> ``testbed/images/pause-3.10.2.oci.tar``."""
    name, tag = oci.split_reference(reference)
    return f"{IMAGES_DIR}/{name.rsplit('/', 1)[-1]}-{tag}.oci.tar"


def _image_record(reference, source, digest):
    relative = image_file(reference)
    destination = os.path.join(mirror_root(), relative)
    name, tag = oci.split_reference(reference)
    return {
        "component": "image",
        "version": tag,
        "arch": ARCH,
        "path": relative,
        "sha256": write_checksums(destination),
        "size": os.path.getsize(destination),
        "source": source,
        "glibc": None,
        "runs_on": [],
        "image": reference,
        "name": name,
        "digest": digest,
    }


def _fresh(previous, reference, source):
    """The earlier record of an image archive, when it was built from the same source and is there."""
    relative = image_file(reference)
    old = previous.get(relative)
    path = os.path.join(mirror_root(), relative)
    if old and old.get("source") == source and old.get("digest") and os.path.isfile(path) \
            and os.path.getsize(path) == old.get("size"):
        return old
    return None


def build_image(reference, source, layers, config, previous):
    """One OCI archive (unless an identical one exists); returns (record, changed). ``layers``:
    a function that returns the entries of each layer (called only when the image is built)."""
    old = _fresh(previous, reference, source)
    if old:
        return old, False
    destination = os.path.join(mirror_root(), image_file(reference))
    digest = oci.build_archive(destination, [reference], layers(), config)
    return _image_record(reference, source, digest), True


def _find_library(tree, soname):
    """The file a shared library name leads to in ``tree`` (Debian ships most as a link to the
    versioned file)."""
    for directory in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"):
        candidate = os.path.join(tree, directory, soname)
        if os.path.lexists(candidate):
            resolved = os.path.realpath(candidate)
            if os.path.isfile(resolved) and resolved.startswith(os.path.realpath(tree) + os.sep):
                return resolved
    return _find_file(tree, soname)


def _needed_libraries(binaries, tree):
    """Shared libraries ``binaries`` need (recursively), found in the unpacked package ``tree``."""
    found, todo = {}, list(binaries)
    while todo:
        proc = run(["objdump", "-p", todo.pop()])
        for line in proc.stdout.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "NEEDED" and words[1] not in found:
                path = _find_library(tree, words[1])
                if not path:
                    raise TestbedError(f"{os.path.basename(binaries[0])} needs {words[1]}, which the packages "
                                       "unpacked for the image do not hold")
                found[words[1]] = path
                todo.append(path)
    return found


def busybox_entries(busybox, applets, libraries, loader):
    """busybox with its applets as links, and the glibc it is linked against: name lookups of a
    static glibc program need glibc's shared NSS modules, which an image without them lacks. (Debian's
    busybox 1.35 wget crashes with -T whichever the build: tests wrap it in `timeout` instead.)"""
    entries = [oci.file_from("bin/busybox", busybox)]
    entries += [oci.symlink(applet, "/bin/busybox") for applet in applets if applet != "bin/busybox"]
    entries += [oci.file_from(f"lib/x86_64-linux-gnu/{name}", path) for name, path in sorted(libraries.items())]
    entries.append(oci.file_from("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", loader))
    entries.append(oci.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
    entries += [oci.directory(name) for name in ("etc", "root", "proc", "sys", "dev", "var", "usr/bin", "usr/sbin")]
    entries.append(oci.Entry("tmp", "dir", mode=0o1777))
    entries.append(oci.file_text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                 "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
    entries.append(oci.file_text("etc/group", "root:x:0:\nnogroup:x:65534:\n"))
    return entries


def iptables_entries(tree, skip=()):
    """Debian's iptables in its nf_tables flavour (Debian's default, so that rules written in a pod
    and on the node land in the same tables), its extensions, and the libraries they load that
    ``skip`` (those of the layer below) lacks."""
    multi = _find_file(tree, "xtables-nft-multi", prefer=("usr/sbin",))
    extensions = sorted(glob.glob(os.path.join(tree, "usr/lib/x86_64-linux-gnu/xtables/*.so")))
    if not multi or not extensions:
        raise TestbedError("the iptables package holds no xtables-nft-multi or no extensions")
    libraries = _needed_libraries([multi, *extensions], tree)
    entries = [oci.file_from("usr/sbin/xtables-nft-multi", multi)]
    entries += [oci.symlink(f"usr/sbin/{name}", "xtables-nft-multi") for name in IPTABLES_COMMANDS]
    entries += [oci.file_from(f"usr/lib/x86_64-linux-gnu/xtables/{os.path.basename(path)}", path, mode=0o644)
                for path in extensions]
    entries += [oci.file_from(f"lib/x86_64-linux-gnu/{name}", path)
                for name, path in sorted(libraries.items()) if name not in skip]
    entries.append(oci.directory("run"))
    return entries


class ImageBases:
    """What images hold besides their program (gobuild.IMAGES: busybox, iptables), unpacked from
    the Debian packages of ``versions`` the first time an image that needs them is built."""

    PACKAGES = {"busybox": IMAGE_PACKAGES, "iptables": IMAGE_PACKAGES + IPTABLES_PACKAGES}

    def __init__(self, apt, versions, work):
        self.apt, self.versions, self.work = apt, versions, work
        self._layers, self._libraries, self._tree = {}, {}, None

    def source(self, base):
        packages = self.PACKAGES[base]
        missing = [name for name in packages if not self.versions.get(name)]
        if missing:
            raise TestbedError(f"{self.apt.suite} does not carry {', '.join(missing)}")
        listed = ", ".join(f"{name} {self.versions[name]}" for name in packages)
        return f"debian {self.apt.suite} {listed} (recipe {IMAGE_RECIPE_VERSION})"

    def _unpack(self, packages):
        self._tree = self._tree or os.path.join(self.work, "tree")
        for name in packages:
            marker = os.path.join(self.work, f"{name}.unpacked")
            if not os.path.exists(marker):
                run(["dpkg-deb", "-x", self.apt.download(name, self.versions[name], os.path.join(self.work, "debs")),
                     self._tree])
                open(marker, "w", encoding="ascii").close()
        return self._tree

    def layers(self, base):
        """The layers of ``base``, lowest first."""
        if "busybox" not in self._layers:
            self.source("busybox")
            tree = self._unpack(IMAGE_PACKAGES)
            busybox = _find_file(tree, "busybox")
            loader = _find_file(tree, "ld-linux-x86-64.so.2", prefer=("lib/x86_64-linux-gnu",))
            if not busybox or not loader:
                raise TestbedError("the busybox and libc6 packages hold no busybox or no ld-linux-x86-64.so.2")
            self._libraries = _needed_libraries([busybox], tree)
            applets = run([busybox, "--list-full"]).stdout.split()
            self._layers["busybox"] = [busybox_entries(busybox, applets, self._libraries, loader)]
        if base == "iptables" and "iptables" not in self._layers:
            self.source("iptables")
            tree = self._unpack(IPTABLES_PACKAGES)
            self._layers["iptables"] = self._layers["busybox"] + [iptables_entries(tree, skip=self._libraries)]
        return self._layers[base]


def helper_references():
    """The collection's busybox-based images (local-path-provisioner's helper): Debian's busybox
    stands in for them under the names and tags of the image table (images.yml)."""
    helper = gobuild.load_image_table().get("local_path_helper")
    return [f"{helper['name']}:{helper['tag']}"] if helper else []


def build_images(bases, previous, pause_tags=()):
    """busybox (Debian's, with its glibc; applets as links) and pause (a static C program written
    here), under every tag in ``pause_tags`` plus ``testbed``."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise TestbedError("gcc is needed for the pause image (hack/testbed host-setup installs it)")
    busybox_source = bases.source("busybox")
    pause_source = (f"gcc -static pause.c sha256:{hashlib.sha256(PAUSE_SOURCE.encode()).hexdigest()[:16]} "
                    f"(recipe {IMAGE_RECIPE_VERSION})")
    pause_refs = [f"{PAUSE_NAME}:{tag}" for tag in sorted(set(pause_tags) | {"testbed"})]
    busybox_refs = [BUSYBOX_IMAGE] + helper_references()
    wanted = [(ref, busybox_source) for ref in busybox_refs] + [(ref, pause_source) for ref in pause_refs]
    if all(_fresh(previous, ref, source) for ref, source in wanted):
        return [_fresh(previous, ref, source) for ref, source in wanted], False
    timer = Timer(prefix="mirror images: ")
    records, changed = [], False
    with timer.step(f"busybox ({busybox_source})"):
        for reference in busybox_refs:
            record, built = build_image(reference, busybox_source, lambda: bases.layers("busybox"), {"Cmd": ["sh"]},
                                        previous)
            records.append(record)
            changed |= built
    with timer.step(f"pause {', '.join(pause_refs)}"):
        source = os.path.join(bases.work, "pause.c")
        with open(source, "w", encoding="ascii") as handle:
            handle.write(PAUSE_SOURCE)
        program = os.path.join(bases.work, "pause")
        run([gcc, "-static", "-Os", "-s", "-o", program, source])
        for reference in pause_refs:
            record, built = build_image(reference, pause_source, lambda: [[oci.file_from("pause", program)]],
                                        {"Entrypoint": ["/pause"], "User": "65535:65535"}, previous)
            records.append(record)
            changed |= built
    return records, changed


def build_program_images(stamps, previous, bases):
    """An image for each program of the Go builds that runs in the cluster (CoreDNS, flannel, ...):
    the program, /etc/passwd and /etc/group, a writable /tmp, on the base gobuild.IMAGES names."""
    records, changed = [], False
    for stamp in stamps:
        if stamp["component"] not in gobuild.IMAGES:
            continue
        name, entrypoint, user, base = gobuild.IMAGES[stamp["component"]]
        reference = f"{name}:v{stamp['version']}"
        program = os.path.join(stamp["dir"], stamp["component"])
        entries = [
            oci.file_from(entrypoint[0], program),
            oci.file_text("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\n"
                          "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                          "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
            oci.file_text("etc/group", "root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n"),
            oci.Entry("tmp", "dir", mode=0o1777),
        ]
        source = f"{goartifacts.source_text(stamp)}{' on ' + bases.source(base) if base else ''}"
        if stamp.get("substitute"):
            source += f"; stands in: {stamp['substitute']}"
        source += f" (image recipe {IMAGE_RECIPE_VERSION})"
        config = {"Entrypoint": entrypoint}
        if user:
            config["User"] = user
        record, built = build_image(reference, source, lambda: (bases.layers(base) if base else []) + [entries],
                                    config, previous)
        records.append(record)
        changed |= built
    return records, changed


def write_image_index(records):
    """``testbed/images/index.json``: name, tag, digest and archive of every image, for tests and
    for the roles' image import."""
    images = sorted(
        ({"name": r["name"], "tag": r["version"], "digest": r["digest"], "path": r["path"], "sha256": r["sha256"]}
         for r in records if r["component"] == "image"),
        key=lambda item: (item["name"], item["tag"]),
    )
    atomic_write(os.path.join(mirror_root(), IMAGES_DIR, "index.json"), json.dumps({"images": images}, indent=2) + "\n")
    write_registry(records)


REGISTRY_DIR = "v2"


def write_registry(records):
    """The images as a registry serves them, as static files the mirror server answers from:
    ``v2/<name>/manifests/<tag or digest>`` and ``v2/<name>/blobs/<digest>``, each repository
    below the name's registry host as first path component (what kubeforge_image_mirror reads, so
    that the offline bundle is built from this mirror as it would be from the registries)."""
    for record in records:
        if record["component"] != "image" or not record.get("digest"):
            continue
        root = os.path.join(mirror_root(), REGISTRY_DIR, record["name"])
        marker = os.path.join(root, ".source")
        stamp = f"{record['sha256']} {record['digest']}\n"
        if os.path.exists(marker) and open(marker, encoding="ascii").read() == stamp:
            continue
        os.makedirs(os.path.join(root, "manifests"), exist_ok=True)
        os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
        with tarfile.open(os.path.join(mirror_root(), record["path"])) as archive:
            for member in archive.getmembers():
                if not member.isfile() or not member.name.startswith("blobs/sha256/"):
                    continue
                digest = "sha256:" + member.name.rsplit("/", 1)[1]
                data = archive.extractfile(member).read()
                atomic_write(os.path.join(root, "blobs", digest), data)
                if digest == record["digest"]:
                    for reference in (digest, record["version"]):
                        atomic_write(os.path.join(root, "manifests", reference), data)
        atomic_write(marker, stamp)


# --- running the binaries in the node images ---------------------------------------------------


def _stage_for_check(record, directory):
    """Unpack the mirror artifact itself (not the .deb) into ``directory``; return binary names."""
    path = os.path.join(mirror_root(), record["path"])
    os.makedirs(directory, exist_ok=True)
    if not path.endswith((".tar.gz", ".tgz")):
        copy_file(path, os.path.join(directory, record["component"]))
        return [record["component"]]
    names = []
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            name = os.path.basename(member.name)
            with archive.extractfile(member) as source, open(os.path.join(directory, name), "wb") as target:
                shutil.copyfileobj(source, target)
            os.chmod(os.path.join(directory, name), 0o755)
            names.append(name)
    return sorted(names)


def _check_script(items):
    lines = [
        "#!/bin/sh",
        "out=$(mktemp)",
        'check() { id=$1; name=$2; shift 2; sh -c "$*" >"$out" 2>&1 </dev/null; rc=$?;',
        '  echo "@@ $id $name $rc"; head -c 400 "$out" | head -n 2 | sed "s/^/| /"; echo; }',
    ]
    for ident, component, names in items:
        for name in names:
            binary = f"/kf/{ident}/{name}"
            if component == "cni_plugins":
                command = CNI_VERSION_COMMAND.format(bin=binary)
            else:
                command = VERSION_COMMANDS.get(name, "{bin} --version").format(bin=binary)
            lines.append(f"check {ident} {name} '{command}'")
    return "\n".join(lines) + "\n"


def _parse_check_output(text):
    """{ident: {name: (rc, first output line)}} from the check script's output."""
    results = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@ "):
            _marker, ident, name, rc = line.split(" ", 3)
            current = (ident, name)
            results.setdefault(ident, {})[name] = [int(rc), ""]
        elif line.startswith("| ") and current:
            entry = results[current[0]][current[1]]
            if not entry[1]:
                entry[1] = line[2:].strip()[:200]
    return results


def verify_artifacts(records, suites):
    """Run every binary of the artifacts not yet checked on ``suites`` inside those node images."""
    for record in records:
        if record["component"] != "image" and record.get("check_version") != CHECK_VERSION:
            record.update(checked_on=[], runs_on=[], failed_on={}, check_version=CHECK_VERSION)
            record.pop("reported_version", None)
    todo = [r for r in records if r["component"] != "image" and any(s not in r.get("checked_on", []) for s in suites)]
    if not todo or not suites:
        return False
    timer = Timer(prefix="mirror check: ")
    work = tempfile.mkdtemp(prefix="check-", dir=state_path("build"))
    try:
        items = []
        for ident, record in enumerate(todo):
            names = _stage_for_check(record, os.path.join(work, str(ident)))
            items.append((str(ident), record["component"], names))
        with open(os.path.join(work, "check.sh"), "w", encoding="ascii") as handle:
            handle.write(_check_script(items))

        def run_in(suite):
            with timer.step(f"{len(todo)} artifacts on {suite}"):
                proc = pm.podman(
                    "run",
                    "--rm",
                    "--network=none",
                    "-v",
                    f"{work}:/kf:ro",
                    node_image.image_name(suite),
                    "/bin/sh",
                    "/kf/check.sh",
                    timeout=600,
                )
            return suite, _parse_check_output(proc.stdout)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(suites)) as pool:
            outcomes = list(pool.map(run_in, suites))
        for suite, results in outcomes:
            for ident, record in enumerate(todo):
                got = results.get(str(ident), {})
                expected = items[ident][2]
                failures = [
                    f"{name}: {got[name][1] if name in got else 'did not run'}"
                    for name in expected
                    if name not in got or got[name][0] != 0
                ]
                record.setdefault("checked_on", [])
                record.setdefault("failed_on", {})
                record.setdefault("runs_on", [])
                if suite not in record["checked_on"]:
                    record["checked_on"].append(suite)
                if failures:
                    record["failed_on"][suite] = failures[0]
                    if suite in record["runs_on"]:
                        record["runs_on"].remove(suite)
                else:
                    record["failed_on"].pop(suite, None)
                    if suite not in record["runs_on"]:
                        record["runs_on"].append(suite)
                    main = expected[0] if record["component"] not in ("etcd", "containerd") else record["component"]
                    if main in got and not record.get("reported_version"):
                        record["reported_version"] = got[main][1]
                record["runs_on"].sort(key=SUITE_ORDER.index)
                record["checked_on"].sort(key=SUITE_ORDER.index)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


# --- the whole mirror -----------------------------------------------------------------------------


def _collect_candidates(apt_suites, refresh):
    wanted = sorted({package for packages in PACKAGES.values() for package in packages})
    wanted += IMAGE_PACKAGES + IPTABLES_PACKAGES

    def one(suite):
        updated = apt_suites[suite].update(refresh=refresh)
        return suite, apt_suites[suite].candidates(wanted), updated

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(apt_suites)) as pool:
        results = list(pool.map(one, list(apt_suites)))
    return {suite: found for suite, found, _updated in results}, [suite for suite, _f, updated in results if updated]


def build_mirror(refresh=False, verify=True, go_sets=("cluster",)):
    with locked("mirror"):
        return _build_mirror(refresh, verify, go_sets)


def _build_mirror(refresh, verify_binaries, go_sets):
    os.makedirs(mirror_root(), exist_ok=True)
    os.makedirs(state_path("build"), exist_ok=True)
    apt_suites = {suite: AptSuite(suite) for suite in SUITE_ORDER}
    timer = Timer(prefix="mirror: ")
    with timer.step("package lists"):
        candidates, updated = _collect_candidates(apt_suites, refresh)
    if updated:
        log(f"mirror: refreshed package lists of {', '.join(updated)}")
    for suite in SUITE_ORDER:
        found = ", ".join(
            f"{name} {version}" for name, version in sorted(candidates[suite].items())
            if name not in IMAGE_PACKAGES + IPTABLES_PACKAGES
        )
        log(f"mirror: {suite} carries {found or 'none of the packages'}")
    previous = load_manifest(manifest_path())
    stamps = []
    if go_sets:
        with timer.step(f"go builds ({', '.join(go_sets)})"):
            stamps = gobuild.build(go_sets)
        goartifacts.write_build_report(os.path.join(mirror_root(), "go-builds.json"), stamps)
    built_paths = goartifacts.paths_of(stamps)

    def debian_plans(found):
        # What the Go builds produce at the same upstream path replaces Debian's build of it.
        return [plan for plan in plan_artifacts(found)
                if artifact_path(plan["component"], plan["version"]) not in built_paths]

    try:
        records, changed = _build_all(debian_plans(candidates), apt_suites, previous)
    except TestbedError:
        if refresh:
            raise
        # A package version may have left the archive since the lists were fetched.
        log("mirror: a download failed; refreshing the package lists and trying again")
        candidates, _updated = _collect_candidates(apt_suites, True)
        records, changed = _build_all(debian_plans(candidates), apt_suites, previous)
    go_records, go_changed = goartifacts.package(stamps, mirror_root(), previous)
    records += go_records
    changed = changed or go_changed
    pause_tags = {gobuild.kubeadm_constants(stamp["version"])["pause"]
                  for stamp in stamps if stamp["component"] == "kubernetes"}
    with timer.step("images"):
        work = tempfile.mkdtemp(prefix="images-", dir=state_path("build"))
        try:
            bases = ImageBases(apt_suites[IMAGE_SOURCE_SUITE], candidates[IMAGE_SOURCE_SUITE], work)
            image_records, images_changed = build_images(bases, previous, pause_tags=pause_tags)
            program_records, programs_changed = build_program_images(stamps, previous, bases)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        image_records += program_records
        images_changed = images_changed or programs_changed
        write_image_index(image_records)
    changed = changed or images_changed
    # Artifacts no Debian suite carries any more stay in the mirror (tests may pin them).
    current = {record["path"] for record in records}
    for path, old in previous.items():
        if path not in current and old["component"] != "image" and os.path.isfile(os.path.join(mirror_root(), path)):
            stale = dict(old)
            if stale.get("suites"):
                stale["suites"] = []
                changed = True
            records.append(stale)
    if verify_binaries:
        suites = node_image.available_suites()
        if not suites:
            log("mirror: no node image yet; binaries are not run (hack/testbed image, then mirror again)")
        elif verify_artifacts(records, suites):
            changed = True
    all_records = records + image_records
    if changed or not os.path.exists(manifest_path()):
        write_manifest(
            manifest_path(), all_records, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        )
    _report(all_records)
    return all_records


def _build_all(plans, apt_suites, previous):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda plan: build_artifact(plan, apt_suites, previous), plans))
    records = [record for record, _changed in outcomes]
    changed = any(flag for _record, flag in outcomes) or any(
        previous.get(record["path"], {}).get("suites") != record.get("suites") for record in records
    )
    return records, changed


def _report(records):
    for record in records:
        runs = ",".join(record.get("runs_on") or []) or "-"
        glibc = record.get("glibc") or "static"
        log(f"  {record['component']:<23} {record['version']:<8} glibc {glibc:<6} runs on {runs:<16} {record['path']}")
