# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A stand-in Kubernetes API server for unit tests: a real HTTPS server in the test process.

It speaks the part of the Kubernetes API that the manifest module uses, over TLS with client
certificate authentication (``make_pki`` builds the CA and the certificates with ``cryptography``):

- discovery (``/api/v1``, ``/apis/GROUP/VERSION``), including the kinds of CustomResourceDefinitions
  once they are Established (after ``crd_delay`` seconds);
- GET of one object, and lists with ``labelSelector`` (equality and existence), ``limit`` and
  ``continue``, in one namespace or in all;
- server-side apply (PATCH ``application/apply-patch+yaml``) with ``fieldManager``, ``force``,
  ``dryRun=All`` and ``fieldValidation=Strict``; DELETE with ``dryRun``.

It is not Kubernetes. Server-side apply is modelled by keeping each field manager's applied
configuration and merging them, then adding a few server defaults (a Deployment's replicas and
strategy, a Service's cluster IP, a Secret's ``stringData`` folded into ``data``). The status of
workloads is filled by small "controllers" when an object is read, ready at once unless a test
replaces them (``controllers``). ``faults`` makes chosen requests fail; ``requests`` records every
request so a test can prove that check mode writes nothing.
"""

from __future__ import annotations

import base64
import copy
import datetime
import http.server
import ipaddress
import itertools
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUILTIN_KINDS = [
    # apiVersion, kind, plural, namespaced
    ('v1', 'Namespace', 'namespaces', False),
    ('v1', 'Node', 'nodes', False),
    ('v1', 'ConfigMap', 'configmaps', True),
    ('v1', 'Secret', 'secrets', True),
    ('v1', 'Service', 'services', True),
    ('v1', 'ServiceAccount', 'serviceaccounts', True),
    ('v1', 'Pod', 'pods', True),
    ('apps/v1', 'Deployment', 'deployments', True),
    ('apps/v1', 'DaemonSet', 'daemonsets', True),
    ('apps/v1', 'StatefulSet', 'statefulsets', True),
    ('batch/v1', 'Job', 'jobs', True),
    ('rbac.authorization.k8s.io/v1', 'ClusterRole', 'clusterroles', False),
    ('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'customresourcedefinitions', False),
    ('apiregistration.k8s.io/v1', 'APIService', 'apiservices', False),
]
# Top-level fields a strict decoder accepts for the built-in kinds (a rough union, enough to catch typos).
KNOWN_TOP_LEVEL = {'apiVersion', 'kind', 'metadata', 'spec', 'status', 'data', 'stringData', 'binaryData', 'type',
                   'immutable', 'rules', 'aggregationRule', 'secrets', 'imagePullSecrets',
                   'automountServiceAccountToken'}
WITH_SPEC = {'Node', 'Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'Pod', 'Service', 'CustomResourceDefinition',
             'APIService', 'Namespace'}


# -- certificates -------------------------------------------------------------------------------

def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject, key, issuer, issuer_key, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class Pki(object):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM bytes and files."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name('stand-in-ca')
        self.ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_cert = _cert(_name('kube-apiserver'), server_key, ca_name, ca_key, server=True)
        self.server_key = _pem_key(server_key)
        client_key = ec.generate_private_key(ec.SECP256R1())
        self.client_cert = _cert(_name('kubernetes-admin', 'system:masters'), client_key, ca_name, ca_key, client=True)
        self.client_key = _pem_key(client_key)
        other_ca_key = ec.generate_private_key(ec.SECP256R1())
        self.other_ca = _cert(_name('another-ca'), other_ca_key, _name('another-ca'), other_ca_key, ca=True)
        self.files = {}
        for name in ('ca', 'server_cert', 'server_key', 'client_cert', 'client_key', 'other_ca'):
            path = os.path.join(directory, name.replace('_', '.') + '.pem')
            with open(path, 'wb') as handle:
                handle.write(getattr(self, name))
            os.chmod(path, 0o600)
            self.files[name] = path


def make_pki(directory):
    return Pki(str(directory))


def write_kubeconfig(path, server, pki, embed=True, ca=None):
    """A kubeconfig like kubeadm's admin.conf (embedded data), or with file paths (embed=False)."""
    def b64(data):
        return base64.b64encode(data).decode('ascii')

    cluster = {'server': server}
    user = {}
    if embed:
        cluster['certificate-authority-data'] = b64(ca or pki.ca)
        user['client-certificate-data'] = b64(pki.client_cert)
        user['client-key-data'] = b64(pki.client_key)
    else:
        cluster['certificate-authority'] = pki.files['ca']
        user['client-certificate'] = pki.files['client_cert']
        user['client-key'] = pki.files['client_key']
    doc = {
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'kubernetes-admin@kubernetes',
        'clusters': [{'name': 'kubernetes', 'cluster': cluster}],
        'users': [{'name': 'kubernetes-admin', 'user': user}],
        'contexts': [{'name': 'kubernetes-admin@kubernetes',
                      'context': {'cluster': 'kubernetes', 'user': 'kubernetes-admin'}}],
    }
    with open(str(path), 'w') as handle:
        yaml.safe_dump(doc, handle)
    os.chmod(str(path), 0o600)
    return str(path)


