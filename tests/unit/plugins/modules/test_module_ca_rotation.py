# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The ca_rotation module through main(): real CA files, the three phases, check mode, modes of the
files it writes, refusals, and no key material in what it returns."""

from __future__ import annotations

import os
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from module_runner import run_module  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import ca_rotation  # noqa: E402


def make_ca(tmp_path):
    key = pki.generate_private_key("ecdsa-p256")
    cert = pki.build_certificate(pki.Request("kubernetes-ca", usage="ca", validity_days=30, renew_before_days=0),
                                 key.public_key(), key)
    (tmp_path / "ca.crt").write_bytes(pki.certificate_pem(cert))
    (tmp_path / "ca.key").write_bytes(pki.private_key_pem(key))
    os.chmod(tmp_path / "ca.key", 0o600)
    return {"cert_path": str(tmp_path / "ca.crt"), "key_path": str(tmp_path / "ca.key"),
            "common_name": "kubernetes-ca", "validity_days": 30}


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_phases_through_the_module(tmp_path):
    args = make_ca(tmp_path)
    planned = run_module(ca_rotation, dict(args, phase="trust"), check_mode=True)
    assert planned["changed"] is True and planned["state"] == "trusting" and planned["before"] == "single"
    assert not (tmp_path / "ca-new.key").exists()

    trust = run_module(ca_rotation, dict(args, phase="trust"))
    assert trust["changed"] is True and trust["state"] == "trusting"
    assert trust["new_ca"]["subject"] == "CN=kubernetes-ca" and trust["new_ca"]["fingerprint"]
    assert mode(tmp_path / "ca-new.key") == 0o600 and mode(tmp_path / "ca-new.crt") == 0o644
    assert (tmp_path / "ca.crt").read_text().count("BEGIN CERTIFICATE") == 2
    assert "PRIVATE KEY" not in repr(trust)

    again = run_module(ca_rotation, dict(args, phase="trust"))
    assert again["changed"] is False and again["reason"] == "already trusting"

    sign = run_module(ca_rotation, dict(args, phase="sign"))
    assert sign["changed"] is True and sign["removed"] == [str(tmp_path / "ca-new.crt"), str(tmp_path / "ca-new.key")]
    assert mode(tmp_path / "ca.key") == 0o600
    assert pki.CA(args["cert_path"], args["key_path"])

    finish = run_module(ca_rotation, dict(args, phase="finish"))
    assert finish["changed"] is True and finish["state"] == "single"
    assert (tmp_path / "ca.crt").read_text().count("BEGIN CERTIFICATE") == 1
    assert run_module(ca_rotation, dict(args, phase="finish"))["changed"] is False


def test_a_phase_out_of_order_fails_and_changes_nothing(tmp_path):
    args = make_ca(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    result = run_module(ca_rotation, dict(args, phase="sign"))
    assert result["failed"] is True and "the next phase is trust" in result["msg"]
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before
