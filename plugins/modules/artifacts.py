#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifacts
short_description: Install verified release binaries (Kubernetes, etcd, containerd, runc, CNI plugins, crictl, ...)
version_added: 0.1.0
description:
  - Installs the release artifacts of the components asked for, in one task per host. The
    versions, URLs, archive members, destinations and sha256 sums come from the collection's
    versions table (C(versions.yml)); the action plugin resolves them on the
    controller and the module installs them on the host.
  - Every download is verified against its sha256 before anything is installed. For
    kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy the table pins no
    sum; they are checked against the C(<url>.sha256) file published beside each binary, fetched
    at download time, unless O(checksums) pins them.
  - Idempotent without keeping archives on the host. The host records what it installed in
    O(state_file), per component the version, the artifact sha256 and each installed file with
    its sha256. An artifact is in place when those match and every file still has its recorded
    sha256; a re-run downloads nothing then.
  - Order of work for the artifacts that are not in place. All downloads of the task complete
    and are verified, and every member is written to a temporary file beside its destination,
    before the first destination is replaced. Each destination is then replaced by a rename, so a
    running program keeps the binary it started from, and a failed download or checksum installs
    nothing.
  - Two ways to fetch. With O(mode=host) every host downloads from the (mirror) URL. With
    O(mode=controller) the controller downloads each artifact once into O(cache_dir), under a
    lock shared by all forks, verifies it, and pushes it to the hosts that need it.
  - With O(bundle_dir) the task runs on the controller only. It fetches every artifact of
    O(kubernetes_versions) for O(architectures) into that directory, laid out as a mirror, and
    writes C(manifest.json) and C(SHA256SUMS) there (see C(playbooks/offline_bundle.yml)).
  - Modes come from the versions table; files are owned by the user the module runs as (root).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    description: Compares what is installed with what was asked for and reports what would be downloaded and installed; writes nothing and downloads nothing.
  diff_mode:
    support: full
    description: Shows the version of each component that changes, before and after.
  action:
    support: full
    description: Runs through the action plugin of the same name, which resolves the artifacts on the controller.
