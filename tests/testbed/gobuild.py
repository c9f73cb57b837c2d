# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Release binaries built from their Go modules, for the local mirror.

No registry here carries Kubernetes server binaries, etcd 3.6, containerd 2.x or the programs of
the cluster's images, but the Go module proxy carries their source as modules. For each component
and version this writes a small module of its own (``STATE/go/src/COMPONENT@VERSION/go.mod``:
the upstream module as a requirement, plus the replacements the upstream build needs), runs
``go build`` with the upstream build flags and version ldflags, and keeps the programs in
``STATE/go/bin/COMPONENT@VERSION/``. Module and build caches live in ``STATE/go/{mod,cache}``:
a second build of the same versions finds its stamp and runs nothing; a build after a version
change recompiles only what changed.

Versions come from the collection's versions table (the default Kubernetes minor and the one
before it). Where the proxy does not serve a pinned patch, the nearest patch of the same minor that
it serves for every module of the component is built instead, and the substitution is recorded
(``substitutes`` in the build record, ``testbed_substitutes`` in the mirror's variables).
"""

import concurrent.futures
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

from .common import TestbedError, atomic_write, locked, log, read_json, state_path

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS_TABLE = os.path.join(REPO_ROOT, "versions.yml")
GO = os.environ.get("KUBEFORGE_GO") or shutil.which("go") or "/usr/local/go/bin/go"
# Bumped when a recipe's meaning changes in a way its text does not show: everything rebuilds.
RECIPE_VERSION = "1"
LOG_TAIL = 25

KUBERNETES_PROGRAMS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
)
CNI_PLUGINS = (
    "main/bridge",
    "main/host-device",
    "main/ipvlan",
    "main/loopback",
    "main/macvlan",
    "main/ptp",
    "main/vlan",
    "main/dummy",
    "main/tap",
    "ipam/dhcp",
    "ipam/host-local",
    "ipam/static",
    "meta/bandwidth",
    "meta/firewall",
    "meta/portmap",
    "meta/sbr",
    "meta/tuning",
    "meta/vrf",
)


class Recipe:
    """How one component is built: its modules, programs, environment, tags and ldflags."""

    def __init__(self, component, version, modules, programs, *, cgo=False, tags=(), ldflags="", replaces=None,
                 pinned=None):
        self.component = component
        self.version = version
        self.pinned = pinned or version
        self.modules = dict(modules)  # module path -> version (with the leading v)
        self.programs = dict(programs)  # output name -> package path
        self.cgo = cgo
        self.tags = tuple(tags)
        self.ldflags = ldflags
        self.replaces = dict(replaces or {})
        self.released = None
        self.substitute = None  # why another program stands in for the pinned one

    @property
    def key(self):
        return f"{self.component}@{self.version}"

    def go_mod(self, go_line):
        lines = [f"module kubeforge.test/build/{self.component}", "", f"go {go_line}", "", "require ("]
        lines += [f"\t{module} {version}" for module, version in sorted(self.modules.items())]
        lines.append(")")
        if self.replaces:
            lines += ["", "replace ("]
            lines += [f"\t{old} => {new} {version}" for old, (new, version) in sorted(self.replaces.items())]
            lines.append(")")
        return "\n".join(lines) + "\n"

    def text(self):
        """Everything that decides the output, for the stamp."""
        return json.dumps(
            {
                "recipe": RECIPE_VERSION,
                "modules": self.modules,
                "programs": self.programs,
                "cgo": self.cgo,
                "tags": self.tags,
                "ldflags": self.ldflags,
                "replaces": self.replaces,
            },
            sort_keys=True,
        )


# --- versions -------------------------------------------------------------------------------------


def load_versions_table(path=VERSIONS_TABLE):
    try:
        import yaml
    except ImportError as exc:
        raise TestbedError("the Go builds read the versions table with PyYAML: pip install pyyaml") from exc
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise TestbedError(f"versions table {path}: {exc.strerror}") from exc


def load_image_table(path=None):
    """The collection's image table (images.yml at its root): {image: {name, tag, digest}}."""
    return (load_versions_table(path or os.path.join(os.path.dirname(VERSIONS_TABLE), "images.yml")) or {})["images"]


def pinned_versions(table):
    """{"default": {...}, "previous": {...}}: the component versions of the default Kubernetes
    minor and of the minor before it, as the versions table pairs them."""
    default = table["__download_default_kubernetes_version"]
    minors = table["__download_supported_kubernetes_minors"]
    default_minor = ".".join(default.split(".")[:2])
    position = minors.index(default_minor)
    result = {"default": dict(table["__download_kubernetes_defaults"][default_minor])}
    if position + 1 < len(minors):
        result["previous"] = dict(table["__download_kubernetes_defaults"][minors[position + 1]])
    return result


def version_key(version):
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


# --- the go command -------------------------------------------------------------------------------


def go_dir(*parts):
    return state_path("go", *parts)


def go_env(cgo=False):
    env = dict(os.environ)
    env.update(
        GOMODCACHE=go_dir("mod"),
        GOCACHE=go_dir("cache"),
        GOPATH=go_dir("path"),
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
        CGO_ENABLED="1" if cgo else "0",
        GOOS="linux",
        GOARCH="amd64",
    )
    env.pop("GOWORK", None)
    return env


def go_version():
    try:
        proc = subprocess.run([GO, "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError as exc:
        raise TestbedError(f"{GO}: no go command (the Go builds need Go 1.26 or newer)") from exc
    if proc.returncode != 0 or not proc.stdout.strip():
        raise TestbedError(f"`go env GOVERSION` failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


class GoFailed(TestbedError):
    pass


def run_go(args, *, cwd, env, log_path, what):
    """Run the go command, its output appended to ``log_path``; return (seconds, peak RSS in MiB)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.monotonic()
    with open(log_path, "ab") as output:
        output.write(f"\n$ go {' '.join(args)}\n".encode())
        output.flush()
        proc = subprocess.Popen([GO, *args], cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            tail = handle.read().splitlines()[-LOG_TAIL:]
        raise GoFailed(
            f"{what}: `go {' '.join(args[:3])}{' ...' if len(args) > 3 else ''}` failed (exit {proc.returncode}) "
            f"after {seconds:.0f} s; full log {log_path}; last lines:\n    " + "\n    ".join(tail)
        )
    return seconds, usage.ru_maxrss / 1024


def module_info(module, version, env):
    """``go mod download -json`` of one module version: its go.mod path and directory, or the error."""
    proc = subprocess.run([GO, "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                          env=env, cwd=go_dir(), check=False, timeout=1800)
    try:
        info = json.loads(proc.stdout or "{}")
    except ValueError:
        info = {}
    if proc.returncode != 0 and not info.get("Error"):
        info["Error"] = (proc.stderr or proc.stdout).strip()[-400:]
    return info


def served_versions(module, env):
    proc = subprocess.run([GO, "list", "-m", "-versions", module], capture_output=True, text=True, env=env,
                          cwd=go_dir(), check=False, timeout=300)
    if proc.returncode != 0:
        return []
    return proc.stdout.split()[1:]


def choose_version(modules_for, pinned, env):
    """The pinned version when the proxy serves every module of it, else the nearest served patch of
    the same minor (on a tie the older). ``modules_for(version)``: {module: module version}.
    Returns (version, reason or None)."""
    failures = {module: info.get("Error") for module, mv in modules_for(pinned).items()
                for info in [module_info(module, mv, env)] if info.get("Error")}
    if not failures:
        return pinned, None
    minor = version_key(pinned)[:2]
    candidates = None
    for module in modules_for(pinned):
        listed = set()
        for served in served_versions(module, env):
            key = version_key(served)
            if "-" not in served and len(key) == 3:
                listed.add(key)
        candidates = listed if candidates is None else candidates & listed
    pinned_key = version_key(pinned)
    ranked = sorted((key for key in candidates or () if key[:2] == minor and key != pinned_key),
                    key=lambda key: (abs(key[2] - pinned_key[2]), key[2]))
    for key in ranked:
        version = ".".join(str(part) for part in key)
        if all(not module_info(module, mv, env).get("Error") for module, mv in modules_for(version).items()):
            refused = ", ".join(f"{module}@{modules_for(pinned)[module]}" for module in failures)
            return version, f"{refused} not served by the Go module proxy; nearest served patch {version}"
    detail = "; ".join(f"{module}: {error.splitlines()[-1] if error else '?'}" for module, error in failures.items())
    raise TestbedError(f"no served version of the {minor[0]}.{minor[1]} line near {pinned}: {detail}")


# --- recipes --------------------------------------------------------------------------------------


def _kubernetes_ldflags(version, build_date):
    major, minor = version.split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion=v{version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate={build_date}",
        ]
    return " ".join(flags)


def _staging_replaces(version, env):
    """k8s.io/kubernetes points its staging modules at ./staging/src/k8s.io/X, which the module zip
    lacks; each is published as k8s.io/X v0.MINOR.PATCH. The list comes from its own go.mod."""
    info = module_info("k8s.io/kubernetes", f"v{version}", env)
    if info.get("Error"):
        raise TestbedError(f"k8s.io/kubernetes v{version}: {info['Error'].splitlines()[-1]}")
    with open(info["GoMod"], encoding="utf-8") as handle:
        text = handle.read()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M)))
    if not staging:
        raise TestbedError(f"k8s.io/kubernetes v{version}: its go.mod names no staging modules")
    published = "v0." + ".".join(version.split(".")[1:])
    return {module: (module, published) for module in staging}


def _release_date(module, version, env):
    info = module_info(module, version, env)
    stamp = info.get("Time") or "1970-01-01T00:00:00Z"
    return stamp.replace(".000", "").split(".")[0].rstrip("Z") + "Z"


def kubernetes_recipe(version, env, programs=KUBERNETES_PROGRAMS):
    build_date = _release_date("k8s.io/kubernetes", f"v{version}", env)
    return Recipe(
        "kubernetes",
        version,
        {"k8s.io/kubernetes": f"v{version}"},
        {name: f"k8s.io/kubernetes/cmd/{name}" for name in programs},
        tags=("selinux", "notest", "grpcnotrace"),
        ldflags=_kubernetes_ldflags(version, build_date),
        replaces=_staging_replaces(version, env),
    )


def etcd_modules(version):
    return {f"go.etcd.io/etcd/{name}/v3": f"v{version}" for name in ("server", "etcdctl", "etcdutl")}


def etcd_recipe(version, env):
    return Recipe(
        "etcd",
        version,
        etcd_modules(version),
        {"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
         "etcdutl": "go.etcd.io/etcd/etcdutl/v3"},
        ldflags="-s -w",
    )


def containerd_recipe(version, env):
    package = "github.com/containerd/containerd/v2"
    ldflags = f"-s -w -X {package}/version.Version=v{version} -X {package}/version.Package={package}"
    return Recipe(
        "containerd",
        version,
        {package: f"v{version}"},
        {name: f"{package}/cmd/{name}" for name in ("containerd", "containerd-shim-runc-v2", "ctr")},
        tags=("no_btrfs",),
        ldflags=ldflags,
    )


def runc_recipe(version, env):
    # cgo for libseccomp (Debian's libseccomp-dev at build time, libseccomp2 on the nodes); the
    # version comes from the VERSION file the module embeds.
    return Recipe(
        "runc",
        version,
        {"github.com/opencontainers/runc": f"v{version}"},
        {"runc": "github.com/opencontainers/runc"},
        cgo=True,
        tags=("seccomp", "urfave_cli_no_docs"),
        ldflags="-s -w",
    )


def crictl_recipe(version, env):
    return Recipe(
        "crictl",
        version,
        {"sigs.k8s.io/cri-tools": f"v{version}"},
        {"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
        ldflags=f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={version}",
    )


def cni_plugins_recipe(version, env):
    module = "github.com/containernetworking/plugins"
    return Recipe(
        "cni_plugins",
        version,
        {module: f"v{version}"},
        {path.split("/")[1]: f"{module}/plugins/{path}" for path in CNI_PLUGINS},
        ldflags=f"-s -w -X {module}/pkg/utils/buildversion.BuildVersion=v{version}",
    )


def coredns_recipe(version, env):
    return Recipe("coredns", version, {"github.com/coredns/coredns": f"v{version}"},
                  {"coredns": "github.com/coredns/coredns"}, ldflags="-s -w")


def metrics_server_recipe(version, env):
    package = "k8s.io/client-go/pkg/version"
    return Recipe("metrics-server", version, {"sigs.k8s.io/metrics-server": f"v{version}"},
                  {"metrics-server": "sigs.k8s.io/metrics-server/cmd/metrics-server"},
                  ldflags=f"-s -w -X {package}.gitVersion=v{version} -X {package}.gitTreeState=clean")


# flannel v0.28 requires tencentcloud-sdk-go/tencentcloud/common v1.3.79 (its tencentvpc backend),
# which the Go module proxy does not serve; the build requires a served release of that line.
FLANNEL_EXTRA_MODULES = {"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common": "v1.3.213"}


def flannel_modules(version):
    return {"github.com/flannel-io/flannel": f"v{version}", **FLANNEL_EXTRA_MODULES}


def flannel_recipe(version, env):
    # cgo, as upstream builds it (its udp backend is C), linked statically as upstream links it
    return Recipe("flannel", version, flannel_modules(version), {"flannel": "github.com/flannel-io/flannel"},
                  cgo=True, ldflags=f"-s -w -X github.com/flannel-io/flannel/pkg/version.Version=v{version} "
                                    "-extldflags=-static")


# flannel's CNI plugin (github.com/flannel-io/cni-plugin) is not served by the Go module proxy. The
# plugin it was split out of, plugins/meta/flannel of containernetworking/plugins v0.9.1, reads the
# same /run/flannel/subnet.env and hands the same bridge configuration to the bridge plugin: built
# under the pinned image's name and tag, it stands in for it, and the build report says so.
FLANNEL_CNI_MODULE = ("github.com/containernetworking/plugins", "v0.9.1")


def flannel_cni_recipe(version, env):
    module, module_version = FLANNEL_CNI_MODULE
    recipe = Recipe("flannel-cni-plugin", version, {module: module_version},
                    {"flannel-cni-plugin": f"{module}/plugins/meta/flannel"},
                    ldflags=f"-s -w -X {module}/pkg/utils/buildversion.BuildVersion={module_version}")
    recipe.substitute = (f"github.com/flannel-io/cni-plugin v{version} is not served by the Go module proxy; "
                         f"{module}/plugins/meta/flannel {module_version} built in its place")
    return recipe


def local_path_recipe(version, env):
    return Recipe("local-path-provisioner", version, {"github.com/rancher/local-path-provisioner": f"v{version}"},
                  {"local-path-provisioner": "github.com/rancher/local-path-provisioner"},
                  ldflags=f"-s -w -X main.VERSION=v{version}")


RECIPES = {
    "kubernetes": (kubernetes_recipe, lambda v: {"k8s.io/kubernetes": f"v{v}"}),
    "etcd": (etcd_recipe, etcd_modules),
    "containerd": (containerd_recipe, lambda v: {"github.com/containerd/containerd/v2": f"v{v}"}),
    "runc": (runc_recipe, lambda v: {"github.com/opencontainers/runc": f"v{v}"}),
    "crictl": (crictl_recipe, lambda v: {"sigs.k8s.io/cri-tools": f"v{v}"}),
    "cni_plugins": (cni_plugins_recipe, lambda v: {"github.com/containernetworking/plugins": f"v{v}"}),
    "coredns": (coredns_recipe, lambda v: {"github.com/coredns/coredns": f"v{v}"}),
    "metrics-server": (metrics_server_recipe, lambda v: {"sigs.k8s.io/metrics-server": f"v{v}"}),
    "local-path-provisioner": (local_path_recipe, lambda v: {"github.com/rancher/local-path-provisioner": f"v{v}"}),
    "flannel": (flannel_recipe, flannel_modules),
    "flannel-cni-plugin": (flannel_cni_recipe, lambda v: dict([FLANNEL_CNI_MODULE])),
}

# The programs that run as images in the cluster: component -> (image name, entrypoint, user, base).
# ``base``: what else the image holds besides the program: nothing (a static program), busybox
# (a shell and cp, which the init containers of flannel's DaemonSet run), or busybox and iptables
# (flanneld programs its masquerading and forwarding rules with iptables). CoreDNS at the version
# kubeadm of the default Kubernetes pairs with it; the others at the releases the roles deploy.
ADDON_VERSIONS = {"metrics-server": "0.8.0", "local-path-provisioner": "0.0.30", "flannel": "0.28.4",
                  "flannel-cni-plugin": "1.9.1-flannel1"}
IMAGES = {
    "coredns": ("registry.k8s.io/coredns/coredns", ["/coredns"], "65532:65532", ""),
    "metrics-server": ("registry.k8s.io/metrics-server/metrics-server", ["/metrics-server"], "65534:65534", ""),
    "local-path-provisioner": ("docker.io/rancher/local-path-provisioner", ["/usr/bin/local-path-provisioner"], "",
                               ""),
    "flannel": ("ghcr.io/flannel-io/flannel", ["/opt/bin/flanneld"], "", "iptables"),
    "flannel-cni-plugin": ("ghcr.io/flannel-io/flannel-cni-plugin", ["/flannel"], "", "busybox"),
}

# Build sets: what the scenarios need. `cluster`: one working cluster at the default Kubernetes
# minor; `upgrade`: the previous minor's Kubernetes too; `addons`: the programs the cluster runs as
# images (the addons and flannel).
SETS = {
    "cluster": (("default", "kubernetes"), ("default", "etcd"), ("default", "containerd"), ("default", "runc"),
                ("default", "crictl"), ("default", "cni_plugins")),
    "upgrade": (("previous", "kubernetes"),),
    "addons": (("default", "coredns"), ("default", "metrics-server"), ("default", "local-path-provisioner"),
               ("default", "flannel"), ("default", "flannel-cni-plugin")),
}
SET_NAMES = tuple(SETS) + ("all",)


def wanted_units(sets, table=None):
    """[(component, pinned version)] for the named sets, in build order."""
    pins = pinned_versions(table or load_versions_table())
    for which in pins.values():
        which.update(ADDON_VERSIONS)
    if any(name in ("addons", "all") for name in sets):
        pins["default"]["coredns"] = kubeadm_constants(pins["default"]["kubernetes"], fetch=True)["coredns"].lstrip("v")
    names = list(SETS) if "all" in sets else list(sets)
    units = []
    for name in names:
        for which, component in SETS[name]:
            if which not in pins:
                raise TestbedError(f"the versions table has no minor before {pins['default']['kubernetes']}")
            unit = (component, pins[which][component])
            if unit not in units:
                units.append(unit)
    return units


def kubeadm_constants(version, fetch=False):
    """Image versions kubeadm of ``version`` pairs with it (PauseVersion, CoreDNSVersion,
    DefaultEtcdVersion), read from the module's source in the module cache."""
    path = go_dir("mod", "k8s.io", f"kubernetes@v{version}", "cmd", "kubeadm", "app", "constants", "constants.go")
    if fetch and not os.path.exists(path):
        os.makedirs(go_dir(), exist_ok=True)
        module_info("k8s.io/kubernetes", f"v{version}", go_env())
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TestbedError(f"kubeadm constants of Kubernetes {version}: {exc.strerror} ({path})") from exc
    found = {}
    for key, name in (("pause", "PauseVersion"), ("coredns", "CoreDNSVersion"), ("etcd", "DefaultEtcdVersion")):
        match = re.search(rf'^\s*{name}\s*=\s*"([^"]+)"', text, re.M)
        if not match:
            raise TestbedError(f"{path}: no {name}")
        found[key] = match.group(1)
    return found


# --- building -------------------------------------------------------------------------------------


def _stamp_path(recipe):
    return go_dir("bin", recipe.key, ".stamp.json")


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def built(recipe, go_line):
    """The stamp of an earlier build of exactly this recipe, when its programs are all there."""
    stamp = read_json(_stamp_path(recipe), default=None)
    if not stamp or stamp.get("recipe") != _digest(recipe.text() + go_line):
        return None
    if not all(os.path.isfile(go_dir("bin", recipe.key, name)) for name in recipe.programs):
        return None
    return stamp


def build_recipe(recipe, go_line):
    """Resolve and build every program of ``recipe``; return its stamp (per-program seconds, peak)."""
    source = go_dir("src", recipe.key)
    output = go_dir("bin", recipe.key)
    log_path = go_dir("logs", f"{recipe.key}.log")
    env = go_env(cgo=recipe.cgo)
    what = f"{recipe.component} {recipe.version}"
    os.makedirs(source, exist_ok=True)
    if os.path.exists(log_path):
        os.unlink(log_path)
    # A fresh module each time: stale requirements from an earlier version must not linger.
    for name in ("go.mod", "go.sum"):
        if os.path.exists(os.path.join(source, name)):
            os.unlink(os.path.join(source, name))
    atomic_write(os.path.join(source, "go.mod"), recipe.go_mod(go_line.removeprefix("go")))
    steps = []
    # Resolving the packages' imports downloads every module the build needs and completes
    # go.mod and go.sum, so that the compile steps below are only compiling.
    tags = ["-tags", ",".join(recipe.tags)] if recipe.tags else []
    seconds, peak = run_go(["list", *tags, "-deps", "-f", "{{.ImportPath}}", *recipe.programs.values()],
                           cwd=source, env=env, log_path=log_path, what=what)
    steps.append(("download", seconds, peak))
    log(f"go build {what}: download {seconds:.1f} s")
    partial = output + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    base = ["build", "-trimpath", *tags]
    if recipe.ldflags:
        base += ["-ldflags", recipe.ldflags]
    for name, package in recipe.programs.items():
        seconds, peak = run_go([*base, "-o", os.path.join(partial, name), package], cwd=source, env=env,
                               log_path=log_path, what=f"{what} ({name})")
        steps.append((name, seconds, peak))
        log(f"go build {what}: {name} {seconds:.1f} s, peak {peak:.0f} MiB")
    shutil.rmtree(output, ignore_errors=True)
    os.replace(partial, output)
    stamp = {
        "component": recipe.component,
        "version": recipe.version,
        "pinned": recipe.pinned,
        "recipe": _digest(recipe.text() + go_line),
        "go": go_line,
        "modules": recipe.modules,
        "released": recipe.released,
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "steps": [{"step": step, "seconds": round(sec, 1), "peak_mib": round(mib)} for step, sec, mib in steps],
    }
    atomic_write(_stamp_path(recipe), json.dumps(stamp, indent=2) + "\n")
    return stamp


def plan(units, env):
    """Recipes for the wanted units, with versions the proxy serves (checked in parallel)."""

    def one(unit):
        component, pinned = unit
        make, modules_for = RECIPES[component]
        version, reason = choose_version(modules_for, pinned, env)
        recipe = make(version, env)
        recipe.pinned = pinned
        reason = reason or recipe.substitute
        primary = next(iter(modules_for(version)))
        recipe.released = _release_date(primary, modules_for(version)[primary], env)
        return recipe, reason

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, units))


def build(sets=("cluster",), table=None):
    """Build what ``sets`` need; return the stamps, each with ``substitute`` when not the pinned version."""
    os.makedirs(go_dir(), exist_ok=True)
    with locked("go-build"):
        start = time.monotonic()
        go_line = go_version()
        env = go_env()
        units = wanted_units(sets, table)
        recipes = plan(units, env)
        stamps, todo = [], []
        for recipe, reason in recipes:
            stamp = built(recipe, go_line)
            if stamp:
                stamps.append((stamp, reason))
            else:
                todo.append((recipe, reason))
        if todo:
            log(f"go build: {len(todo)} of {len(recipes)} components to build with {go_line} "
                f"({', '.join(recipe.key for recipe, _ in todo)})")
        for recipe, reason in todo:
            if reason:
                log(f"go build {recipe.component}: building {recipe.version} for the pinned {recipe.pinned}: {reason}")
            component_start = time.monotonic()
            stamp = build_recipe(recipe, go_line)
            log(f"go build {recipe.key}: done in {time.monotonic() - component_start:.1f} s")
            stamps.append((stamp, reason))
        result = []
        for stamp, reason in stamps:
            record = dict(stamp)
            if reason:
                record["substitute"] = reason
            record["dir"] = go_dir("bin", f"{stamp['component']}@{stamp['version']}")
            result.append(record)
        log(f"go build: {len(todo)} built, {len(recipes) - len(todo)} up to date; "
            f"{time.monotonic() - start:.1f} s")
        return result


def report(stamps):
    """Lines of a table: component, version, step, seconds, peak memory."""
    lines = []
    for stamp in stamps:
        total = sum(step["seconds"] for step in stamp["steps"])
        peak = max((step["peak_mib"] for step in stamp["steps"]), default=0)
        lines.append(f"{stamp['component']:<12} {stamp['version']:<8} {total:7.1f} s  peak {peak:5d} MiB"
                     + (f"  (pinned {stamp['pinned']})" if stamp.get("pinned") != stamp["version"] else ""))
    return lines


# --- in the background ----------------------------------------------------------------------------


def _background_files():
    return go_dir("background.log"), go_dir("background.json")


def start_background(sets):
    """Start ``hack/testbed build`` detached (log and exit status under STATE/go); return (pid, log).

    A later ``build`` (or ``mirror``) waits on the same lock and then finds the programs built.
    """
    log_path, status_path = _background_files()
    os.makedirs(go_dir(), exist_ok=True)
    status = read_json(status_path, default=None) or {}
    if status.get("pid") and status.get("exit") is None and _alive(status["pid"]):
        return status["pid"], log_path
    package_dir = os.path.dirname(os.path.abspath(__file__))
    args = [sys.executable, package_dir, "build", "--background-child"]
    for name in sets:
        args += ["--go-set", name]
    with open(log_path, "wb") as output:
        proc = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    atomic_write(status_path, json.dumps({"pid": proc.pid, "sets": list(sets), "exit": None}) + "\n")
    return proc.pid, log_path


def run_background_child(sets):
    """The detached build: record its exit status where ``wait_background`` looks."""
    _log_path, status_path = _background_files()
    code = 1
    try:
        build(sets)
        code = 0
    except TestbedError as exc:
        log(f"testbed: {exc}")
    finally:
        atomic_write(status_path, json.dumps({"pid": os.getpid(), "sets": list(sets), "exit": code}) + "\n")
    return code


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_background(poll=2.0):
    """Follow the background build's log until it ends; its exit status (0 when none ran)."""
    log_path, status_path = _background_files()
    status = read_json(status_path, default=None)
    if not status:
        log("build --wait: no background build was started")
        return 0
    offset = 0
    while True:
        status = read_json(status_path, default=None) or {}
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset = handle.tell()
        except FileNotFoundError:
            chunk = ""
        if chunk:
            sys.stderr.write(chunk)
            sys.stderr.flush()
        if status.get("exit") is not None:
            return int(status["exit"])
        if not _alive(status.get("pid", 0)):
            log(f"build --wait: the background build (pid {status.get('pid')}) ended without a status; see {log_path}")
            return 1
        time.sleep(poll)
