# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The reset role's one list (roles/reset/vars/main.yml) against what the other roles write: every
path their variables name, every unit they install, every binary of the versions table, and the
defaults of the variables the reset reads from the inventory."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RESET = os.path.join(ROOT, "roles", "reset")
# Where the roles write; a path elsewhere is read, not written (/etc/resolv.conf, /usr/sbin/haproxy).
WRITTEN_BELOW = ("/etc/", "/var/lib/", "/var/log/", "/var/backups/", "/var/tmp/", "/run/", "/opt/", "/usr/local/sbin/")
# Module options whose default is a file or directory the module writes on the hosts.
MODULE_DEFAULTS = {"kernel_settings": ("modules_file", "sysctl_file"), "image_archives": ("work_dir",)}
SIMPLE_REFERENCE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
DEFAULTED_REFERENCE = re.compile(r"^\{\{\s*(\w+)\s*\|\s*default\('([^']*)'\)\s*\}\}$")


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def resolve(value, known):
    """``value`` with its simple ``{{ name }}`` references replaced, or None when one is unknown."""
    if not isinstance(value, str):
        return None
    defaulted = DEFAULTED_REFERENCE.match(value.strip())
    if defaulted:
        return defaulted.group(2)
    out = SIMPLE_REFERENCE.sub(lambda m: known.get(m.group(1), "\x00"), value)
    return None if "\x00" in out or "{{" in out or "{%" in out else out


def literal_values(data):
    """Every variable of a vars or defaults file whose value can be resolved to a string."""
    known = {}
    for _round in range(3):
        for name, value in data.items():
            text = resolve(value, known)
            if text is not None:
                known[name] = text
    return known


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def written_paths():
    """(role, path) for every absolute path below WRITTEN_BELOW the other roles' variables name."""
    found = []
    for role_dir in sorted(glob.glob(os.path.join(ROOT, "roles", "*"))):
        role = os.path.basename(role_dir)
        if role == "reset":
            continue
        data = {}
        for part in ("defaults", "vars"):
            path = os.path.join(role_dir, part, "main.yml")
            if os.path.exists(path):
                data.update(load(path))
        known = literal_values(data)
        for text in strings(data):
            path = resolve(text, known)
            if path and path.startswith(WRITTEN_BELOW) and " " not in path:
                found.append((role, os.path.normpath(path)))
    for module, options in MODULE_DEFAULTS.items():
        with open(os.path.join(ROOT, "plugins", "modules", module + ".py"), encoding="utf-8") as handle:
            source = handle.read()
        for option in options:
            match = re.search(r"%s=dict\(type=['\"]path['\"], default=['\"]([^'\"]+)['\"]" % option, source)
            assert match, (module, option)
            found.append(("module " + module, match.group(1)))
    found.append(("module artifacts", artifacts.STATE_FILE))
    return sorted(set(found))


@pytest.fixture(scope="module")
def reset_vars():
    data = load(os.path.join(RESET, "vars", "main.yml"))
    known = literal_values(data)
    resolved = {}
    for name, value in data.items():
        if isinstance(value, list):
            resolved[name] = [resolve(item, known) if isinstance(item, str) else item for item in value]
        elif isinstance(value, dict):
            resolved[name] = value
        else:
            resolved[name] = known.get(name, value)
    return resolved


@pytest.fixture(scope="module")
def artifact_files():
    components = load(os.path.join(ROOT, "versions.yml"))["__download_components"]
    files, dirs = set(), set()
    for spec in components.values():
        for member in spec["members"]:
            if "dest" in member:
                files.add(member["dest"])
                dirs.add(os.path.dirname(member["dest"]))
            else:
                dirs.add(member["dest_dir"])
    return files, dirs


def covered(path, reset_vars, artifact_files):
    files, dirs = artifact_files
    removed = (reset_vars["__reset_paths"] + reset_vars["__reset_etcd_backup_paths"]
               + reset_vars["__reset_local_volume_paths"])
    units = reset_vars["__reset_services"] + [reset_vars["__reset_containerd"]["service"]]
    if path in files or path in dirs or path in reset_vars["__reset_empty_dirs"]:
        return True
    if path.startswith("/etc/systemd/system/") and path.endswith(".service"):
        return os.path.basename(path)[:-len(".service")] in units
    for entry in removed:
        if path == entry or path.startswith(entry.rstrip("/") + "/") or fnmatch.fnmatchcase(path, entry):
            return True
    return False