options:
  components:
    description:
      - Components to install, by their name in the versions table (V(kubelet), V(kubectl),
        V(kube-apiserver), V(kube-controller-manager), V(kube-scheduler), V(kube-proxy),
        V(etcd), V(containerd), V(runc), V(cni_plugins), V(crictl), V(nerdctl), V(helm),
        V(gateway_api_crds)).
      - Combined with O(all_for_groups).
    type: list
    elements: str
    default: []
  all_for_groups:
    description:
      - Also install every component whose groups in the versions table include one of the
        host's groups (C(group_names)).
    type: bool
    default: false
  versions:
    description:
      - 'Versions that override the defaults, by component (C({"etcd": "3.6.9"})) or by family
        (V(kubernetes) for all Kubernetes binaries).'
      - Without an entry, a component uses its C(kubeforge_<family>_version) variable, then the
        version paired with the Kubernetes minor in the table, then the table's default.
    type: dict
    default: {}
  arch:
    description:
      - Architecture of the host, V(amd64) or V(arm64).
      - Defaults to C(kubeforge_host.arch), then to the gathered C(ansible_facts.architecture).
    type: str
  mirror:
    description:
      - Where to fetch from. Empty means upstream. An http(s) URL is a mirror laid out as
        C(<mirror>/<upstream host>/<upstream path>). An absolute directory on the controller
        with the same layout implies O(mode=controller).
      - Defaults to C(kubeforge_files_mirror).
    type: str
  mode:
    description:
      - V(host) downloads on each host; V(controller) downloads once on the controller and pushes.
      - Defaults to C(kubeforge_download_mode), then V(host).
    type: str
    choices: [host, controller]
  checksums:
    description:
      - 'sha256 sums that override the table or add versions it lacks,
        C({"component": {"version": {"arch": "sha256:<hex>"}}}). Use V(noarch) as the architecture
        of architecture-independent artifacts.'
      - Defaults to C(kubeforge_download_checksums).
    type: dict
  cache_dir:
    description:
      - Controller directory for O(mode=controller), laid out like a mirror.
      - Defaults to C(kubeforge_download_cache_dir), then C(~/.cache/kubeforge/downloads).
    type: path
  state_file:
    description: Where the host records what is installed. A reset removes this file and every file it lists.
    type: path
    default: /var/lib/kubeforge/artifacts.json
  timeout:
    description: Seconds to wait for a server before a download attempt fails.
    type: int
    default: 60
  retries:
    description: Further attempts after a network error or an HTTP 5xx/429 answer.
    type: int
    default: 2
  validate_certs:
    description: Verify TLS certificates of https sources.
    type: bool
    default: true
  images:
    description:
      - With O(bundle_dir), the container images to put in the bundle, each C(name), C(tag) and C(digest)
        (the index digest; required), as the C(kubeforge.cluster.image_entries) filter gives them.
      - Each is read from its registry (or O(image_mirror)) by digest, every blob checked, and written as an
        OCI archive at C(images/<name>/<tag>.oci.tar), holding the linux images of O(architectures).
        An archive already there that names the same digest is kept.
    type: list
    elements: dict
    default: []
  image_mirror:
    description:
      - A registry that serves every image below its own host with the upstream registry as first path
        component (C(registry.k8s.io/pause) at C(<mirror>/v2/registry.k8s.io/pause)); C(https://) unless the
        value names C(http://). Empty, each image's own registry.
    type: str
    default: ""
  bundle_dir:
    description:
      - Build an offline bundle in this controller directory instead of installing on a host.
    type: path
  architectures:
    description: Architectures to put in the bundle (with O(bundle_dir)).
    type: list
    elements: str
    default: [amd64]
  kubernetes_versions:
    description:
      - Kubernetes versions to put in the bundle (with O(bundle_dir)), each with the versions of
        the other components that go with its minor unless O(versions) or the
        C(kubeforge_*_version) variables say otherwise.
      - Defaults to C(kubeforge_kubernetes_version), then the table's default version.
    type: list
    elements: str
  table:
    description:
      - Path of a versions table with the structure of C(versions.yml), used
        instead of the collection's (for a site that maintains its own list of releases).
    type: path
  resolved:
    description:
      - Internal, set by the action plugin. The resolved artifact specifications.
    type: list
    elements: dict
  plan_only:
    description:
      - Internal, set by the action plugin. Compare only and report what is needed.
    type: bool
    default: false
notes:
  - The state file and the files it lists are everything this module writes on a host.
seealso:
  - name: Downloads, mirrors and the offline bundle
    description: docs/downloads.md in the collection.
    link: https://github.com/kubeforge/cluster/blob/main/docs/downloads.md
"""

EXAMPLES = r"""
- name: Install every artifact the host's groups need
  kubeforge.cluster.artifacts:
    all_for_groups: true

- name: Move etcd to another version during a rolling upgrade
  kubeforge.cluster.artifacts:
    components: [etcd]
    versions:
      etcd: "3.6.9"

- name: Fetch once on the controller from a local mirror and push
  kubeforge.cluster.artifacts:
    components: [containerd, runc, cni_plugins]
    mirror: /srv/kubeforge-bundle
    arch: amd64

- name: Build an offline bundle (runs on the controller)
  kubeforge.cluster.artifacts:
    bundle_dir: /srv/kubeforge-bundle
    architectures: [amd64, arm64]
    kubernetes_versions: ["1.36.4"]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
artifacts:
  description: Per component, what was (or in check mode would be) done.
  returned: always
  type: dict
  sample:
    etcd:
      changed: true
      action: upgrade
      version: 3.6.9
      previous_version: 3.6.5
      arch: amd64
      url: https://github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz
      sha256: 0a3c5b2e...
      checksum_source: pinned
      files: [/usr/local/bin/etcd, /usr/local/bin/etcdctl, /usr/local/bin/etcdutl]
  contains:
    changed:
      description: Whether this component changed.
      type: bool
      sample: true
    action:
      description:
        - V(none), V(install), V(upgrade), V(downgrade), V(replace) (same version, other artifact),
          V(repair) (a file was changed or removed) or V(mode).
      type: str
      sample: upgrade
    version:
      description: The wanted version.
      type: str
      sample: 3.6.9
    previous_version:
      description: The version recorded before this run, or null.
      type: str
      sample: 3.6.5
    files:
      description: Installed files (in check mode, the destinations; a glob for CNI plugins).
      type: list
      elements: str
      sample: [/usr/local/bin/etcd]
    removed:
      description: Files of the previous version that the new one no longer has, removed.
      type: list
      elements: str
      returned: when some were removed
      sample: [/opt/cni/bin/dhcp]
state_file:
  description: The state file. A reset removes it and every file in RV(installed_files).
  returned: always
  type: str
  sample: /var/lib/kubeforge/artifacts.json
installed_files:
  description: Every file recorded in the state file, for all components ever installed on the host.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/etcd, /usr/local/bin/etcdctl, /usr/local/bin/etcdutl]
downloaded:
  description: URLs the host downloaded in this run (empty when everything was in place, or in controller mode).
  returned: always
  type: list
  elements: str
  sample: [https://github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz]
transferred:
  description: In controller mode, the cached files pushed to the host in this run.
  returned: when O(mode=controller)
  type: list
  elements: str
  sample: [/home/deploy/.cache/kubeforge/downloads/github.com/etcd-io/etcd/releases/download/v3.6.9/etcd-v3.6.9-linux-amd64.tar.gz]
needed:
  description: Components that are not in place (filled in check mode; empty after a real run).
  returned: always
  type: list
  elements: str
  sample: [etcd]
bundle:
  description: With O(bundle_dir), the bundle directory, its manifest and what was fetched.
  returned: when O(bundle_dir) is set
  type: dict
  sample:
    dir: /srv/kubeforge-bundle
    manifest: /srv/kubeforge-bundle/manifest.json
    sha256sums: /srv/kubeforge-bundle/SHA256SUMS
    artifacts: 22
    fetched: 3
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils.artifacts import (
    user_argument_spec,
    ArtifactError,
    Installer,
    parse_mode,
)


def argument_spec():
    spec = user_argument_spec()
    spec.update(
        resolved=dict(type="list", elements="dict"),
        plan_only=dict(type="bool", default=False),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["resolved"] is None:
        module.fail_json(msg="kubeforge.cluster.artifacts runs through its action plugin, which resolves "
                             "the artifacts; call it as a task of the kubeforge.cluster collection")
    installer = Installer(
        params["resolved"],
        state_file=params["state_file"],
        check_mode=module.check_mode,
        timeout=params["timeout"],
        retries=params["retries"],
        validate_certs=params["validate_certs"],
        mover=module.atomic_move,
        set_mode=lambda path, mode: os.chmod(path, parse_mode(mode)),
    )
    try:
        result = installer.run(plan_only=params["plan_only"])
    except ArtifactError as exc:
        module.fail_json(msg=str(exc), downloaded=installer.downloaded)
    except OSError as exc:
        module.fail_json(msg="installing artifacts failed at %s: %s" % (exc.filename or params["state_file"], exc),
                         downloaded=installer.downloaded)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
