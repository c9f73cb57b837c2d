# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Encryption at rest: the key every control plane must share, read from what each holds.

Controller-side (the ``encryption_plan`` and ``encryption_config`` filters): the control planes'
current EncryptionConfiguration files come in as text; out come who holds which key (by a
fingerprint, never the key), whether they disagree, and the configuration to write. The key itself
is created on a control plane and travels only in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from ansible_collections.kubeforge.cluster.plugins.module_utils import shared_secret

PROVIDERS = ("secretbox", "aescbc", "aesgcm")
IDENTITY = {"identity": {}}


class EncryptionError(ValueError):
    """An encryption configuration that cannot be used as it is, with the host and the reason."""


def fingerprint(secret):
    """A short, non-reversible name for a key, safe to print."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def check_secret(secret, what):
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise EncryptionError(f"{what}: the key is not base64") from None
    if len(raw) != 32:
        raise EncryptionError(f"{what}: the key has {len(raw)} bytes; secretbox, aescbc and aesgcm need 32")


def active_key(document, host):
    """(provider, key name, secret) of the key that encrypts new writes in ``document``, or None when
    it encrypts nothing (identity first, or no resources)."""
    if not isinstance(document, dict):
        raise EncryptionError(f"{host}: the encryption configuration is not a mapping")
    for entry in document.get("resources") or []:
        for provider in (entry or {}).get("providers") or []:
            if not isinstance(provider, dict) or len(provider) != 1:
                raise EncryptionError(f"{host}: a provider entry must name exactly one provider")
            (name, spec), = provider.items()
            if name == "identity":
                return None
            if name not in PROVIDERS:
                raise EncryptionError(f"{host}: provider {name} is not one this collection manages "
                                      f"({', '.join(PROVIDERS)})")
            keys = (spec or {}).get("keys") or []
            if not keys or not keys[0].get("secret"):
                raise EncryptionError(f"{host}: provider {name} has no key")
            check_secret(keys[0]["secret"], host)
            return name, str(keys[0].get("name") or "key1"), keys[0]["secret"]
    return None


def held_key(path):
    """On a control plane: {provider, name, fingerprint} of the key the file at ``path`` encrypts new
    writes with; None when there is no such file or it encrypts nothing. The key stays on the host."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EncryptionError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        import yaml  # the os role installs PyYAML; a fresh host holds no configuration to read
    except ImportError:
        raise EncryptionError(f"{path}: exists, but PyYAML, needed to read it, is missing") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise EncryptionError(f"{path}: is not YAML") from None
    found = active_key(document, path)
    if not found:
        return None
    provider, name, secret = found
    return {"provider": provider, "name": name, "fingerprint": fingerprint(secret)}


def fingerprint_conflict(held):
    """From {host: held_key() result or None}: a message naming the hosts of each key when they
    differ, else ''."""
    distinct = shared_secret.holders({host: (key["provider"], key["name"], key["fingerprint"]) if key else None
                                      for host, key in held.items()})
    if len(distinct) < 2:
        return ""
    parts = [f"{', '.join(hosts)} {'holds' if len(hosts) == 1 else 'hold'} {provider} key {name} ({fp})"
             for (provider, name, fp), hosts in distinct.items()]
    return ("control planes hold different encryption keys: " + "; ".join(parts)
            + ". Secrets written through one API server cannot be read through the other; copy the right "
              "/etc/kubernetes/encryption.yaml to every control plane (or remove it from the ones that "
              "never served writes), then run again")


def plan(held):
    """What the control planes hold, from ``held`` = {host: parsed document or None}.

    Returns {"holders": [hosts with a key], "key": {"provider", "name", "secret"} or None,
    "conflict": message or ""}. Hosts are compared in the order given (the inventory's).
    """
    keys, errors = {}, []
    for host, document in held.items():
        if document is None:
            continue
        try:
            found = active_key(document, host)
        except EncryptionError as exc:
            errors.append(str(exc))
            continue
        if found:
            keys[host] = found
    if errors:
        return {"holders": sorted(keys), "key": None, "conflict": "; ".join(errors)}
    conflict = fingerprint_conflict({host: {"provider": provider, "name": name, "fingerprint": fingerprint(secret)}
                                     for host, (provider, name, secret) in keys.items()})
    if conflict:
        return {"holders": list(keys), "key": None, "conflict": conflict}
    if not keys:
        return {"holders": [], "key": None, "conflict": ""}
    provider, name, secret = next(iter(keys.values()))  # without a conflict, every holder's is the same
    return {"holders": list(keys), "key": {"provider": provider, "name": name, "secret": secret}, "conflict": ""}


def configuration(resources, provider, key):
    """The EncryptionConfiguration body: ``resources`` encrypted with ``provider`` and ``key``
    ({"name", "secret", and "provider" when a control plane holds it}); when it was held under another provider, that one stays as a second,
    read-only provider so that what it encrypted can still be read; identity last, so that data
    written before encryption was turned on stays readable."""
    if provider not in PROVIDERS:
        raise EncryptionError(f"control_plane_encryption_provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    check_secret(key["secret"], "the encryption key")
    providers = [{provider: {"keys": [{"name": key["name"], "secret": key["secret"]}]}}]
    if key.get("provider") and key["provider"] != provider:
        providers.append({key["provider"]: {"keys": [{"name": key["name"], "secret": key["secret"]}]}})
    providers.append(dict(IDENTITY))
    return {"resources": [{"resources": list(resources), "providers": providers}]}
