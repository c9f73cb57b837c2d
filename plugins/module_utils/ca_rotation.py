# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Rotation of a CA in three phases, each decided from the files alone (so each can be re-run).

A CA is a certificate file (``ca.crt``: what every client and server *trusts*) and a key file
(``ca.key``: what *signs*). The signer is always the first certificate of the trust file, and
the key belongs to it. During a rotation the trust file holds two CAs:

========== ============================= ============== ===================================
state      trust file (``ca.crt``)         ``ca.key``       next files (``ca-new.crt/.key``)
========== ============================= ============== ===================================
single     the CA                        its key        absent
trusting   old CA, new CA                old CA's key   the new CA and its key
signing    new CA, old CA                new CA's key   absent
========== ============================= ============== ===================================

``trust`` creates the new CA beside the old one and adds it to the trust file: everything
that re-reads the file trusts both, nothing is signed by the new one yet. ``sign`` makes the
new CA the signer (its key replaces the old key, which is gone from then on); the leaves the
old CA signed still verify, and a run of the pki role re-issues them with the new CA.
``finish`` drops the old CA from the trust file. A phase whose state is already reached
changes nothing; one asked out of order is refused, saying which phase comes next.

Two states in between are the marks of an interrupted phase and are completed by re-running
it: the next files present while the trust file still holds one CA (``trust`` started), and
the trust file at "old, new" with the key already the new one (``sign`` started).
"""

from __future__ import annotations

import re

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki

PHASES = ("trust", "sign", "finish")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.S)
# what each phase reaches, and the phase a state asks for next
_REACHES = {"trust": "trusting", "sign": "signing", "finish": "single"}
_NEXT = {"single": "trust", "trusting": "sign", "signing": "finish"}


class RotationError(ValueError):
    """A phase that cannot run on the files as they are; the message names the files and the way on."""


def next_paths(cert_path, key_path):
    """Where the new CA waits while both are trusted: ``ca-new.crt`` and ``ca-new.key`` beside them."""
    def beside(path, suffix):
        return path[:-len(suffix)] + "-new" + suffix if path.endswith(suffix) else path + "-new"
    return beside(cert_path, ".crt"), beside(key_path, ".key")


def certificates_pem(data):
    """The PEM blocks of every certificate in ``data``, in order, each ending with a newline."""
    return [block if block.endswith(b"\n") else block + b"\n" for block in _PEM.findall(data or b"")]


def read_state(cert_path, key_path):
    """What the files say: {"state", "trust": [PEM blocks], "key": PEM, "next_cert", "next_key"}.

    ``state`` is one of single, trusting, signing, trust-started, sign-started. Raises
    RotationError for files that fit none of them, naming what is wrong.
    """
    new_cert_path, new_key_path = next_paths(cert_path, key_path)
    trust_data = files.read_file(cert_path)
    key_data = files.read_file(key_path)
    if trust_data is None or key_data is None:
        raise RotationError("%s or %s does not exist: there is no CA to rotate (install.yml creates it)"
                            % (cert_path, key_path))
    trust = certificates_pem(trust_data)
    if not trust or len(trust) > 2:
        raise RotationError("%s holds %d certificates; a CA's trust file holds one, or two during a rotation"
                            % (cert_path, len(trust)))
    key = pki.load_private_key(key_data, "CA key %s" % key_path)
    certs = [pki.load_certificate(block, "certificate %d of %s" % (index + 1, cert_path))
             for index, block in enumerate(trust)]
    for index, cert in enumerate(certs):
        if pki.cert_usage(cert) != "ca":
            raise RotationError("certificate %d of %s is not a CA certificate" % (index + 1, cert_path))
    new_cert_data, new_key_data = files.read_file(new_cert_path), files.read_file(new_key_path)
    if (new_cert_data is None) != (new_key_data is None):
        raise RotationError("%s and %s go together, and only one of them exists: restore the other, or remove "
                            "both to start the rotation again with phase trust"
                            % (new_cert_path, new_key_path))
    result = {"trust": trust, "key": key_data, "next_cert": new_cert_data, "next_key": new_key_data,
              "cert_path": cert_path, "key_path": key_path, "next_cert_path": new_cert_path,
              "next_key_path": new_key_path}
    signs_first = pki.same_public_key(certs[0].public_key(), key)
    if new_cert_data is None:
        if not signs_first:
            raise RotationError("CA key %s does not belong to the first certificate of %s" % (key_path, cert_path))
        result["state"] = "single" if len(certs) == 1 else "signing"
        return result
    new_cert = pki.load_certificate(new_cert_data, "certificate %s" % new_cert_path)
    new_key = pki.load_private_key(new_key_data, "CA key %s" % new_key_path)
    if not pki.same_public_key(new_cert.public_key(), new_key):
        raise RotationError("CA key %s does not belong to %s" % (new_key_path, new_cert_path))
    if len(certs) == 1:
        if not signs_first:
            raise RotationError("CA key %s does not belong to %s" % (key_path, cert_path))
        result["state"] = "trust-started"
    elif pki.fingerprint(certs[1]) != pki.fingerprint(new_cert):
        raise RotationError("the second certificate of %s is not the new CA %s: remove %s and %s and run phase "
                            "trust again" % (cert_path, new_cert_path, new_cert_path, new_key_path))
    elif signs_first:
        result["state"] = "trusting"
    elif pki.same_public_key(new_cert.public_key(), key):
        result["state"] = "sign-started"
    else:
        raise RotationError("CA key %s belongs neither to the old CA nor to the new one (%s)"
                            % (key_path, new_cert_path))
    return result


def plan(phase, cert_path, key_path, common_name, key_type, validity_days, check_mode=False, now=None):
    """What ``phase`` does to the files: {"before", "after", "write": {path: bytes}, "secret": {paths},
    "remove": [paths], "reason", "new_ca": description of the new CA (trust) or None}.

    Nothing is written here; in check mode a new CA is described, not generated.
    """
    if phase not in PHASES:
        raise RotationError("phase must be one of %s, got %r" % (", ".join(PHASES), phase))
    current = read_state(cert_path, key_path)
    state = current["state"]
    out = {"before": state, "after": _REACHES[phase], "write": {}, "secret": set(), "remove": [], "reason": "",
           "new_ca": None}
    if state == _REACHES[phase]:
        out["reason"] = "already %s" % state
        return out
    trust = current["trust"]
    if phase == "trust" and state in ("single", "trust-started"):
        if state == "single":
            request = pki.Request(common_name, usage="ca", validity_days=validity_days, renew_before_days=0,
                                  what="the new CA")
            if check_mode:
                out["new_ca"] = pki.predicted(request, key_type, None, now)
                new_pem = None
            else:
                key = pki.generate_private_key(key_type)
                cert = pki.build_certificate(request, key.public_key(), key, None, now)
                new_pem = pki.certificate_pem(cert)
                out["write"][current["next_key_path"]] = pki.private_key_pem(key)
                out["secret"].add(current["next_key_path"])
                out["write"][current["next_cert_path"]] = new_pem
                out["new_ca"] = pki.describe(cert)
            out["reason"] = "a new CA created beside the old one, both trusted"
        else:
            new_pem = current["next_cert"]
            out["new_ca"] = pki.describe(pki.load_certificate(new_pem, current["next_cert_path"]))
            out["reason"] = "the new CA (created by an interrupted run) added to the trust file"
        if new_pem is not None:
            out["write"][cert_path] = trust[0] + certificates_pem(new_pem)[0]
        return out
    if phase == "sign" and state in ("trusting", "sign-started"):
        if state == "trusting":
            out["write"][key_path] = current["next_key"]
            out["secret"].add(key_path)
        out["write"][cert_path] = trust[1] + trust[0]
        out["remove"] = [current["next_cert_path"], current["next_key_path"]]
        out["reason"] = "the new CA signs from now on; the old one is still trusted"
        return out
    if phase == "finish" and state == "signing":
        out["write"][cert_path] = trust[0]
        out["reason"] = "the old CA is no longer trusted"
        return out
    wanted = {"trust-started": "trust", "sign-started": "sign"}.get(state, _NEXT.get(state))
    raise RotationError("%s is %s, so phase %s cannot run now: the next phase is %s"
                        % (cert_path, _describe_state(state), phase, wanted))


def _describe_state(state):
    return {
        "single": "a single CA with no rotation in progress",
        "trusting": "trusting the old and the new CA, the old one still signing",
        "signing": "signed by the new CA, the old one still trusted",
        "trust-started": "half-way through phase trust",
        "sign-started": "half-way through phase sign",
    }[state]


def first_certificate(data):
    """The first certificate of a trust file (the signer), as PEM; what a consumer that takes a
    single CA certificate (kube-controller-manager's signing flags) is given."""
    blocks = certificates_pem(data)
    if not blocks:
        raise RotationError("no certificate in the trust file")
    return blocks[0]
