# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Keys and X.509 certificates for a Kubernetes cluster, the way kubeadm lays them out.

Shared by the certificate, private_key, certificate_batch, keypair and kubeconfig modules.
Works with Python 3.9+ and ``cryptography`` 36.0 or newer (only APIs present in 36.0 are used,
with fallbacks where newer releases renamed things).

The comparison logic (``compare``) decides whether an existing certificate still matches a
request; it is the same for one certificate on a host and for a batch of requests on the CA host.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import math
import os
import traceback

from ansible_collections.kubeforge.cluster.plugins.module_utils import files
from ansible_collections.kubeforge.cluster.plugins.module_utils.files import FileError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

KEY_TYPES = ('ecdsa-p256', 'rsa-2048', 'rsa-3072', 'rsa-4096')
USAGES = ('ca', 'server', 'client', 'server+client')
DEFAULT_LEAF_DAYS = 365
DEFAULT_CA_DAYS = 3650
DEFAULT_RENEW_BEFORE_DAYS = 30
# Certificates start a little in the past so that hosts whose clocks lag slightly accept them.
BACKDATE = datetime.timedelta(minutes=5)


class PKIError(FileError):
    """A key, certificate or request that cannot be used, with the reason and the file."""


class MissingFileError(PKIError):
    """A file that must exist does not (yet). In check mode it may be created by an earlier task."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso8601(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


# --------------------------------------------------------------------------- keys

def generate_private_key(key_type):
    if key_type == 'ecdsa-p256':
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ('rsa-2048', 'rsa-3072', 'rsa-4096'):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise PKIError('unknown key_type %r (expected one of %s)' % (key_type, ', '.join(KEY_TYPES)))


def key_type_of(key):
    """'ecdsa-p256', 'rsa-2048', ... for a private or public key; other kinds are described."""
    public = key.public_key() if hasattr(key, 'public_key') else key
    if isinstance(public, rsa.RSAPublicKey):
        return 'rsa-%d' % public.key_size
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name == 'secp256r1':
            return 'ecdsa-p256'
        return 'ecdsa-%s' % public.curve.name
    return type(public).__name__


def private_key_pem(key):
    """PEM in the traditional OpenSSL form ("RSA PRIVATE KEY" / "EC PRIVATE KEY"), as kubeadm writes."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    )


def public_key_pem(key):
    public = key.public_key() if hasattr(key, 'public_key') else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_der(key):
    public = key.public_key() if hasattr(key, 'public_key') else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_fingerprint(key):
    """sha256 of the DER SubjectPublicKeyInfo, lowercase hex."""
    return hashlib.sha256(public_key_der(key)).hexdigest()


def same_public_key(a, b):
    return public_key_der(a) == public_key_der(b)


def _as_bytes(data):
    if isinstance(data, str):
        return data.encode('utf-8')
    return data


def load_private_key(data, source='private key'):
    try:
        key = serialization.load_pem_private_key(_as_bytes(data), password=None)
    except (ValueError, TypeError) as exc:
        raise PKIError('%s is not a valid unencrypted PEM private key (%s)' % (source, _first_line(exc)))
    except Exception as exc:  # pylint: disable=broad-except
        # cryptography raises UnsupportedAlgorithm and backend errors for some malformed input.
        raise PKIError('%s is not a usable private key (%s)' % (source, _first_line(exc)))
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PKIError('%s holds a %s key; only RSA and ECDSA keys are supported' % (source, type(key).__name__))
    return key


def load_public_key(data, source='public key'):
    try:
        key = serialization.load_pem_public_key(_as_bytes(data))
    except Exception as exc:  # pylint: disable=broad-except
        raise PKIError('%s is not a valid PEM public key (%s)' % (source, _first_line(exc)))
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise PKIError('%s is a %s key; only RSA and ECDSA keys are supported' % (source, type(key).__name__))
    return key


def load_certificate(data, source='certificate'):
    try:
        return x509.load_pem_x509_certificate(_as_bytes(data))
    except Exception as exc:  # pylint: disable=broad-except
        raise PKIError('%s is not a valid PEM certificate (%s)' % (source, _first_line(exc)))


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- requests

