# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A small Kubernetes API client on the standard library: kubeconfig, TLS, retries, discovery.

It runs on the control plane hosts, where neither kubectl nor a Kubernetes Python package can be
assumed, so it speaks HTTPS through ``http.client`` and ``ssl`` only. PyYAML reads the kubeconfig
(the os role installs it on every node).

Client credentials embedded in a kubeconfig must reach ``SSLContext.load_cert_chain``, which only
reads files: they are written to a private temporary directory (0700, files 0600) and removed as
soon as the context holds them. Nothing here logs or returns key material.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import tempfile
import time
import traceback
import urllib.parse

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

# Statuses worth retrying: the API server is overloaded, restarting, or behind a proxy that is.
RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
# A 500 is also how the API server answers some requests it will never accept (a server-side apply
# with a field the schema lacks), so it is retried only a few times, not until the timeout.
RETRY_500_ATTEMPTS = 3


class KubeConfigError(Exception):
    """A kubeconfig that cannot be used, with the file and the entry at fault."""


class ApiError(Exception):
    """The API server answered with an error status (after retries, where retrying made sense)."""

    def __init__(self, status, reason, message, body=None):
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        super().__init__('%s %s: %s' % (status, reason, message) if message else '%s %s' % (status, reason))


class ConnectionFailed(Exception):
    """The API server could not be reached within the time allowed."""


class Settings(object):
    """Where the API server is and how to authenticate: what a kubeconfig context says."""

    def __init__(self, server, ca_pem=None, ca_file=None, cert_pem=None, key_pem=None, cert_file=None,
                 key_file=None, token=None, tls_server_name=None):
        self.server = server
        self.ca_pem = ca_pem
        self.ca_file = ca_file
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.cert_file = cert_file
        self.key_file = key_file
        self.token = token
        self.tls_server_name = tls_server_name


def _named(entries, name, field, path):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get('name') == name:
            value = entry.get(field)
            if not isinstance(value, dict):
                raise KubeConfigError('kubeconfig %s: %s %r has no %s mapping' % (path, field, name, field))
            return value
    raise KubeConfigError('kubeconfig %s: no %s named %r' % (path, field, name))


