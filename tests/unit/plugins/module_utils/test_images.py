"""The image table, its overrides and the references pods name."""

import os

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
DIGEST = "sha256:" + "ab" * 32
TABLE = {"coredns": {"name": "registry.k8s.io/coredns/coredns", "tag": "v1.14.2", "digest": "sha256:" + "0" * 64}}


def test_the_collection_table_pins_every_image_by_tag_and_index_digest():
    with open(os.path.join(ROOT, "images.yml"), encoding="utf-8") as handle:
        table = yaml.safe_load(handle)["images"]
    assert set(table) == {"pause", "coredns", "metrics_server", "local_path", "local_path_helper",
                          "flannel", "flannel_cni_plugin"}
    for key, entry in table.items():
        assert set(entry) == {"name", "tag", "digest"}, key
        assert images.check_overrides({key: entry}, table) == [], key


@pytest.mark.parametrize("override, wanted", [
    (None, "registry.k8s.io/coredns/coredns:v1.14.2@sha256:" + "0" * 64),
    ({"digest": DIGEST}, "registry.k8s.io/coredns/coredns:v1.14.2@" + DIGEST),
    ({"tag": "v1.15.0"}, "registry.k8s.io/coredns/coredns:v1.15.0"),
    ({"name": "mirror.example.com/coredns", "tag": "v1.14.2"}, "mirror.example.com/coredns:v1.14.2"),
    ({"name": "mirror.example.com/coredns", "digest": DIGEST}, "mirror.example.com/coredns:v1.14.2@" + DIGEST),
])
def test_an_override_replaces_what_it_names_and_drops_a_digest_that_no_longer_applies(override, wanted):
    assert images.references(TABLE, {"coredns": override} if override else {}) == {"coredns": wanted}


@pytest.mark.parametrize("overrides, expected", [
    ({"kube-dns": {"tag": "1"}}, "kubeforge_images.kube-dns: is not an image the collection deploys"),
    ({"coredns": {"name": "mirror.example.com/coredns"}}, "kubeforge_images.coredns: gives neither a tag nor a digest"),
    ({"coredns": {"digest": "sha256:abc"}}, "kubeforge_images.coredns.digest: 'sha256:abc' is not a sha256 digest"),
    ({"coredns": {"tag": "v1 2"}}, "kubeforge_images.coredns.tag: 'v1 2' is not an image tag"),
    ({"coredns": {"tag": "v1", "name": "Mirror/CoreDNS"}}, "kubeforge_images.coredns.name: 'Mirror/CoreDNS' is not an image name"),
    ({"coredns": {"tag": "v1", "registry": "x"}}, "kubeforge_images.coredns: has unknown field(s) registry"),
    ({"coredns": "v1.14.2"}, "kubeforge_images.coredns: must be a mapping, got str"),
    (["coredns"], "kubeforge_images: must be a mapping, got list"),
])
def test_bad_overrides_are_named(overrides, expected):
    found = [f"{subject}: {rule}" for subject, rule, _accepted in images.check_overrides(overrides, TABLE)]
    assert expected in found, found


def test_every_bad_override_is_reported_at_once():
    errors = images.check_overrides({"nope": {}, "coredns": {"name": "x"}}, TABLE)
    assert [subject for subject, _r, _a in errors] == ["kubeforge_images.coredns", "kubeforge_images.nope"]
