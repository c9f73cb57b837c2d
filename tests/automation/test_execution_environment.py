# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""execution-environment.yml: ``ansible-builder create`` writes its build context, and the two
steps of the build that involve the collection work here, offline: the galaxy stage installs the
collection from its tarball, and the builder stage's introspection finds the Python and system
packages the collection declares. (No image is built: there is no base image on this machine.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml

from .conftest import BIN, ROOT, clean_environment, galaxy_version


def test_ansible_builder_create(collection_tarball, tmp_path):
    work = tmp_path / "ee"
    work.mkdir()
    shutil.copy(os.path.join(ROOT, "execution-environment.yml"), work)
    shutil.copy(collection_tarball, work)
    context = tmp_path / "context"
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "--file", str(work / "execution-environment.yml"),
                           "--context", str(context), "--output-filename", "Containerfile"],
                          capture_output=True, text=True, check=False, env=clean_environment())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    build = context / "_build"
    tarball = build / "collections" / collection_tarball.name
    assert tarball.exists()
    containerfile = (context / "Containerfile").read_text()
    assert "ENV ANSIBLE_CALLBACKS_ENABLED=kubeforge.cluster.summary" in containerfile
    assert "ansible-core>=2.17.0,<2.22" in containerfile

    # the galaxy stage: `ansible-galaxy collection install -r requirements.yml` in _build
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": f"collections/{collection_tarball.name}", "type": "file"}]
    collections = tmp_path / "collections"
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml",
                           "--collections-path", str(collections)],
                          cwd=build, capture_output=True, text=True, check=False,
                          env=dict(clean_environment(), ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "kubeforge" / "cluster"
    assert (installed / "plugins" / "callback" / "summary.py").exists()

    # the builder stage: what introspection adds to the image
    pip, bindep = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    proc = subprocess.run([os.path.join(BIN, "python"), str(build / "scripts" / "introspect.py"), "introspect", str(collections),
                           "--write-pip", str(pip), "--write-bindep", str(bindep)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[0] for line in pip.read_text().splitlines()] == ["jinja2>=3.1", "netaddr>=0.10"]
    assert "openssh-client [platform:dpkg]" in bindep.read_text()


def test_versions_agree_with_galaxy_yml():
    with open(os.path.join(ROOT, "execution-environment.yml"), encoding="utf-8") as handle:
        ee = yaml.safe_load(handle)
    version = galaxy_version()
    tarball = f"kubeforge-cluster-{version}.tar.gz"
    assert ee["version"] == 3
    assert ee["additional_build_files"] == [{"src": tarball, "dest": "collections"}]
    assert ee["dependencies"]["galaxy"]["collections"] == [{"name": f"collections/{tarball}", "type": "file"}]
    assert ee["options"]["tags"] == [f"kubeforge-cluster-ee:{version}"]
    with open(os.path.join(ROOT, "meta", "execution-environment.yml"), encoding="utf-8") as handle:
        meta = yaml.safe_load(handle)
    for kind in ("python", "system"):
        assert os.path.exists(os.path.join(ROOT, meta["dependencies"][kind]))