# -- the API ------------------------------------------------------------------------------------

class ApiStatus(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _merge(base, overlay):
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return copy.deepcopy(overlay)
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = _merge(out.get(key), value) if key in out else copy.deepcopy(value)
    return out


def _fields(value):
    if isinstance(value, dict):
        return {'f:%s' % key: _fields(item) for key, item in sorted(value.items())}
    return {}


def _matches(labels, selector):
    for term in [t.strip() for t in (selector or '').split(',') if t.strip()]:
        if '!=' in term:
            key, value = term.split('!=', 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif '=' in term:
            key, value = term.replace('==', '=').split('=', 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith('!'):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _ready_controllers():
    def deployment(obj, server):
        replicas = obj['spec'].get('replicas', 1)
        obj['status'] = {'observedGeneration': obj['metadata'].get('generation', 1), 'replicas': replicas,
                         'updatedReplicas': replicas, 'readyReplicas': replicas, 'availableReplicas': replicas,
                         'conditions': [{'type': 'Available', 'status': 'True'}]}

    def daemonset(obj, server):
        obj['status'] = {'observedGeneration': obj['metadata'].get('generation', 1), 'desiredNumberScheduled': 2,
                         'currentNumberScheduled': 2, 'updatedNumberScheduled': 2, 'numberAvailable': 2,
                         'numberReady': 2}

    def statefulset(obj, server):
        replicas = obj['spec'].get('replicas', 1)
        obj['status'] = {'observedGeneration': obj['metadata'].get('generation', 1), 'replicas': replicas,
                         'readyReplicas': replicas, 'availableReplicas': replicas, 'updatedReplicas': replicas,
                         'currentRevision': 'r1', 'updateRevision': 'r1'}

    def condition(name):
        def set_condition(obj, server):
            obj['status'] = {'conditions': [{'type': name, 'status': 'True'}]}
        return set_condition

    def crd(obj, server):
        established = server.clock() - server.created_at(obj) >= server.crd_delay
        obj['status'] = {'conditions': [{'type': 'NamesAccepted', 'status': 'True'},
                                        {'type': 'Established', 'status': 'True' if established else 'False',
                                         'reason': 'InitialNamesAccepted' if established else 'Installing'}],
                         'acceptedNames': obj['spec'].get('names', {})}

    def pod(obj, server):
        obj['status'] = {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True'}]}

    def namespace(obj, server):
        obj['status'] = {'phase': 'Active'}

    return {'Deployment': deployment, 'DaemonSet': daemonset, 'StatefulSet': statefulset, 'Job': condition('Complete'),
            'APIService': condition('Available'), 'CustomResourceDefinition': crd, 'Pod': pod, 'Namespace': namespace}


class StandInApiServer(object):
    """Start with ``start()``; ``url`` is the https URL; ``stop()`` ends it."""

    def __init__(self, pki, port=0):
        self.pki = pki
        self.port = port
        self.lock = threading.RLock()
        self.objects = {}      # (apiVersion, plural, namespace, name) -> {'obj', 'applied', 'created'}
        self.kinds = {(a, k): (p, n) for a, k, p, n in BUILTIN_KINDS}
        self.requests = []     # (method, path, query dict)
        self.faults = []       # [(method, path prefix, status), ...]: each fails one matching request
        self.controllers = _ready_controllers()
        self.crd_delay = 0.0
        self.clock = time.monotonic
        self.warnings = {}     # path prefix -> Warning header text
        self._serials = itertools.count(1)
        self._ips = itertools.count(10)
        self._httpd = None
        for name in ('default', 'kube-system'):
            self._store('v1', 'namespaces', None, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}},
                        {'stand-in': {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}})

    # -- lifecycle --

    def start(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.files['server_cert'], self.pki.files['server_key'])
        context.load_verify_locations(self.pki.files['ca'])
        context.verify_mode = ssl.CERT_REQUIRED
        handler = type('Handler', (_Handler,), {'api': self})
        httpd = _QuietServer(('127.0.0.1', self.port), handler, bind_and_activate=False)
        httpd.allow_reuse_address = True
        httpd.daemon_threads = True
        httpd.server_bind()
        httpd.server_activate()
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self):
        return 'https://127.0.0.1:%d' % self.port

    # -- helpers for tests --

    def get(self, api_version, kind, name, namespace=None):
        plural = self.kinds[(api_version, kind)][0]
        with self.lock:
            entry = self.objects.get((api_version, plural, namespace, name))
            return copy.deepcopy(entry['obj']) if entry else None

    def writes(self):
        """The requests that would have changed something (PATCH or DELETE without dryRun)."""
        return [r for r in self.requests if r[0] in ('PATCH', 'DELETE', 'POST', 'PUT') and 'dryRun' not in r[2]]

    def created_at(self, obj):
        key = self._key_of(obj)
        return self.objects[key]['created'] if key in self.objects else self.clock()

    def _key_of(self, obj):
        api_version, kind = obj['apiVersion'], obj['kind']
        plural, namespaced = self.kinds[(api_version, kind)]
        return (api_version, plural, obj['metadata'].get('namespace') if namespaced else None, obj['metadata']['name'])

    def _store(self, api_version, plural, namespace, obj, applied):
        obj['metadata'].update({'uid': 'uid-%d' % next(self._serials), 'resourceVersion': str(next(self._serials)),
                                'creationTimestamp': '2025-01-01T00:00:00Z'})
        self.objects[(api_version, plural, namespace, obj['metadata']['name'])] = {
            'obj': obj, 'applied': applied, 'created': self.clock()}

    # -- discovery --

    def _served(self):
        """apiVersion -> {kind: (plural, namespaced)}, with the kinds of Established CRDs."""
        served = {}
        for (api_version, kind), (plural, namespaced) in self.kinds.items():
            served.setdefault(api_version, {})[kind] = (plural, namespaced)
        for (api_version, plural, _ns, _name), entry in self.objects.items():
            if plural != 'customresourcedefinitions':
                continue
            crd = entry['obj']
            if self.clock() - entry['created'] < self.crd_delay:
                continue
            spec = crd['spec']
            for version in spec.get('versions', []):
                if version.get('served', True):
                    served.setdefault('%s/%s' % (spec['group'], version['name']), {})[spec['names']['kind']] = (
                        spec['names']['plural'], spec.get('scope', 'Namespaced') == 'Namespaced')
        return served

    def discovery(self, api_version):
        kinds = self._served().get(api_version)
        if kinds is None:
            raise ApiStatus(404, 'NotFound', 'the server could not find the requested resource')
        resources = []
        for kind, (plural, namespaced) in sorted(kinds.items()):
            verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
            resources.append({'name': plural, 'singularName': kind.lower(), 'namespaced': namespaced, 'kind': kind,
                              'verbs': verbs})
            resources.append({'name': plural + '/status', 'singularName': '', 'namespaced': namespaced, 'kind': kind,
                              'verbs': ['get', 'patch', 'update']})
        return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': api_version, 'resources': resources}

    def _resolve(self, api_version, plural):
        for kind, (p, namespaced) in self._served().get(api_version, {}).items():
            if p == plural:
                return kind, namespaced
        raise ApiStatus(404, 'NotFound', 'the server could not find the requested resource')

    # -- objects --

    def _view(self, entry):
        obj = entry['obj']
        controller = self.controllers.get(obj['kind'])
        if controller is not None:
            controller(obj, self)
        return copy.deepcopy(obj)

    def read(self, api_version, plural, namespace, name):
        kind, namespaced = self._resolve(api_version, plural)
        entry = self.objects.get((api_version, plural, namespace if namespaced else None, name))
        if entry is None:
            raise ApiStatus(404, 'NotFound', '%s "%s" not found' % (plural, name))
        return self._view(entry)

    def list(self, api_version, plural, namespace, query):
        kind, namespaced = self._resolve(api_version, plural)
        selector = query.get('labelSelector', '')
        items = []
        for (a, p, ns, _name), entry in sorted(self.objects.items(), key=lambda i: (i[0][2] or '', i[0][3])):
            if (a, p) != (api_version, plural) or (namespace and ns != namespace):
                continue
            if _matches(entry['obj']['metadata'].get('labels') or {}, selector):
                item = self._view(entry)
                item.pop('apiVersion', None)  # as in real lists: items carry no apiVersion/kind
                item.pop('kind', None)
                items.append(item)
        start = int(query.get('continue') or 0)
        limit = int(query.get('limit') or 0) or len(items) or 1
        page = items[start:start + limit]
        metadata = {'resourceVersion': str(next(self._serials))}
        if start + limit < len(items):
            metadata['continue'] = str(start + limit)
        return {'apiVersion': api_version, 'kind': kind + 'List', 'metadata': metadata, 'items': page}

    def apply(self, api_version, plural, namespace, name, query, content_type, body):
        kind, namespaced = self._resolve(api_version, plural)
        if content_type != 'application/apply-patch+yaml':
            raise ApiStatus(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format')
        manager = query.get('fieldManager')
        if not manager:
            raise ApiStatus(400, 'BadRequest', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                               'is required for apply patch')
        try:
            patch = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise ApiStatus(400, 'BadRequest', 'error decoding YAML: %s' % exc)
        if patch.get('apiVersion') != api_version or patch.get('kind') != kind:
            raise ApiStatus(400, 'BadRequest', 'apiVersion/kind of the body (%s/%s) does not match the URL'
                                               % (patch.get('apiVersion'), patch.get('kind')))
        metadata = patch.get('metadata') or {}
        if metadata.get('name') != name:
            raise ApiStatus(400, 'BadRequest', 'the name of the object (%s) does not match the name on the URL (%s)'
                                               % (metadata.get('name'), name))
        if namespaced and metadata.get('namespace') not in (None, namespace):
            raise ApiStatus(400, 'BadRequest', 'the namespace of the object does not match the namespace on the URL')
        if query.get('fieldValidation', 'Warn') == 'Strict' and (api_version, kind) in self.kinds:
            unknown = sorted(set(patch) - KNOWN_TOP_LEVEL)
            if unknown:
                raise ApiStatus(400, 'BadRequest', '.%s: field not declared in schema' % unknown[0])
        if namespaced:
            if ('v1', 'namespaces', None, namespace) not in self.objects:
                raise ApiStatus(404, 'NotFound', 'namespaces "%s" not found' % namespace)
        else:
            namespace = None
        _validate(kind, name, patch)
        key = (api_version, plural, namespace, name)
        entry = self.objects.get(key)
        applied = dict(entry['applied']) if entry else {}
        applied[manager] = patch
        obj = {}
        for config in applied.values():
            obj = _merge(obj, config)
        obj['metadata'].pop('managedFields', None)
        if namespace:
            obj['metadata']['namespace'] = namespace
        _defaults(kind, obj, entry['obj'] if entry else None, self._ips)
        old = entry['obj'] if entry else None
        if old is not None:
            for field in ('uid', 'resourceVersion', 'creationTimestamp', 'generation'):
                if field in old['metadata']:
                    obj['metadata'][field] = old['metadata'][field]
            if 'status' in old:
                obj['status'] = copy.deepcopy(old['status'])
        if kind in WITH_SPEC:
            content = {k: v for k, v in obj.items() if k not in ('metadata', 'status')}
            old_content = {k: v for k, v in (old or {}).items() if k not in ('metadata', 'status')}
            generation = (old or {}).get('metadata', {}).get('generation', 0)
            obj['metadata']['generation'] = generation + 1 if content != old_content or old is None else generation
        managed = []
        changed = old is None or _strip(obj) != _strip(old)
        old_managed = {m['manager']: m for m in (old or {}).get('metadata', {}).get('managedFields', [])}
        for who, config in applied.items():
            fields = _fields({k: v for k, v in config.items() if k not in ('apiVersion', 'kind')})
            previous = old_managed.get(who)
            stamp = '2025-01-01T00:00:00Z'
            if previous is not None and previous['fieldsV1'] == fields and not changed:
                stamp = previous['time']
            elif previous is not None or old is not None:
                stamp = '2025-06-01T00:00:%02dZ' % (next(self._serials) % 60)
            managed.append({'manager': who, 'operation': 'Apply', 'apiVersion': api_version, 'time': stamp,
                            'fieldsType': 'FieldsV1', 'fieldsV1': fields})
        obj['metadata']['managedFields'] = managed
        if managed != (old or {}).get('metadata', {}).get('managedFields'):
            changed = True
        if query.get('dryRun') == 'All':
            if old is None:
                obj['metadata'].update({'uid': 'dry-run-uid', 'creationTimestamp': '2025-01-01T00:00:00Z'})
            return (201 if old is None else 200), obj
        if old is None:
            obj['metadata'].pop('resourceVersion', None)
            self._store(api_version, plural, namespace, obj, applied)
            return 201, self._view(self.objects[key])
        if changed:
            obj['metadata']['resourceVersion'] = str(next(self._serials))
        entry['obj'] = obj
        entry['applied'] = applied
        return 200, self._view(entry)

    def delete(self, api_version, plural, namespace, name, query):
        kind, namespaced = self._resolve(api_version, plural)
        key = (api_version, plural, namespace if namespaced else None, name)
        entry = self.objects.get(key)
        if entry is None:
            raise ApiStatus(404, 'NotFound', '%s "%s" not found' % (plural, name))
        obj = self._view(entry)
        if query.get('dryRun') != 'All':
            del self.objects[key]
            if kind == 'Namespace':
                for other in [k for k in self.objects if k[2] == name]:
                    del self.objects[other]
        return 200, obj


def _strip(obj):
    out = copy.deepcopy(obj)
    out.pop('status', None)
    for field in ('managedFields', 'resourceVersion'):
        out['metadata'].pop(field, None)
    return out


def _validate(kind, name, patch):
    if kind == 'Deployment':
        replicas = (patch.get('spec') or {}).get('replicas', 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiStatus(422, 'Invalid', 'Deployment.apps "%s" is invalid: spec.replicas: Invalid value: %s: must be '
                                            'greater than or equal to 0' % (name, json.dumps(replicas)))


def _defaults(kind, obj, old, ips):
    spec = obj.setdefault('spec', {}) if kind in ('Deployment', 'Service') else obj.get('spec')
    if kind == 'Deployment':
        spec.setdefault('replicas', 1)
        spec.setdefault('revisionHistoryLimit', 10)
        spec.setdefault('progressDeadlineSeconds', 600)
        spec.setdefault('strategy', {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}})
    elif kind == 'Service':
        spec.setdefault('type', 'ClusterIP')
        spec.setdefault('sessionAffinity', 'None')
        if 'clusterIP' not in spec:
            spec['clusterIP'] = (old or {}).get('spec', {}).get('clusterIP') or '10.233.0.%d' % next(ips)
    elif kind == 'Secret':
        data = obj.setdefault('data', {})
        for key, value in (obj.pop('stringData', None) or {}).items():
            data[key] = base64.b64encode(value.encode('utf-8')).decode('ascii')
        obj.setdefault('type', 'Opaque')
    elif kind == 'Namespace':
        obj.setdefault('spec', {'finalizers': ['kubernetes']})


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # failed TLS handshakes are expected in some tests


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'stand-in-kube-apiserver/1'
    api = None  # set per server

    def log_message(self, *args):
        pass

    def setup(self):
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError):
            pass

    def _send(self, status, doc, reason=None):
        body = json.dumps(doc).encode('utf-8')
        self.send_response(status, reason)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        for prefix, text in self.api.warnings.items():
            if self.path.startswith(prefix):
                self.send_header('Warning', '299 - "%s"' % text)
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, code, reason, message):
        self._send(code, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                          'message': message, 'reason': reason, 'code': code})

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        api = self.api
        with api.lock:
            api.requests.append((method, url.path, query))
            for fault in list(api.faults):
                if fault[0] == method and url.path.startswith(fault[1]):
                    api.faults.remove(fault)
                    self._fail(fault[2], 'Fault', 'injected failure %d' % fault[2])
                    return
            try:
                status, doc = self._route(method, url.path, query, body)
            except ApiStatus as exc:
                self._fail(exc.code, exc.reason, exc.message)
                return
        self._send(status, doc)

    def _route(self, method, path, query, body):
        api = self.api
        parts = [p for p in path.split('/') if p]
        if parts[:1] == ['api'] and len(parts) >= 2:
            api_version, rest = parts[1], parts[2:]
        elif parts[:1] == ['apis'] and len(parts) >= 3:
            api_version, rest = '%s/%s' % (parts[1], parts[2]), parts[3:]
        else:
            raise ApiStatus(404, 'NotFound', 'the server could not find the requested resource')
        rest = [urllib.parse.unquote(p) for p in rest]
        if not rest:
            if method != 'GET':
                raise ApiStatus(405, 'MethodNotAllowed', 'method not allowed')
            return 200, api.discovery(api_version)
        namespace = None
        if rest[0] == 'namespaces' and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 2:
            raise ApiStatus(404, 'NotFound', 'the server could not find the requested resource')
        plural = rest[0]
        name = rest[1] if len(rest) == 2 else None
        if name is None:
            if method != 'GET':
                raise ApiStatus(405, 'MethodNotAllowed', 'method not allowed')
            return 200, api.list(api_version, plural, namespace, query)
        if method == 'GET':
            return 200, api.read(api_version, plural, namespace, name)
        if method == 'PATCH':
            return api.apply(api_version, plural, namespace, name, query, self.headers.get('Content-Type'), body)
        if method == 'DELETE':
            return api.delete(api_version, plural, namespace, name, query)
        raise ApiStatus(405, 'MethodNotAllowed', 'method not allowed')

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._dispatch('GET')

    def do_PATCH(self):  # noqa: N802
        self._dispatch('PATCH')

    def do_DELETE(self):  # noqa: N802
        self._dispatch('DELETE')


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
