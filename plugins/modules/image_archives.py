#!/usr/bin/python
# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_archives
short_description: Import container images into containerd from OCI archives, only those missing
version_added: 0.1.0
description:
  - For each archive of O(archives), checks whether containerd (namespace O(namespace)) has every image the
    archive holds (C(images), references as pods name them); only when one is missing is the archive
    downloaded (verified by sha256), imported with C(ctr images import), and removed again.
  - A re-run imports nothing. Images already present are never touched, so a node keeps what it runs.
  - Each image of an archive is also recorded as C(name@digest), as a pull would record it, so that pods
    naming an image by digest (C(name:tag@digest)) find the imported one.
  - For nodes without a registry (offline installs, the pause image on an air-gapped network) and for
    images a cluster must have before any pull can work.
options:
  archives:
    description: The archives.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - Where the OCI (or docker) archive is; C(file://) for a path on the node, a plain absolute path for
            a file on the controller (an offline bundle there), which is copied to the node only when needed.
        type: str
        required: true
      sha256:
        description:
          - The archive's sha256 (hex, or C(sha256:<hex>)), checked before the import.
          - This or O(archives[].digest) is required, so that nothing unverified is imported.
        type: str
      digest:
        description:
          - The digest (C(sha256:<hex>)) every image of the archive must have once imported, the pinned index
            digest of C(images.yml) (containerd checks each blob against its digest while importing). An image
            present under another digest counts as missing; an archive that gives another one is refused and
            its images removed again.
        type: str
      images:
        description: The image references the archive holds, as pods name them (C(registry.k8s.io/pause:3.10.2)).
        type: list
        elements: str
        required: true
  plan_only:
    description:
      - Only say which archives are needed (RV(needed)), fetch and import nothing; the action plugin uses
        it before it copies archives that lie on the controller.
    type: bool
    default: false
  namespace:
    description: containerd namespace; the kubelet's is C(k8s.io).
    type: str
    default: k8s.io
  ctr:
    description: Path of C(ctr).
    type: path
    default: /usr/local/bin/ctr
  address:
    description: containerd's socket.
    type: path
    default: /run/containerd/containerd.sock
  work_dir:
    description: Where archives are downloaded to (and removed from after the import).
    type: path
    default: /var/lib/kubeforge/images
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubeforge.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Reports which archives would be imported; downloads and imports nothing.
"""

EXAMPLES = r"""
- name: Import the pause image
  kubeforge.cluster.image_archives:
    archives:
      - url: https://mirror.example.internal/images/pause-3.10.2.oci.tar
        sha256: "sha256:34cca451241a39407c89b01683017da9fe3999b94e20b2b4747f228b2a6b4398"
        images: [registry.k8s.io/pause:3.10.2]
"""

RETURN = r"""
imported:
  description: Archives imported, with the images that were missing.
  returned: always
  type: list
  elements: dict
  sample: [{"url": "https://mirror.example.internal/images/pause-3.10.2.oci.tar", "missing": ["registry.k8s.io/pause:3.10.2"]}]
digested:
  description:
    - Records C(name@digest) made for images of the archives that had only their tag, as a pull would have
      made them, so that pods naming an image by digest find it.
  returned: always
  type: list
  elements: str
  sample: ["registry.k8s.io/pause@sha256:402ca82dc8970eff49dfd6ace02e033b9f9cbc423fc774cd74aaf4efb498a973"]
needed:
  description: Indexes (in O(archives)) of the archives that were, or would be, imported.
  returned: always
  type: list
  elements: int
  sample: [0, 2]
present:
  description: Images of the archives that containerd already had.
  returned: always
  type: list
  elements: str
  sample: ["docker.io/library/busybox:1.37"]
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeforge.cluster.plugins.module_utils import artifacts


def normalize(reference):
    """A reference as containerd stores it: docker.io/library/ for short names."""
    name = reference
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return name


def main():
    module = AnsibleModule(
        argument_spec=dict(
            archives=dict(type='list', elements='dict', required=True, options=dict(
                url=dict(type='str', required=True),
                sha256=dict(type='str'),
                digest=dict(type='str'),
                images=dict(type='list', elements='str', required=True),
            )),
            plan_only=dict(type='bool', default=False),
            namespace=dict(type='str', default='k8s.io'),
            ctr=dict(type='path', default='/usr/local/bin/ctr'),
            address=dict(type='path', default='/run/containerd/containerd.sock'),
            work_dir=dict(type='path', default='/var/lib/kubeforge/images'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    base = [params['ctr'], '--address', params['address'], '--namespace', params['namespace']]
    bad = [a['url'] for a in params['archives'] if not a.get('sha256') and not a.get('digest')]
    bad += ['%s: digest %r is not sha256:<64 hex digits>' % (a['url'], a['digest']) for a in params['archives']
            if a.get('digest') and not re.match(r'^sha256:[0-9a-f]{64}$', a['digest'])]
    if bad:
        module.fail_json(msg='each archive needs its sha256 or the digest of its images: ' + '; '.join(bad))
    have = listed(module, base)
    imported, present, needed = [], [], []

    def lacking(archive, have):
        return [ref for ref in archive['images'] if normalize(ref) not in have
                or (archive.get('digest') and have[normalize(ref)] != archive['digest'])]

    for index, archive in enumerate(params['archives']):
        missing = lacking(archive, have)
        present += [ref for ref in archive['images'] if ref not in missing]
        if not missing:
            continue
        needed.append(index)
        imported.append({'url': archive['url'], 'missing': missing})
        if module.check_mode or params['plan_only']:
            continue
        try:
            expected = None
            if archive.get('sha256'):
                expected = archive['sha256'].strip().lower()
                expected = expected[len('sha256:'):] if expected.startswith('sha256:') else expected
                if not re.match(r'^[0-9a-f]{64}$', expected):
                    raise ValueError('%s: sha256 %r is not 64 hex digits' % (archive['url'], archive['sha256']))
            if '://' not in archive['url']:
                raise ValueError('%s is a path on the controller: run the module through its action '
                                 '(kubeforge.cluster.image_archives), which copies it' % archive['url'])
            os.makedirs(params['work_dir'], mode=0o700, exist_ok=True)
            path, _digest = artifacts.download(archive['url'], params['work_dir'], expected=expected,
                                               what='image archive')
        except (artifacts.ArtifactError, ValueError) as exc:
            module.fail_json(msg=str(exc), imported=imported[:-1], present=present)
        try:
            rc, out, err = module.run_command(base + ['images', 'import', path])
        finally:
            os.unlink(path)
        if rc != 0:
            module.fail_json(msg='ctr images import of %s failed: %s' % (archive['url'], (err or out).strip()),
                             imported=imported[:-1], present=present)
        have = listed(module, base)
        still = [ref for ref in missing if normalize(ref) not in have]
        if still:
            module.fail_json(msg='%s was imported but does not hold %s' % (archive['url'], ', '.join(still)),
                             imported=imported[:-1], present=present)
        other = {ref: have[normalize(ref)] for ref in missing if archive.get('digest')
                 and have[normalize(ref)] != archive['digest']}
        if other:
            for ref in other:
                module.run_command(base + ['images', 'rm', normalize(ref)])
            module.fail_json(msg='%s holds %s, not the pinned digest %s; its images were removed again'
                             % (archive['url'], ', '.join('%s@%s' % item for item in sorted(other.items())),
                                archive['digest']), imported=imported[:-1], present=present)
    if params['plan_only']:
        module.exit_json(changed=bool(needed), imported=imported, present=present, digested=[], needed=needed)
    # A pull through the kubelet records an image under its tag and under name@digest; an import
    # records only the tag. Pods that name an image by digest need the second record too.
    digested = []
    for archive in params['archives']:
        for ref in archive['images']:
            name = normalize(ref)
            if '@' in name or name not in have:
                continue
            by_digest = '%s@%s' % (repository(name), have[name])
            if by_digest in have:
                continue
            digested.append(by_digest)
            if not module.check_mode:
                rc, out, err = module.run_command(base + ['images', 'tag', '--force', name, by_digest])
                if rc != 0:
                    module.fail_json(msg='ctr images tag %s %s failed: %s' % (name, by_digest, (err or out).strip()),
                                     imported=imported, present=present)
    module.exit_json(changed=bool(imported or digested), imported=imported, present=present, digested=digested,
                     needed=needed)


def listed(module, base):
    """{reference: target digest} of the images containerd holds."""
    rc, out, err = module.run_command(base + ['images', 'ls'])
    if rc != 0:
        module.fail_json(msg='cannot list containerd images: %s' % (err or out).strip())
    found = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and words[2].startswith('sha256:'):
            found[words[0]] = words[2]
    return found


def repository(name):
    """``registry.k8s.io/pause:3.10.2`` -> ``registry.k8s.io/pause`` (a port is not a tag)."""
    last = name.rsplit('/', 1)[-1]
    return name[:len(name) - len(last)] + last.split(':', 1)[0]


if __name__ == '__main__':
    main()
