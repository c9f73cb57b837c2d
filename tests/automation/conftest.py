# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Shared by the automation tests: paths, the built collection, the ansible-core programs of the
virtual environment running pytest, and the collection importable from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
_COLLECTIONS = os.path.join(ROOT, ".collections")
if os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections")) and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)


def clean_environment():
    """This process's environment without Ansible's settings (hack/lib.sh points ANSIBLE_CONFIG
    at the checkout's ansible.cfg): what a user's tool starts from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "KUBEFORGE_SUMMARY"))}
    env["PATH"] = f"{BIN}:{os.environ.get('PATH', '')}"
    return env


def galaxy_version():
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["version"]


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory):
    """The collection as users get it: ``ansible-galaxy collection build`` of this checkout."""
    out = tmp_path_factory.mktemp("build")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), ROOT],
                   check=True, capture_output=True, text=True, env=clean_environment())
    path = out / f"kubeforge-cluster-{galaxy_version()}.tar.gz"
    assert path.exists(), sorted(os.listdir(out))
    return path
