# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Kubeconfig files: build, compare by meaning, render deterministically.

An existing file is parsed (PyYAML) and compared with what was asked after normalisation (base64
data compared as bytes, key order and formatting ignored), so a file written by another tool in
another layout is only rewritten when what it says differs. The output comes from the project's
own YAML emitter, so its bytes do not depend on the PyYAML version.
"""

from __future__ import annotations

import base64
import binascii
import copy
import traceback

from ansible_collections.kubeforge.cluster.plugins.module_utils import files, pki
from ansible_collections.kubeforge.cluster.plugins.module_utils.yaml_emit import dump

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

_DATA_FIELDS = ('certificate-authority-data', 'client-certificate-data', 'client-key-data')


class KubeconfigError(Exception):
    """A kubeconfig that cannot be written, with the file at fault."""


class MissingInputError(KubeconfigError):
    """A certificate or key to embed does not exist (yet)."""


def _b64(data):
    return base64.b64encode(data).decode('ascii')


def build(cluster_name, server, ca_pem, user_name, context_name, client_cert_pem=None, client_key_pem=None,
          client_cert_path=None, client_key_path=None):
    """The kubeconfig document. Client credentials are embedded when their PEM is given, else referenced."""
    user = {}
    if client_cert_pem is not None:
        user['client-certificate-data'] = _b64(client_cert_pem)
        user['client-key-data'] = _b64(client_key_pem)
    else:
        user['client-certificate'] = client_cert_path
        user['client-key'] = client_key_path
    return {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': cluster_name, 'cluster': {
            'certificate-authority-data': _b64(ca_pem),
            'server': server,
        }}],
        'users': [{'name': user_name, 'user': user}],
        'contexts': [{'name': context_name, 'context': {'cluster': cluster_name, 'user': user_name}}],
        'current-context': context_name,
        'preferences': {},
    }


def _normalize_entry(entry):
    if not isinstance(entry, dict):
        return entry
    out = {}
    for key, value in entry.items():
        if key in _DATA_FIELDS and isinstance(value, str):
            try:
                value = base64.b64decode(''.join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                pass
        if isinstance(value, dict):
            value = _normalize_entry(value)
        elif isinstance(value, list):
            value = [_normalize_entry(v) for v in value]
        out[key] = value
    return out


def normalize(doc):
    """A form of ``doc`` in which two kubeconfigs that mean the same compare equal."""
    if not isinstance(doc, dict):
        return doc
    doc = _normalize_entry(copy.deepcopy(doc))
    for key in ('clusters', 'users', 'contexts', 'extensions'):
        if doc.get(key) is None:
            doc[key] = []
        doc[key] = sorted(doc[key], key=lambda item: str(item.get('name')) if isinstance(item, dict) else str(item))
    if not doc.get('preferences'):
        doc.pop('preferences', None)
    if not doc['extensions']:
        doc.pop('extensions')
    return doc


def render(doc):
    return dump(doc, sort_keys=True)


def _cert_summary(pem, where):
    if pem is None:
        return None
    try:
        cert = pki.load_certificate(pem, where)
    except pki.PKIError as exc:
        return {'error': str(exc)}
    info = pki.describe(cert)
    return {k: info[k] for k in ('subject', 'not_after', 'fingerprint')}


def summary(doc, read=files.read_file):
    """What the diff shows: server, cluster, user, context and the client certificate. Never the key."""
    if not isinstance(doc, dict):
        return {}
    context_name = doc.get('current-context')
    context = _named(doc.get('contexts'), context_name, 'context')
    cluster_name = context.get('cluster')
    user_name = context.get('user')
    cluster = _named(doc.get('clusters'), cluster_name, 'cluster')
    user = _named(doc.get('users'), user_name, 'user')
    cert_pem = None
    if isinstance(user.get('client-certificate-data'), str):
        try:
            cert_pem = base64.b64decode(''.join(user['client-certificate-data'].split()))
        except (binascii.Error, ValueError):
            cert_pem = b''
        where = 'embedded client certificate'
    elif isinstance(user.get('client-certificate'), str):
        where = user['client-certificate']
        try:
            cert_pem = read(where)
        except files.FileError:
            cert_pem = None
    out = {
        'server': cluster.get('server'),
        'cluster': cluster_name,
        'user': user_name,
        'context': context_name,
    }
    if cert_pem is not None:
        out['client_certificate'] = _cert_summary(cert_pem, where)
        if 'client-certificate' in user:
            out['client_certificate_path'] = user['client-certificate']
    return out


def _named(items, name, field):
    for item in items or []:
        if isinstance(item, dict) and item.get('name') == name and isinstance(item.get(field), dict):
            return item[field]
    return {}


def _read_required(path, what):
    data = files.read_file(path)
    if data is None:
        raise MissingInputError('%s %s does not exist' % (what, path))
    return data


def plan_kubeconfig(dest, cluster_name, server, ca_cert_path, user_name, client_cert_path, client_key_path,
                    context_name=None, embed_client=True, check_mode=False):
    """Decide whether ``dest`` must be (re)written. Returns a files.Plan; never writes.

    In check mode, a CA certificate or client credential that does not exist yet (an earlier task
    would have created it) makes the plan "would change" instead of an error.
    """
    if not (server.startswith('https://') or server.startswith('http://')):
        raise KubeconfigError('server %r is not a URL; expected e.g. https://192.0.2.10:6443' % server)
    context_name = context_name or '%s@%s' % (user_name, cluster_name)
    try:
        return _plan(dest, cluster_name, server, ca_cert_path, user_name, client_cert_path, client_key_path,
                     context_name, embed_client)
    except MissingInputError as exc:
        if not check_mode:
            raise
        plan = files.Plan()
        plan.reasons.append('%s (yet); the kubeconfig would be written once it does' % exc)
        existing = files.read_file(dest)
        try:
            plan.before = summary(yaml.safe_load(existing)) if existing is not None else {}
        except yaml.YAMLError:
            plan.before = {}
        plan.after = {'server': server, 'cluster': cluster_name, 'user': user_name, 'context': context_name}
        plan.result = {'context': context_name, 'server': server, '_would_change': True}
        return plan


def _plan(dest, cluster_name, server, ca_cert_path, user_name, client_cert_path, client_key_path, context_name,
          embed_client):
    ca_pem = _read_required(ca_cert_path, 'CA certificate')
    try:
        pki.load_certificate(ca_pem, 'CA certificate %s' % ca_cert_path)
    except pki.PKIError as exc:
        raise KubeconfigError(str(exc))
    cert_pem = key_pem = None
    if embed_client:
        cert_pem = _read_required(client_cert_path, 'client certificate')
        key_pem = _read_required(client_key_path, 'client key')
        try:
            cert = pki.load_certificate(cert_pem, 'client certificate %s' % client_cert_path)
            key = pki.load_private_key(key_pem, 'client key %s' % client_key_path)
        except pki.PKIError as exc:
            raise KubeconfigError(str(exc))
        if not pki.same_public_key(cert.public_key(), key):
            raise KubeconfigError('client key %s does not belong to client certificate %s'
                                  % (client_key_path, client_cert_path))
    wanted = build(cluster_name, server, ca_pem, user_name, context_name, cert_pem, key_pem,
                   client_cert_path, client_key_path)
    plan = files.Plan()
    plan.after = summary(wanted)
    existing_raw = files.read_file(dest)
    existing = None
    if existing_raw is None:
        plan.reasons.append('no kubeconfig at %s' % dest)
    else:
        try:
            existing = yaml.safe_load(existing_raw)
        except yaml.YAMLError as exc:
            plan.reasons.append('%s is not valid YAML (%s)' % (dest, str(exc).splitlines()[0]))
        else:
            plan.before = summary(existing)
            if not isinstance(existing, dict):
                plan.reasons.append('%s is not a kubeconfig mapping' % dest)
            elif normalize(existing) != normalize(wanted):
                plan.reasons.append(_difference(existing, wanted))
    if plan.reasons:
        plan.files[dest] = render(wanted).encode('utf-8')
        plan.secret.add(dest)
    if plan.before is None:
        plan.before = {}
    plan.result = {'context': context_name, 'server': server}
    return plan


def _difference(existing, wanted):
    before = summary(existing)
    after = summary(wanted)
    changed = ['%s differs: %r -> %r' % (key, before.get(key), after.get(key))
               for key in ('server', 'cluster', 'user', 'context') if before.get(key) != after.get(key)]
    if changed:
        return '; '.join(changed)
    old = normalize(existing)
    new = normalize(wanted)
    if old.get('clusters') != new.get('clusters'):
        return 'cluster entries differ (CA data or other fields)'
    if old.get('users') != new.get('users'):
        return 'user credentials differ'
    return 'other fields differ'