def test_every_path_the_roles_write_is_in_the_reset_list(reset_vars, artifact_files):
    missing = [f"{role}: {path}" for role, path in written_paths() if not covered(path, reset_vars, artifact_files)]
    assert not missing, "not removed by a reset (add them to roles/reset/vars/main.yml):\n" + "\n".join(missing)


def test_the_list_finds_the_roles_paths_at_all(reset_vars, artifact_files):
    # the scan above must see the files it guards, or it proves nothing
    seen = {path for _role, path in written_paths()}
    for path in ("/etc/kubernetes/kube-apiserver.env", "/var/lib/kubelet/config.yaml", "/etc/etcd/etcd.env",
                 "/etc/systemd/system/kube-apiserver-lb.service", "/etc/cni/net.d/10-flannel.conflist",
                 "/etc/containerd/config.toml", "/etc/sysctl.d/99-kubeforge.conf", "/var/lib/kubeforge/artifacts.json"):
        assert path in seen, path


def test_every_binary_directory_of_the_versions_table_is_an_artifacts_directory(reset_vars, artifact_files):
    _files, dirs = artifact_files
    allowed = reset_vars["__reset_artifacts_dirs"]
    outside = [d for d in dirs if not any(d == a or d.startswith(a + "/") for a in allowed)]
    assert not outside, outside


def test_the_defaults_the_reset_assumes_are_the_roles_own():
    data = load(os.path.join(RESET, "vars", "main.yml"))
    assumed = {}
    for value in data.values():
        match = DEFAULTED_REFERENCE.match(value.strip()) if isinstance(value, str) else None
        if match:
            assumed[match.group(1)] = match.group(2)
    owners = {"etcd_data_dir": "etcd", "etcd_backup_dir": "etcd", "control_plane_audit_log_dir": "control_plane",
              "network_bridge_name": "network", "addons_local_path_dir": "addons"}
    assert set(assumed) == set(owners)
    for name, default in assumed.items():
        assert load(os.path.join(ROOT, "roles", owners[name], "defaults", "main.yml"))[name] == default, name


def test_every_unit_the_roles_install_is_stopped_by_the_reset(reset_vars):
    units = set(reset_vars["__reset_services"]) | {reset_vars["__reset_containerd"]["service"]}
    templated = set()
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "vars", "main.yml")):
        with open(path, encoding="utf-8") as handle:
            templated |= set(re.findall(r"/etc/systemd/system/([\w.-]+)\.service", handle.read()))
    assert templated and templated <= units, templated - units
    # the control plane's units are named after its components
    components = load(os.path.join(ROOT, "roles", "control_plane", "vars", "main.yml"))["__control_plane_components"]
    assert set(components) <= units


def test_the_role_documents_its_defaults():
    defaults = load(os.path.join(RESET, "defaults", "main.yml"))
    options = load(os.path.join(RESET, "meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        assert name.startswith("reset_"), name
        assert options[name]["default"] == value, name


def render(expression, out, **extra):
    """``expression`` as Ansible resolves it with the role's defaults and variables, via JSON in ``out``."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_LOCALHOST_WARNING="false")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
               "-m", "ansible.builtin.copy", "-a", "dest={{ render_out }} content={{ %s | to_json }}" % expression,
               "-e", "@" + os.path.join(RESET, "defaults", "main.yml"),
               "-e", "@" + os.path.join(RESET, "vars", "main.yml"),
               "-e", json.dumps(dict(extra, render_out=str(out)))]
    proc = subprocess.run(command, cwd=RESET, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out, encoding="utf-8") as handle:
        return json.load(handle)


EXPRESSION = ("{'paths': __reset_all_paths, 'interfaces': __reset_interfaces | unique, "
              "'report': __reset_report | select | join(' ')}")


def test_the_role_variables_render_with_the_inventory_values(tmp_path):
    plain = render(EXPRESSION, tmp_path / "plain.json")
    assert "/var/lib/etcd" in plain["paths"] and "/var/backups/etcd" not in plain["paths"]
    assert plain["interfaces"] == ["cni0", "flannel.1"]
    assert plain["report"] == "Reset 1 of 1 hosts (localhost)."
    moved = render(EXPRESSION, tmp_path / "moved.json", etcd_data_dir="/srv/etcd", network_bridge_name="pods0",
                   reset_remove_etcd_backups=True, reset_remove_local_volumes=True,
                   addons_local_path_dir="/srv/volumes")
    assert "/srv/etcd" in moved["paths"] and "/srv/etcd-before-restore-*" in moved["paths"]
    assert {"/var/backups/etcd", "/srv/volumes"} <= set(moved["paths"])
    assert moved["interfaces"] == ["pods0", "cni0", "flannel.1"]