def day_count(value):
    """A number of days as given: an int when whole (``365``, ``'365'``, ``365.0``), else a float
    (``0.01``). Raises ValueError for anything else, infinities and NaN included."""
    if isinstance(value, bool):
        raise ValueError('%r is not a number of days' % (value,))
    number = float(value)
    if not math.isfinite(number):
        raise ValueError('%r is not a number of days' % (value,))
    return int(number) if number.is_integer() else number


class Request:
    """What a certificate must say. Built from module parameters or a batch request."""

    __slots__ = ('common_name', 'organizations', 'dns_names', 'ip_addresses', 'usage',
                 'validity_days', 'renew_before_days')

    def __init__(self, common_name, organizations=None, dns_names=None, ip_addresses=None,
                 usage='client', validity_days=None, renew_before_days=None, what='request'):
        errors = []
        if not common_name or not isinstance(common_name, str):
            errors.append('common_name must be a non-empty string')
        if usage not in USAGES:
            errors.append('usage %r is not one of %s' % (usage, ', '.join(USAGES)))
        self.common_name = common_name
        self.usage = usage
        self.organizations = [str(o) for o in (organizations or [])]
        self.dns_names = []
        for name in dns_names or []:
            name = str(name).strip()
            if not name:
                errors.append('dns_names holds an empty name')
                continue
            try:
                ipaddress.ip_address(name)
                errors.append('dns_names holds the IP address %s; put it in ip_addresses' % name)
                continue
            except ValueError:
                pass
            if name.lower() not in [n.lower() for n in self.dns_names]:
                self.dns_names.append(name)
        self.ip_addresses = []
        for value in ip_addresses or []:
            try:
                address = ipaddress.ip_address(str(value).strip())
            except ValueError:
                errors.append('ip_addresses holds %r, which is not an IP address' % (value,))
                continue
            if address not in self.ip_addresses:
                self.ip_addresses.append(address)
        if validity_days is None:
            validity_days = DEFAULT_CA_DAYS if usage == 'ca' else DEFAULT_LEAF_DAYS
        if renew_before_days is None:
            renew_before_days = DEFAULT_RENEW_BEFORE_DAYS
        # whole or fractional days (0.01 is about 14 minutes, for tests of renewal)
        try:
            self.validity_days = day_count(validity_days)
            self.renew_before_days = day_count(renew_before_days)
        except (TypeError, ValueError):
            errors.append('validity_days and renew_before_days must be numbers of days, got %r and %r'
                          % (validity_days, renew_before_days))
            self.validity_days = self.renew_before_days = 0
        else:
            if self.validity_days <= 0:
                errors.append('validity_days must be more than 0, got %s' % self.validity_days)
            elif self.renew_before_days < 0:
                errors.append('renew_before_days must not be negative, got %s' % self.renew_before_days)
            elif self.renew_before_days >= self.validity_days:
                errors.append('renew_before_days (%s) must be smaller than validity_days (%s), or every run '
                              'would renew the certificate' % (self.renew_before_days, self.validity_days))
        if errors:
            raise PKIError('%s: %s' % (what, '; '.join(errors)))

    def subject(self):
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in self.organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attributes)

    def sans(self):
        return ['DNS:%s' % n for n in self.dns_names] + ['IP:%s' % a for a in self.ip_addresses]


# --------------------------------------------------------------------------- reading certificates

def not_after(cert):
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def not_before(cert):
    value = getattr(cert, 'not_valid_before_utc', None)
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
    return value


def _extension(cert, ext_class):
    try:
        return cert.extensions.get_extension_for_class(ext_class).value
    except x509.ExtensionNotFound:
        return None


def subject_parts(cert):
    """(CN or None, [O...], [other attributes as 'OID=value'])."""
    common_name = None
    organizations = []
    other = []
    for attribute in cert.subject:
        if attribute.oid == NameOID.COMMON_NAME and common_name is None:
            common_name = attribute.value
        elif attribute.oid == NameOID.ORGANIZATION_NAME:
            organizations.append(attribute.value)
        else:
            other.append('%s=%s' % (attribute.oid.dotted_string, attribute.value))
    return common_name, organizations, other


