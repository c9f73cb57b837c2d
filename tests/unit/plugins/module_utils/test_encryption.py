# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Encryption at rest: who holds which key, conflicts named without the key, the file to write."""

from __future__ import annotations

import base64

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.filter import encryption as filters
from ansible_collections.kubeforge.cluster.plugins.module_utils import encryption

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def config(secret, provider="secretbox", name="key1"):
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"],
                           "providers": [{provider: {"keys": [{"name": name, "secret": secret}]}}, {"identity": {}}]}]}


def test_nobody_holds_a_key():
    assert encryption.plan({"cp1": None, "cp2": None}) == {"holders": [], "key": None, "conflict": ""}


def test_one_holder_gives_the_key_to_the_others():
    result = encryption.plan({"cp1": None, "cp2": config(KEY_A), "cp3": None})
    assert result == {"holders": ["cp2"], "key": {"provider": "secretbox", "name": "key1", "secret": KEY_A},
                      "conflict": ""}


def test_different_keys_are_refused_naming_hosts_not_keys():
    result = encryption.plan({"cp1": config(KEY_A), "cp2": config(KEY_A), "cp3": config(KEY_B)})
    assert result["key"] is None
    assert "cp1, cp2 hold secretbox key key1 (sha256:" in result["conflict"]
    assert "cp3 holds secretbox key key1" in result["conflict"]
    assert KEY_A not in result["conflict"] and KEY_B not in result["conflict"]


def test_identity_first_holds_no_key():
    document = {"resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}]}
    assert encryption.plan({"cp1": document})["holders"] == []


@pytest.mark.parametrize("document, message", [
    (config("not base64!"), "not base64"),
    (config(base64.b64encode(b"short").decode()), "has 5 bytes"),
    (config(KEY_A, provider="kms"), "provider kms is not one this collection manages"),
    ("text", "not a mapping"),
])
def test_unusable_configuration_is_named(document, message):
    result = encryption.plan({"cp1": document})
    assert message in result["conflict"] and result["conflict"].startswith("cp1: ")


def test_configuration_keeps_a_former_provider_for_reading():
    body = encryption.configuration(["secrets", "configmaps"], "aescbc",
                                    {"provider": "secretbox", "name": "key1", "secret": KEY_A})
    assert body == {"resources": [{"resources": ["secrets", "configmaps"], "providers": [
        {"aescbc": {"keys": [{"name": "key1", "secret": KEY_A}]}},
        {"secretbox": {"keys": [{"name": "key1", "secret": KEY_A}]}},
        {"identity": {}}]}]}
    same = encryption.configuration(["secrets"], "secretbox", {"provider": "secretbox", "name": "key1", "secret": KEY_A})
    assert [list(p) for p in same["resources"][0]["providers"]] == [["secretbox"], ["identity"]]


def test_filter_reads_slurped_files():
    held = {"cp1": base64.b64encode(yaml.safe_dump(config(KEY_A)).encode()).decode(), "cp2": ""}
    assert filters.encryption_plan(held)["key"]["secret"] == KEY_A
    assert filters.encryption_config({"name": "key1", "secret": KEY_A}, ["secrets"], "secretbox")["resources"]


def test_a_control_plane_names_its_key_by_fingerprint_only(tmp_path):
    secret = base64.b64encode(b"k" * 32).decode()
    path = tmp_path / "encryption.yaml"
    path.write_text(yaml.safe_dump(encryption.configuration(["secrets"], "secretbox", {"name": "key1", "secret": secret})))
    held = encryption.held_key(str(path))
    assert held == {"provider": "secretbox", "name": "key1", "fingerprint": encryption.fingerprint(secret)}
    assert secret not in repr(held)
    assert encryption.held_key(str(tmp_path / "absent.yaml")) is None


def test_fingerprints_that_differ_are_refused_naming_the_hosts():
    one = {"provider": "secretbox", "name": "key1", "fingerprint": "sha256:0000000000000001"}
    two = dict(one, fingerprint="sha256:0000000000000002")
    assert encryption.fingerprint_conflict({"cp1": one, "cp2": None, "cp3": one}) == ""
    message = encryption.fingerprint_conflict({"cp1": one, "cp2": two, "cp3": one})
    assert "cp1, cp3 hold secretbox key key1 (sha256:0000000000000001)" in message
    assert "cp2 holds secretbox key key1 (sha256:0000000000000002)" in message
