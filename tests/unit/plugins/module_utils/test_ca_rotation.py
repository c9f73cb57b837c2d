# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/ca_rotation.py: the three phases on real CA files, interrupted phases, refusals,
and what a TLS client that reads the trust file accepts in each state."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import ca_rotation, pki

CN = "kubernetes-ca"


def make_ca(tmp_path):
    request = pki.Request(CN, usage="ca", validity_days=30, renew_before_days=0)
    key = pki.generate_private_key("ecdsa-p256")
    cert = pki.build_certificate(request, key.public_key(), key)
    (tmp_path / "ca.crt").write_bytes(pki.certificate_pem(cert))
    (tmp_path / "ca.key").write_bytes(pki.private_key_pem(key))
    return str(tmp_path / "ca.crt"), str(tmp_path / "ca.key")


def apply(plan):
    for path, content in plan["write"].items():
        with open(path, "wb") as handle:
            handle.write(content)
    for path in plan["remove"]:
        if os.path.exists(path):
            os.unlink(path)


def run(phase, paths, **kwargs):
    plan = ca_rotation.plan(phase, paths[0], paths[1], CN, "ecdsa-p256", 30, **kwargs)
    apply(plan)
    return plan


def leaf(paths, name="leaf"):
    """A server certificate issued by the CA as the files are now (its first certificate signs)."""
    ca = pki.CA(*paths)
    key = pki.generate_private_key("ecdsa-p256")
    cert = ca.issue(pki.Request(name, usage="server", dns_names=[name], validity_days=1, renew_before_days=0), key.public_key())
    return cert


def trusted_by(paths, cert):
    """Whether OpenSSL, given the trust file as its CA file, verifies ``cert`` (as a TLS client reading
    that file would)."""
    leaf_file = os.path.join(os.path.dirname(paths[0]), "leaf-under-test.pem")
    with open(leaf_file, "wb") as handle:
        handle.write(pki.certificate_pem(cert))
    verify = subprocess.run(["openssl", "verify", "-CAfile", paths[0], leaf_file], capture_output=True, text=True,
                            check=False)
    return verify.returncode == 0


def fingerprints(path):
    return [pki.fingerprint(pki.load_certificate(block))
            for block in ca_rotation.certificates_pem(open(path, "rb").read())]


def test_the_three_phases_keep_every_leaf_trusted_until_finish(tmp_path):
    paths = make_ca(tmp_path)
    old = fingerprints(paths[0])
    old_leaf = leaf(paths)
    new_cert, new_key = ca_rotation.next_paths(*paths)
    assert (new_cert, new_key) == (str(tmp_path / "ca-new.crt"), str(tmp_path / "ca-new.key"))

    trust = run("trust", paths)
    assert (trust["before"], trust["after"]) == ("single", "trusting")
    assert trust["secret"] == {new_key} and set(trust["write"]) == {new_key, new_cert, paths[0]}
    assert trust["new_ca"]["subject"] == "CN=" + CN
    new = fingerprints(new_cert)
    assert fingerprints(paths[0]) == old + new
    # the old CA still signs: a leaf issued now is the old CA's
    assert pki.signed_by(leaf(paths), pki.load_certificate(open(new_cert, "rb").read()).public_key()) is False
    assert trusted_by(paths, old_leaf)

    sign = run("sign", paths)
    assert (sign["before"], sign["after"]) == ("trusting", "signing")
    assert fingerprints(paths[0]) == new + old
    assert not os.path.exists(new_cert) and not os.path.exists(new_key)
    new_leaf = leaf(paths)
    assert pki.signed_by(new_leaf, pki.load_certificate(open(paths[0], "rb").read()).public_key())
    assert trusted_by(paths, old_leaf) and trusted_by(paths, new_leaf)

    finish = run("finish", paths)
    assert (finish["before"], finish["after"]) == ("signing", "single")
    assert fingerprints(paths[0]) == new
    assert trusted_by(paths, new_leaf) and not trusted_by(paths, old_leaf)
    assert pki.CA(*paths).cert.subject.rfc4514_string() == "CN=" + CN


@pytest.mark.parametrize("phase", ["trust", "sign", "finish"])
def test_a_phase_already_reached_changes_nothing(tmp_path, phase):
    paths = make_ca(tmp_path)
    for step in ca_rotation.PHASES[:ca_rotation.PHASES.index(phase) + 1]:
        run(step, paths)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    again = run(phase, paths)
    assert again["write"] == {} and again["remove"] == [] and again["reason"].startswith("already ")
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