def cert_sans(cert):
    """(DNS names, IP addresses) of the subjectAltName extension."""
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def cert_usage(cert):
    """The usage this module would call the certificate: ca, server, client, server+client or ''."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        return 'ca'
    eku = _extension(cert, x509.ExtendedKeyUsage)
    purposes = set(eku) if eku is not None else set()
    server = ExtendedKeyUsageOID.SERVER_AUTH in purposes
    client = ExtendedKeyUsageOID.CLIENT_AUTH in purposes
    if server and client:
        return 'server+client'
    if server:
        return 'server'
    if client:
        return 'client'
    return ''


def _key_usage_names(cert):
    usage = _extension(cert, x509.KeyUsage)
    if usage is None:
        return []
    names = []
    for attr, name in (('digital_signature', 'digitalSignature'), ('key_encipherment', 'keyEncipherment'),
                       ('key_cert_sign', 'keyCertSign'), ('crl_sign', 'cRLSign'),
                       ('content_commitment', 'contentCommitment'), ('data_encipherment', 'dataEncipherment'),
                       ('key_agreement', 'keyAgreement')):
        if getattr(usage, attr):
            names.append(name)
    return names


def _eku_names(cert):
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return []
    known = {ExtendedKeyUsageOID.SERVER_AUTH: 'serverAuth', ExtendedKeyUsageOID.CLIENT_AUTH: 'clientAuth'}
    return [known.get(oid, oid.dotted_string) for oid in eku]


def fingerprint(cert):
    """sha256 of the DER certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert):
    return '%x' % cert.serial_number


def describe(cert):
    """Parsed fields of a certificate, for results and diffs. Never holds key material."""
    dns, ips = cert_sans(cert)
    return {
        'subject': cert.subject.rfc4514_string(),
        'issuer': cert.issuer.rfc4514_string(),
        'sans': ['DNS:%s' % n for n in dns] + ['IP:%s' % a for a in ips],
        'usage': cert_usage(cert),
        'key_usage': _key_usage_names(cert),
        'extended_key_usage': _eku_names(cert),
        'not_before': iso8601(not_before(cert)),
        'not_after': iso8601(not_after(cert)),
        'serial': serial_hex(cert),
        'fingerprint': fingerprint(cert),
        'key_type': key_type_of(cert.public_key()),
    }