def _decode(value, what, path):
    try:
        return base64.b64decode(''.join(str(value).split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeConfigError('kubeconfig %s: %s is not valid base64' % (path, what))


def _resolve(base_dir, file_path):
    # kubectl resolves relative paths in a kubeconfig against the file's directory.
    return file_path if os.path.isabs(file_path) else os.path.join(base_dir, file_path)


def load_kubeconfig(path, context=None, server=None):
    """The Settings of ``context`` (default: current-context) in the kubeconfig at ``path``.

    ``server`` replaces the context's cluster URL (for example to reach this host's own API
    server when the kubeconfig names a load balancer).
    """
    if not HAS_YAML:
        raise KubeConfigError('reading a kubeconfig needs PyYAML (python3-yaml) on the target')
    try:
        with open(path, 'rb') as handle:
            doc = yaml.safe_load(handle)
    except FileNotFoundError:
        raise KubeConfigError('kubeconfig %s does not exist' % path)
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError('kubeconfig %s cannot be read: %s' % (path, str(exc).splitlines()[0]))
    if not isinstance(doc, dict):
        raise KubeConfigError('kubeconfig %s is not a mapping' % path)
    context_name = context or doc.get('current-context')
    if not context_name:
        raise KubeConfigError('kubeconfig %s has no current-context; choose one with the context option' % path)
    ctx = _named(doc.get('contexts'), context_name, 'context', path)
    cluster = _named(doc.get('clusters'), ctx.get('cluster'), 'cluster', path)
    user = _named(doc.get('users'), ctx.get('user'), 'user', path) if ctx.get('user') else {}
    base_dir = os.path.dirname(os.path.abspath(path))

    url = server or cluster.get('server')
    if not url:
        raise KubeConfigError('kubeconfig %s: cluster %r has no server' % (path, ctx.get('cluster')))
    if cluster.get('insecure-skip-tls-verify'):
        raise KubeConfigError('kubeconfig %s: cluster %r sets insecure-skip-tls-verify, which this module does not '
                              'support; give certificate-authority-data instead' % (path, ctx.get('cluster')))
    settings = Settings(url, tls_server_name=cluster.get('tls-server-name'))
    if cluster.get('certificate-authority-data'):
        settings.ca_pem = _decode(cluster['certificate-authority-data'], 'certificate-authority-data', path)
    elif cluster.get('certificate-authority'):
        settings.ca_file = _resolve(base_dir, cluster['certificate-authority'])

    if user.get('client-certificate-data'):
        settings.cert_pem = _decode(user['client-certificate-data'], 'client-certificate-data', path)
    elif user.get('client-certificate'):
        settings.cert_file = _resolve(base_dir, user['client-certificate'])
    if user.get('client-key-data'):
        settings.key_pem = _decode(user['client-key-data'], 'client-key-data', path)
    elif user.get('client-key'):
        settings.key_file = _resolve(base_dir, user['client-key'])
    has_cert = settings.cert_pem is not None or settings.cert_file is not None
    has_key = settings.key_pem is not None or settings.key_file is not None
    if has_cert != has_key:
        raise KubeConfigError('kubeconfig %s: user %r has a client certificate or a client key but not both'
                              % (path, ctx.get('user')))
    if user.get('token'):
        settings.token = str(user['token'])
    elif user.get('tokenFile'):
        try:
            with open(_resolve(base_dir, user['tokenFile'])) as handle:
                settings.token = handle.read().strip()
        except OSError as exc:
            raise KubeConfigError('kubeconfig %s: cannot read tokenFile: %s' % (path, exc))
    if not has_cert and not settings.token:
        raise KubeConfigError('kubeconfig %s: user %r has neither a client certificate nor a token'
                              % (path, ctx.get('user')))
    return settings


def ssl_context(settings):
    """An SSLContext that verifies the server with the kubeconfig's CA and presents its client certificate."""
    try:
        if settings.ca_pem is not None:
            context = ssl.create_default_context(cadata=settings.ca_pem.decode('ascii', errors='replace'))
        elif settings.ca_file is not None:
            context = ssl.create_default_context(cafile=settings.ca_file)
        else:
            context = ssl.create_default_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KubeConfigError('the certificate authority of the kubeconfig cannot be loaded: %s' % exc)
    if settings.cert_pem is None and settings.cert_file is None:
        return context
    if settings.cert_pem is None and settings.key_pem is None:
        _load_chain(context, settings.cert_file, settings.key_file)
        return context
    workdir = tempfile.mkdtemp(prefix='kubeforge-client-')  # mode 0700
    try:
        cert_file = settings.cert_file
        key_file = settings.key_file
        if settings.cert_pem is not None:
            cert_file = _private_file(workdir, 'client.crt', settings.cert_pem)
        if settings.key_pem is not None:
            key_file = _private_file(workdir, 'client.key', settings.key_pem)
        _load_chain(context, cert_file, key_file)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return context


def _private_file(directory, name, data):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(data)
    return path


def _load_chain(context, cert_file, key_file):
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        # The message names neither file content nor key; only that the pair could not be used.
        raise KubeConfigError('the client certificate and key of the kubeconfig cannot be used: %s'
                              % (getattr(exc, 'reason', None) or getattr(exc, 'strerror', None)
                                 or exc.__class__.__name__))


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection that verifies the certificate against another name (kubeconfig tls-server-name)."""

    def __init__(self, host, port, server_hostname, **kwargs):
        super().__init__(host, port, **kwargs)
        self._server_hostname = server_hostname

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


def _retryable(exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        # A server going away mid-handshake shows up as EOF; any other TLS error is configuration.
        return isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    return isinstance(exc, (OSError, http.client.HTTPException))


class Client(object):
    """Requests to one API server, retried with bounded backoff while it is unreachable or busy.

    ``timeout`` bounds the whole of one request including its retries. ``sleep`` and ``clock``
    are replaceable for tests.
    """

    def __init__(self, settings, timeout=120, user_agent='kubeforge', sleep=time.sleep, clock=time.monotonic):
        url = urllib.parse.urlsplit(settings.server)
        if url.scheme not in ('https', 'http') or not url.hostname:
            raise KubeConfigError('server %r is not an http(s) URL' % settings.server)
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == 'https' else 80)
        self.prefix = url.path.rstrip('/')
        self.settings = settings
        self.timeout = timeout
        self.user_agent = user_agent
        self.sleep = sleep
        self.clock = clock
        self.warnings = []
        self._context = ssl_context(settings) if self.scheme == 'https' else None
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, socket_timeout):
        if self._conn is None:
            if self.scheme == 'https':
                name = self.settings.tls_server_name or self.host
                self._conn = _HTTPSConnection(self.host, self.port, name, context=self._context,
                                              timeout=socket_timeout)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=socket_timeout)
        else:
            self._conn.timeout = socket_timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(socket_timeout)
        return self._conn

    def _once(self, method, target, body, headers, socket_timeout):
        conn = self._connection(socket_timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        if response.getheader('Connection', '').lower() == 'close':
            self.close()
        return response, data

    def request(self, method, path, query=None, body=None, content_type='application/json', no_retry=()):
        """Send one request; return the decoded JSON body of a 2xx answer, or raise ApiError.

        A 404 is raised like any other status: callers decide what "not found" means. Statuses in
        ``no_retry`` are raised at once (an eviction a disruption budget refuses answers 429, which
        the caller waits out on its own terms).
        """
        target = self.prefix + path
        if query:
            target += '?' + urllib.parse.urlencode(query)
        headers = {'Accept': 'application/json', 'User-Agent': self.user_agent}
        if self.settings.token:
            headers['Authorization'] = 'Bearer %s' % self.settings.token
        payload = None
        if body is not None:
            payload = json.dumps(body, sort_keys=True).encode('utf-8')
            headers['Content-Type'] = content_type
        deadline = self.clock() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self.clock()
            try:
                response, data = self._once(method, target, payload, headers, max(1.0, min(30.0, remaining)))
            except (OSError, http.client.HTTPException) as exc:
                if not _retryable(exc):
                    raise ConnectionFailed('%s %s: %s' % (method, self._where(), _describe(exc)))
                delay = _backoff(attempt)
                if self.clock() + delay > deadline:
                    raise ConnectionFailed('%s %s: %s; gave up after %d attempts in %d s'
                                           % (method, self._where(), _describe(exc), attempt, self.timeout))
                self.sleep(delay)
                continue
            self._collect_warnings(response)
            status = response.status
            if 200 <= status < 300:
                return _json(data)
            if status in RETRY_STATUSES and status not in no_retry and (status != 500 or attempt < RETRY_500_ATTEMPTS):
                delay = _backoff(attempt, response.getheader('Retry-After'))
                if self.clock() + delay <= deadline:
                    self.sleep(delay)
                    continue
            raise ApiError(status, response.reason or http.client.responses.get(status, ''), _status_message(data),
                           _json(data, strict=False))

    def _where(self):
        return '%s://%s:%s%s' % (self.scheme, self.host, self.port, self.prefix)

    def _collect_warnings(self, response):
        for value in response.headers.get_all('Warning') or []:
            # Format: 299 - "text"
            text = value.split(' ', 2)[-1].strip() if value[:4] == '299 ' else value
            text = text.strip('"')
            if text not in self.warnings:
                self.warnings.append(text)


def _describe(exc):
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, socket.timeout):
        return 'timed out'
    return text


def _backoff(attempt, retry_after=None):
    if retry_after:
        try:
            return min(10.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    base = min(5.0, 0.25 * (2 ** (attempt - 1)))
    return base * (0.8 + 0.4 * random.random())


def _json(data, strict=True):
    if not data:
        return {}
    try:
        return json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        if strict:
            raise ApiError(0, 'invalid response', 'the API server answered with something that is not JSON: %r'
                           % data[:200])
        return None


def _status_message(data):
    doc = _json(data, strict=False)
    if isinstance(doc, dict) and doc.get('message'):
        return str(doc['message'])
    text = data.decode('utf-8', errors='replace').strip()
    return text[:500]


class Resource(object):
    """One kind as the API server serves it."""

    def __init__(self, api_version, kind, plural, namespaced, verbs):
        self.api_version = api_version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced
        self.verbs = verbs

    def base(self):
        if '/' in self.api_version:
            return '/apis/%s' % self.api_version
        return '/api/%s' % self.api_version

    def path(self, name=None, namespace=None):
        parts = [self.base()]
        if self.namespaced and namespace:
            parts.append('namespaces/%s' % urllib.parse.quote(namespace, safe=''))
        parts.append(self.plural)
        if name is not None:
            parts.append(urllib.parse.quote(name, safe=''))
        return '/'.join(parts)


class Discovery(object):
    """Which kinds the API server serves, fetched per group/version and cached for the run.

    The cache holds, per apiVersion, a dict kind -> Resource, or None for an apiVersion the
    server answered 404 for.
    """

    def __init__(self, client):
        self.client = client
        self._cache = {}

    def _fetch(self, api_version):
        path = '/apis/%s' % api_version if '/' in api_version else '/api/%s' % api_version
        try:
            doc = self.client.request('GET', path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        kinds = {}
        for item in doc.get('resources') or []:
            if not isinstance(item, dict) or '/' in item.get('name', ''):
                continue  # subresources (status, scale, ...)
            kinds[item.get('kind')] = Resource(api_version, item.get('kind'), item.get('name'),
                                               bool(item.get('namespaced')), item.get('verbs') or [])
        return kinds

    def find(self, api_version, kind, refresh=False):
        """The Resource for apiVersion/kind, or None when the server does not serve it.

        A kind missing from the cached list is looked up again once, since a
        CustomResourceDefinition applied earlier in the run may have added it.
        """
        cached = self._cache.get(api_version)
        if cached is None or refresh or kind not in cached:
            cached = self._cache[api_version] = self._fetch(api_version)
        return cached.get(kind) if cached is not None else None

    def served_kinds(self, api_version):
        """The kinds of ``api_version`` as last fetched; None when the server does not serve it."""
        cached = self._cache.get(api_version)
        return None if cached is None else sorted(cached)