def test_finish_on_a_ca_never_rotated_is_a_no_op(tmp_path):
    paths = make_ca(tmp_path)
    assert run("finish", paths)["write"] == {}


@pytest.mark.parametrize("done, phase, message", [
    ([], "sign", "a single CA with no rotation in progress, so phase sign cannot run now: the next phase is trust"),
    (["trust"], "finish", "so phase finish cannot run now: the next phase is sign"),
    (["trust", "sign"], "trust", "signed by the new CA, the old one still trusted, so phase trust cannot run now: "
                                 "the next phase is finish"),
])
def test_a_phase_out_of_order_is_refused_naming_the_next(tmp_path, done, phase, message):
    paths = make_ca(tmp_path)
    for step in done:
        run(step, paths)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    with pytest.raises(ca_rotation.RotationError) as caught:
        run(phase, paths)
    assert message in str(caught.value) and paths[0] in str(caught.value)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


def test_an_interrupted_trust_is_completed_with_the_same_new_ca(tmp_path):
    paths = make_ca(tmp_path)
    plan = ca_rotation.plan("trust", paths[0], paths[1], CN, "ecdsa-p256", 30)
    # the keys and the new CA were written, the trust file was not
    for path in sorted(plan["write"]):
        if path != paths[0]:
            open(path, "wb").write(plan["write"][path])
    assert ca_rotation.read_state(*paths)["state"] == "trust-started"
    new = fingerprints(ca_rotation.next_paths(*paths)[0])
    again = run("trust", paths)
    assert again["before"] == "trust-started" and fingerprints(paths[0])[1:] == new
    assert ca_rotation.read_state(*paths)["state"] == "trusting"


def test_an_interrupted_sign_is_completed(tmp_path):
    paths = make_ca(tmp_path)
    run("trust", paths)
    new = fingerprints(ca_rotation.next_paths(*paths)[0])
    # the key was replaced, the trust file and the -new files were not
    open(paths[1], "wb").write(open(ca_rotation.next_paths(*paths)[1], "rb").read())
    assert ca_rotation.read_state(*paths)["state"] == "sign-started"
    with pytest.raises(ca_rotation.RotationError, match="half-way through phase sign.*next phase is sign"):
        run("finish", paths)
    again = run("sign", paths)
    assert again["before"] == "sign-started" and paths[1] not in again["write"]
    assert fingerprints(paths[0])[0] == new[0]
    assert pki.CA(*paths)  # key and first certificate belong together again


def test_check_mode_describes_the_new_ca_without_a_key(tmp_path):
    paths = make_ca(tmp_path)
    plan = ca_rotation.plan("trust", paths[0], paths[1], CN, "ecdsa-p256", 30, check_mode=True)
    assert plan["write"] == {} and plan["after"] == "trusting"
    assert plan["new_ca"]["subject"] == "CN=" + CN and plan["new_ca"]["fingerprint"] is None


def test_files_that_fit_no_state_are_refused_naming_them(tmp_path):
    paths = make_ca(tmp_path)
    with pytest.raises(ca_rotation.RotationError, match="does not exist: there is no CA to rotate"):
        ca_rotation.read_state(str(tmp_path / "nope.crt"), paths[1])
    run("trust", paths)
    os.unlink(ca_rotation.next_paths(*paths)[1])
    with pytest.raises(ca_rotation.RotationError, match="go together, and only one of them exists"):
        ca_rotation.read_state(*paths)
    other = tmp_path / "other"
    other.mkdir()
    foreign = make_ca(other)
    open(paths[1], "wb").write(open(foreign[1], "rb").read())
    with pytest.raises(ca_rotation.RotationError):
        ca_rotation.read_state(*paths)


def test_first_certificate_is_the_signer(tmp_path):
    paths = make_ca(tmp_path)
    run("trust", paths)
    first = ca_rotation.first_certificate(open(paths[0], "rb").read())
    assert pki.fingerprint(pki.load_certificate(first)) == fingerprints(paths[0])[0]
    assert len(ca_rotation.certificates_pem(first)) == 1
    with pytest.raises(ca_rotation.RotationError):
        ca_rotation.first_certificate(b"")