def signed_by(cert, issuer_public_key):
    """Whether the signature on ``cert`` verifies with ``issuer_public_key``."""
    try:
        if isinstance(issuer_public_key, rsa.RSAPublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                     cert.signature_hash_algorithm)
        elif isinstance(issuer_public_key, ec.EllipticCurvePublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes,
                                     ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    except Exception:  # pylint: disable=broad-except
        # An algorithm mismatch (e.g. an RSA-PSS signature) means "not signed by this key" here.
        return False
    return True


# --------------------------------------------------------------------------- comparison

def _days(delta):
    return int(delta.total_seconds() // 86400)


def _list_text(values):
    return '[%s]' % ', '.join(values)


def compare(cert, request, public_key, issuer_cert=None, now=None):
    """Why ``cert`` no longer satisfies ``request``; an empty list when it does.

    ``public_key`` is the key the certificate must certify. ``issuer_cert`` is the CA that must
    have signed it; None means the certificate must be self-signed (a root CA).
    """
    now = now or utcnow()
    reasons = []

    if not same_public_key(cert.public_key(), public_key):
        reasons.append("key mismatch: the certificate's public key is not the private key's")

    if issuer_cert is None:
        if cert.issuer != cert.subject or not signed_by(cert, cert.public_key()):
            reasons.append('not self-signed (issued by %s)' % cert.issuer.rfc4514_string())
    elif cert.issuer != issuer_cert.subject:
        reasons.append('issued by another CA (%s, expected %s)'
                       % (cert.issuer.rfc4514_string(), issuer_cert.subject.rfc4514_string()))
    elif not signed_by(cert, issuer_cert.public_key()):
        reasons.append('issued by another CA (same issuer name, but the signature does not verify '
                       'with this CA)')

    common_name, organizations, other = subject_parts(cert)
    if common_name != request.common_name:
        reasons.append('subject CN differs: %r -> %r' % (common_name, request.common_name))
    if sorted(organizations) != sorted(request.organizations):
        reasons.append('subject O differs: %s -> %s' % (_list_text(organizations), _list_text(request.organizations)))
    if other:
        reasons.append('subject has other attributes: %s' % ', '.join(other))

    dns, ips = cert_sans(cert)
    have_dns = {n.lower(): n for n in dns}
    want_dns = {n.lower(): n for n in request.dns_names}
    changes = []
    changes.extend('added DNS %s' % want_dns[n] for n in sorted(set(want_dns) - set(have_dns)))
    changes.extend('added IP %s' % a for a in sorted(set(request.ip_addresses) - set(ips), key=_ip_sort_key))
    changes.extend('removed DNS %s' % have_dns[n] for n in sorted(set(have_dns) - set(want_dns)))
    changes.extend('removed IP %s' % a for a in sorted(set(ips) - set(request.ip_addresses), key=_ip_sort_key))
    if changes:
        reasons.append('SANs differ: %s' % ', '.join(changes))

    usage = cert_usage(cert)
    if usage != request.usage:
        reasons.append('usages differ: %s -> %s' % (usage or 'none', request.usage))
    else:
        key_usage = _key_usage_names(cert)
        needed = ['digitalSignature']
        if request.usage == 'ca':
            needed.append('keyCertSign')
        elif isinstance(public_key, rsa.RSAPublicKey):
            needed.append('keyEncipherment')
        missing = [n for n in needed if n not in key_usage]
        if missing:
            reasons.append('key usage lacks %s' % ', '.join(missing))

    start = not_before(cert)
    end = not_after(cert)
    if start > now + BACKDATE:
        reasons.append('not valid before %s' % iso8601(start))
    left = end - now
    if left.total_seconds() <= 0:
        reasons.append('expired %d days ago (%s)' % (_days(-left), iso8601(end)))
    elif left <= datetime.timedelta(days=request.renew_before_days):
        when = ('%d days' % _days(left)) if left >= datetime.timedelta(days=1) else (
            '%d minutes' % (left.total_seconds() // 60))
        reasons.append('expires in %s (renew_before %s)' % (when, request.renew_before_days))
    return reasons


def _ip_sort_key(address):
    return (address.version, int(address))


# --------------------------------------------------------------------------- issuing

def build_certificate(request, public_key, signer_key, issuer_cert=None, now=None):
    """Sign a certificate for ``public_key``. ``issuer_cert`` None means self-signed."""
    now = now or utcnow()
    subject = request.subject()
    issuer = subject if issuer_cert is None else issuer_cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=request.validity_days))
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = builder.add_extension(ski, critical=False)
    if issuer_cert is not None:
        issuer_ski = _extension(issuer_cert, x509.SubjectKeyIdentifier)
        if issuer_ski is None:
            issuer_ski = x509.SubjectKeyIdentifier.from_public_key(issuer_cert.public_key())
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
    is_ca = request.usage == 'ca'
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=(not is_ca) and is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    ), critical=True)
    if not is_ca:
        purposes = []
        if request.usage in ('server', 'server+client'):
            purposes.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if request.usage in ('client', 'server+client'):
            purposes.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    names = [x509.DNSName(n) for n in request.dns_names] + [x509.IPAddress(a) for a in request.ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def predicted(request, key_type, issuer_cert=None, now=None):
    """What a certificate issued now would say (check mode, before a key exists)."""
    now = now or utcnow()
    return {
        'subject': request.subject().rfc4514_string(),
        'issuer': (request.subject() if issuer_cert is None else issuer_cert.subject).rfc4514_string(),
        'sans': request.sans(),
        'usage': request.usage,
        'not_after': iso8601(now + datetime.timedelta(days=request.validity_days)),
        'serial': None,
        'fingerprint': None,
        'key_type': key_type,
    }


# --------------------------------------------------------------------------- CA material

class CA:
    """A CA certificate and its key, loaded from files and checked against each other."""

    def __init__(self, cert_path, key_path):
        cert_data = files.read_file(cert_path)
        if cert_data is None:
            raise MissingFileError('CA certificate %s does not exist' % cert_path)
        key_data = files.read_file(key_path)
        if key_data is None:
            raise MissingFileError('CA key %s does not exist' % key_path)
        self.cert = load_certificate(cert_data, 'CA certificate %s' % cert_path)
        self.key = load_private_key(key_data, 'CA key %s' % key_path)
        if cert_usage(self.cert) != 'ca':
            raise PKIError('CA certificate %s is not a CA certificate (basicConstraints CA:false or absent)'
                           % cert_path)
        if not same_public_key(self.cert.public_key(), self.key):
            raise PKIError('CA key %s does not belong to CA certificate %s' % (key_path, cert_path))
        self.cert_path = cert_path
        self.key_path = key_path

    def issue(self, request, public_key, now=None):
        return build_certificate(request, public_key, self.key, self.cert, now)


# --------------------------------------------------------------------------- plans

def _load_existing_key(path, what):
    """(key or None, problem text or None). The problem is set for an unreadable/corrupted key."""
    data = files.read_file(path)
    if data is None:
        return None, None
    try:
        return load_private_key(data, '%s %s' % (what, path)), None
    except PKIError as exc:
        return None, str(exc)


def plan_certificate(path, key_path, request, key_type, ca_cert_path=None, ca_key_path=None,
                     force=False, check_mode=False, now=None):
    """Decide what the certificate module has to do. Reads files, never writes them."""
    now = now or utcnow()
    plan = files.Plan()
    is_ca = request.usage == 'ca'
    if key_type not in KEY_TYPES:
        raise PKIError('unknown key_type %r (expected one of %s)' % (key_type, ', '.join(KEY_TYPES)))
    if bool(ca_cert_path) != bool(ca_key_path):
        raise PKIError('ca_cert_path and ca_key_path go together: give both or neither')
    if not ca_cert_path and not is_ca:
        raise PKIError('usage %s needs the signing CA: set ca_cert_path and ca_key_path' % request.usage)
    if os.path.abspath(path) == os.path.abspath(key_path):
        raise PKIError('path and key_path are the same file (%s)' % path)
    try:
        ca = CA(ca_cert_path, ca_key_path) if ca_cert_path else None
    except MissingFileError as exc:
        if not check_mode:
            raise
        # In check mode the CA may be one an earlier task would have created.
        plan.reasons = ['%s (yet); the certificate would be issued once it does' % exc]
        plan.needs_renewal = True
        cert_data = files.read_file(path)
        if cert_data is not None:
            try:
                plan.before = describe(load_certificate(cert_data))
            except PKIError:
                plan.before = None
        plan.after = predicted(request, key_type, None, now)
        plan.after['issuer'] = None
        plan.result = dict(plan.after)
        plan.result['_would_change'] = True
        return plan
    issuer_cert = ca.cert if ca else None

    # The private key: kept whenever it is present, valid and of the requested type.
    key, key_problem = _load_existing_key(key_path, 'CA key' if is_ca else 'private key')
    if key_problem and is_ca:
        raise PKIError('%s; remove it (and %s) to create a new CA' % (key_problem, path))
    key_reason = None
    if key is None:
        key_reason = ('%s; generating a new key' % key_problem) if key_problem else None
    elif key_type_of(key) != key_type:
        key_reason = 'key type differs: %s -> %s' % (key_type_of(key), key_type)
        if not is_ca:
            key = None

    # The certificate.
    cert = None
    cert_data = files.read_file(path)
    cert_reasons = []
    if cert_data is None:
        cert_reasons.append('no certificate at %s' % path)
    else:
        try:
            cert = load_certificate(cert_data, 'certificate %s' % path)
        except PKIError as exc:
            if is_ca:
                raise PKIError('CA %s; remove it (and %s) to create a new CA' % (exc, key_path))
            cert_reasons.append('%s; re-issuing' % exc)
    if cert is not None:
        plan.before = describe(cert)

    if is_ca and cert is not None and key is None and not key_problem:
        # The certificate exists but its key is gone: a new key would be a new CA.
        if not force:
            raise PKIError('CA certificate %s exists but its key %s does not; restore the key, or remove '
                           'the certificate to create a new CA' % (path, key_path))
        cert_reasons.append('CA key %s is missing' % key_path)

    if key_reason:
        cert_reasons.insert(0, key_reason)
    if cert is not None and key is not None:
        cert_reasons.extend(compare(cert, request, key.public_key(), issuer_cert, now))
    elif cert is not None and key is None and not is_ca and not key_problem:
        if not key_reason:
            cert_reasons.append('no private key at %s' % key_path)

    plan.reasons = cert_reasons
    if force and not cert_reasons:
        plan.reasons = ['force: re-issuing']

    if not plan.reasons:
        plan.needs_renewal = False
        plan.after = plan.before
        plan.result = _result(cert, request)
        return plan

    if is_ca and cert is not None and not force:
        # An existing CA is never replaced behind the operator's back.
        plan.needs_renewal = True
        plan.after = plan.before
        plan.warnings.append('CA certificate %s needs re-issuing (%s) but an existing CA is never replaced '
                             'automatically; run with force: true to re-issue it' % (path, plan.reason))
        plan.result = _result(cert, request)
        return plan

    # (Re-)issue. A CA that is re-issued with force keeps its key when the key is of the right
    # type, so certificates it signed before keep verifying.
    new_key = key is None or (is_ca and key_type_of(key) != key_type)
    if check_mode:
        plan.needs_renewal = True
        plan.after = predicted(request, key_type, issuer_cert, now)
        plan.result = dict(plan.after)
        plan.result['_would_change'] = True
        return plan
    if new_key:
        key = generate_private_key(key_type)
        plan.files[key_path] = private_key_pem(key)
        plan.secret.add(key_path)
    if ca is not None:
        new_cert = ca.issue(request, key.public_key(), now)
    else:
        new_cert = build_certificate(request, key.public_key(), key, None, now)
    plan.files[path] = certificate_pem(new_cert)
    plan.needs_renewal = False
    plan.after = describe(new_cert)
    plan.result = _result(new_cert, request)
    return plan


def _result(cert, request):
    if cert is None:
        return {'subject': request.subject().rfc4514_string(), 'sans': request.sans(),
                'not_after': None, 'serial': None, 'fingerprint': None}
    info = describe(cert)
    return {k: info[k] for k in ('subject', 'sans', 'not_after', 'serial', 'fingerprint')}


def plan_private_key(path, key_type, cert_path=None, check_mode=False):
    """Decide what the private_key module has to do; returns (plan, key or None)."""
    if key_type not in KEY_TYPES:
        raise PKIError('unknown key_type %r (expected one of %s)' % (key_type, ', '.join(KEY_TYPES)))
    plan = files.Plan()
    key, problem = _load_existing_key(path, 'private key')
    if key is None:
        plan.reasons.append(('%s; generating a new key' % problem) if problem else 'no private key at %s' % path)
    elif key_type_of(key) != key_type:
        plan.reasons.append('key type differs: %s -> %s' % (key_type_of(key), key_type))
        key = None
    if key is None:
        if check_mode:
            plan.result['_would_change'] = True
        else:
            key = generate_private_key(key_type)
            plan.files[path] = private_key_pem(key)
            plan.secret.add(path)
    plan.result['public_key'] = public_key_pem(key).decode('ascii') if key is not None else None
    plan.result['key_type'] = key_type
    if cert_path:
        cert_data = files.read_file(cert_path)
        certificate = None
        matches = False
        if cert_data is not None:
            try:
                cert = load_certificate(cert_data, 'certificate %s' % cert_path)
            except PKIError as exc:
                plan.warnings.append('%s; it will be re-issued' % exc)
            else:
                certificate = certificate_pem(cert).decode('ascii')
                matches = key is not None and same_public_key(cert.public_key(), key)
        plan.result['certificate'] = certificate
        plan.result['certificate_matches_key'] = matches
    return plan, key


def plan_keypair(path, public_path, key_type, check_mode=False):
    """Decide what the keypair module has to do (service-account signing keys)."""
    if key_type not in KEY_TYPES:
        raise PKIError('unknown key_type %r (expected one of %s)' % (key_type, ', '.join(KEY_TYPES)))
    if os.path.abspath(path) == os.path.abspath(public_path):
        raise PKIError('path and public_path are the same file (%s)' % path)
    plan = files.Plan()
    data = files.read_file(path)
    key = None
    if data is not None:
        # Regenerating a service-account key invalidates every token it signed: a damaged key is an
        # error, never silently replaced.
        key = load_private_key(data, 'private key %s' % path)
        if key_type_of(key) != key_type:
            plan.warnings.append('%s holds a %s key, not %s; it is kept (a new key would invalidate every token '
                                 'signed with it). Remove %s and %s to create a new pair.'
                                 % (path, key_type_of(key), key_type, path, public_path))
    else:
        plan.reasons.append('no private key at %s' % path)
        if check_mode:
            plan.result['_would_change'] = True
        else:
            key = generate_private_key(key_type)
            plan.files[path] = private_key_pem(key)
            plan.secret.add(path)
    if key is None:
        plan.result.update(public_key=None, fingerprint=None, key_type=key_type)
        return plan
    public = public_key_pem(key)
    current = files.read_file(public_path)
    current_key = None
    if current is not None:
        try:
            current_key = load_public_key(current, 'public key %s' % public_path)
        except PKIError as exc:
            plan.reasons.append('%s; rewriting it' % exc)
    if current is None:
        plan.reasons.append('no public key at %s' % public_path)
    if current_key is None or not same_public_key(current_key, key):
        if current_key is not None:
            plan.reasons.append('public key %s does not match %s; rewriting it' % (public_path, path))
        if check_mode:
            plan.result['_would_change'] = True
        else:
            plan.files[public_path] = public
    plan.result.update(public_key=public.decode('ascii'), fingerprint=public_key_fingerprint(key),
                       key_type=key_type_of(key))
    return plan


# --------------------------------------------------------------------------- batch

class BatchRequest:
    """One entry of certificate_batch's ``requests``."""

    __slots__ = ('id', 'public_key', 'current', 'request')

    def __init__(self, entry):
        ident = entry.get('id')
        if not ident or not isinstance(ident, str):
            raise PKIError('a request has no id (got %r)' % (ident,))
        self.id = ident
        what = 'request %s' % ident
        self.request = Request(
            common_name=entry.get('common_name'),
            organizations=entry.get('organizations'),
            dns_names=entry.get('dns_names'),
            ip_addresses=entry.get('ip_addresses'),
            usage=entry.get('usage') or 'client',
            validity_days=entry.get('validity_days'),
            renew_before_days=entry.get('renew_before_days'),
            what=what,
        )
        if self.request.usage == 'ca':
            raise PKIError('%s: usage ca is not issued in batches; use the certificate module' % what)
        public = entry.get('public_key')
        self.public_key = load_public_key(public, '%s: public_key' % what) if public else None
        self.current = entry.get('current_certificate') or None


def plan_batch_without_ca(entries, reason, now=None):
    """Check mode when the CA does not exist yet: every valid request would be issued.

    Returns (certificates, unchanged, errors) like issue_batch.
    """
    now = now or utcnow()
    certificates = {}
    errors = []
    for index, entry in enumerate(entries):
        try:
            item = BatchRequest(entry)
        except PKIError as exc:
            errors.append('requests[%d]: %s' % (index, exc))
            continue
        certificates[item.id] = {
            'reason': reason, 'certificate': None, 'serial': None,
            'not_after': iso8601(now + datetime.timedelta(days=item.request.validity_days)),
        }
    if errors:
        return {}, [], errors
    return certificates, [], []


def issue_batch(ca, entries, check_mode=False, now=None):
    """Issue what the batch needs. Returns (certificates, unchanged, errors).

    ``certificates`` maps id -> {certificate, reason, not_after, serial} for every certificate that
    is (or, in check mode, would be) issued; ``unchanged`` lists the ids whose current certificate
    still matches. Nothing is issued when any request is invalid: ``errors`` lists them all.
    """
    now = now or utcnow()
    parsed = []
    errors = []
    seen = set()
    for index, entry in enumerate(entries):
        try:
            item = BatchRequest(entry)
        except PKIError as exc:
            errors.append('requests[%d]: %s' % (index, exc))
            continue
        if item.id in seen:
            errors.append('requests[%d]: id %s is used twice' % (index, item.id))
            continue
        seen.add(item.id)
        if item.public_key is None and not check_mode:
            errors.append('request %s: public_key is empty (the node key does not exist yet)' % item.id)
            continue
        parsed.append(item)
    if errors:
        return {}, [], errors

    certificates = {}
    unchanged = []
    for item in parsed:
        reasons = []
        if item.public_key is None:
            reasons.append('no node key yet')
        elif item.current is None:
            reasons.append('no current certificate')
        else:
            try:
                cert = load_certificate(item.current, 'current certificate')
            except PKIError as exc:
                reasons.append('%s; re-issuing' % exc)
            else:
                reasons.extend(compare(cert, item.request, item.public_key, ca.cert, now))
        if not reasons:
            unchanged.append(item.id)
            continue
        entry = {'reason': '; '.join(reasons)}
        if check_mode:
            entry.update(certificate=None, serial=None,
                         not_after=iso8601(now + datetime.timedelta(days=item.request.validity_days)))
        else:
            cert = ca.issue(item.request, item.public_key, now)
            entry.update(certificate=certificate_pem(cert).decode('ascii'), serial=serial_hex(cert),
                         not_after=iso8601(not_after(cert)))
        certificates[item.id] = entry
    return certificates, unchanged, []
