# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""How long every certificate of a host stays valid, for playbooks/certs.yml.

Runs on the host inside the ``cert_expiry`` module and only reads. Which files a host holds comes
from the one catalogue (``pki_catalog``): the CAs of its groups, the cluster CAs' certificates
(``host_certificates``) and the etcd CA's (``etcd_certificates``). A kubeconfig is read for the
client certificate it carries, embedded or referenced by path.

:func:`report` returns one row per certificate and kubeconfig (expiry, time left, issuer, whether
the CA on this host verifies its signature), the rows inside the threshold (:func:`inside`, the
check's decision), the longest time left per CA (what a forced renewal must cover) and the
services that started before one of their certificate files changed (a restart would pick the new
one up; the change time is read as the etcd role reads it, ``etcd_member.stale_inputs``).
:func:`parse_duration` reads thresholds such as ``7d``, ``12h``, ``90m`` or ``1d12h``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import os
import re
import traceback

from ansible_collections.kubeforge.cluster.plugins.module_utils import etcd_member, files, pki, pki_catalog

try:
    from cryptography.x509.oid import NameOID
except ImportError:
    NameOID = None  # the module reports pki.HAS_CRYPTOGRAPHY

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

# Which files a host holds depends on its groups alone; the names and addresses inside the
# certificates (what these settings are for) do not matter to the layout.
LAYOUT_SETTINGS = {"cluster_name": "layout", "service_cidr": "10.96.0.0/12", "cluster_domain": "cluster.local",
                   "api_endpoint": "", "apiserver_port": 6443, "apiserver_extra_sans": [], "admin_group": None}
LAYOUT_ADDRESS = "127.0.0.1"

# The services that read certificates of the catalogue (by catalogue name), in the order a host
# restarts them, with the CA files each reads (below PKI_DIR): a CA rotation changes those, and the
# service trusts (or signs with) the new CA only after a restart. The etcd role restarts etcd
# itself; the others are restarted by certs.yml.
SERVICES = (
    ("etcd", ("server", "peer"), ("etcd/ca.crt",)),
    ("kube-apiserver", ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client"),
     ("ca.crt", "front-proxy-ca.crt", "etcd/ca.crt")),
    ("kube-controller-manager", ("controller-manager",),
     ("ca.crt", pki_catalog.SIGNER_FILE, "ca.key", "front-proxy-ca.crt")),
    ("kube-scheduler", ("scheduler",), ()),
    ("kubelet", ("kubelet-client", "kubelet"), ("ca.crt",)),
    ("kube-proxy", ("kube-proxy",), ()),
)

DAY = 86400
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?$")
# rows without a time left (missing, unreadable) sort first, in the order they were read (a stable
# sort keeps hosts and the catalogue's order)
_UNKNOWN_ORDER = -(10 ** 12)


class CertExpiryError(ValueError):
    """An option the report cannot work with (a duration that is not one)."""


# -- durations ------------------------------------------------------------------------------------

def parse_duration(value, what="duration"):
    """Seconds in ``value``: ``7d``, ``12h``, ``90m``, ``1d12h30m``, ``0.5d``; a bare number is days."""
    refusal = CertExpiryError("%s: %r is not a duration (use days, hours and minutes: 7d, 12h, 90m, 1d12h)"
                              % (what, value))
    if isinstance(value, bool) or value is None:
        raise refusal
    text = str(value).strip().lower().replace(" ", "")
    try:
        seconds = float(text) * DAY
    except ValueError:
        match = _DURATION_RE.match(text)
        if not text or not match:
            raise refusal
        days, hours, minutes = (float(part) if part else 0.0 for part in match.groups())
        seconds = days * DAY + hours * 3600 + minutes * 60
    if not math.isfinite(seconds) or seconds < 0:
        raise CertExpiryError("%s: %r is not a duration of 0 or more" % (what, value))
    return seconds


def format_left(seconds):
    """Time left as a person reads it: ``364d``, ``5h 12m``, ``14m``, ``40s``, ``expired 3d ago``."""
    if seconds is None:
        return ""
    if seconds <= 0:
        return "expired %s ago" % _span(-seconds) if seconds < 0 else "expired"
    return _span(seconds)


def _span(seconds):
    seconds = int(seconds)
    if seconds >= DAY:
        return "%dd" % (seconds // DAY)
    if seconds >= 3600:
        hours, minutes = seconds // 3600, seconds % 3600 // 60
        return "%dh %dm" % (hours, minutes) if minutes else "%dh" % hours
    if seconds >= 60:
        return "%dm" % (seconds // 60)
    return "%ds" % seconds


def inside(row, threshold_seconds):
    """The check's decision: a certificate fails it when it expires within the threshold, has
    expired, or cannot be read at all (missing or unreadable)."""
    left = row.get("seconds_left")
    return left is None or left <= threshold_seconds


# -- what a host holds ----------------------------------------------------------------------------

def host_cas(host, control_planes, nodes, etcd_hosts):
    """The CA certificates ``host`` holds (CA_FILES entries with their path): the cluster CA on
    every node, the front-proxy CA on control planes, the etcd CA on control planes and members."""
    is_cp = host in control_planes
    wanted = {"kubernetes": is_cp or host in nodes, "front-proxy": is_cp, "etcd": is_cp or host in etcd_hosts}
    return [dict(entry, path="%s/%s" % (pki_catalog.PKI_DIR, entry["cert"]))
            for entry in pki_catalog.CA_FILES + (pki_catalog.ETCD_CA,) if wanted.get(entry["signer"])]


def host_layout(host, control_planes, nodes, etcd_hosts):
    """(CAs, certificates) of ``host``: the catalogue's entries for its groups, in its order."""
    control_planes, nodes, etcd_hosts = list(control_planes), list(nodes), list(etcd_hosts)
    specs = pki_catalog.host_certificates(host, LAYOUT_ADDRESS, control_planes, nodes, LAYOUT_SETTINGS)
    specs += pki_catalog.etcd_certificates(host, host in etcd_hosts, host in control_planes)
    return host_cas(host, control_planes, nodes, etcd_hosts), specs


def entries(cas, specs):
    """What the report reads, in the catalogue's order: every CA, every certificate file, and
    every kubeconfig. A client certificate embedded in a kubeconfig is reported there (its copy
    beside it is compared with it); one the kubeconfig references by path is reported as both."""
    ca_paths = {ca["signer"]: ca["path"] for ca in cas}
    out = [{"name": ca["name"], "kind": "ca", "ca": ca["signer"], "path": ca["path"], "ca_path": ca["path"],
            "copy": None} for ca in cas]
    for spec in specs:
        kubeconfig = spec.get("kubeconfig")
        common = {"ca": spec["ca"], "ca_path": ca_paths.get(spec["ca"])}
        if not (kubeconfig and kubeconfig.get("embed_client")):
            out.append(dict(common, name=spec.get("path") or spec["name"], kind="certificate",
                            path=spec["cert_path"], copy=None))
        if kubeconfig:
            out.append(dict(common, name=os.path.basename(kubeconfig["dest"]), kind="kubeconfig",
                            path=kubeconfig["dest"],
                            copy=spec["cert_path"] if kubeconfig.get("embed_client") else None))
    return out


# -- reading --------------------------------------------------------------------------------------

def read_certificate(path, root=""):
    """(certificate or None, problem or None); the problem is ``missing`` or why it is unusable."""
    try:
        data = files.read_file(root + path)
    except files.FileError as exc:
        return None, str(exc)
    if data is None:
        return None, "missing"
    try:
        return pki.load_certificate(data, path), None
    except pki.PKIError as exc:
        return None, str(exc)


def _named(items, name, field):
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(field), dict):
            return item[field]
    return None


def read_kubeconfig(path, root=""):
    """(client certificate or None, the file it was read from or None, problem or None).

    The user of the current context (else the only user); its certificate embedded
    (``client-certificate-data``) or referenced (``client-certificate``, relative to the kubeconfig).
    """
    try:
        data = files.read_file(root + path)
    except files.FileError as exc:
        return None, None, str(exc)
    if data is None:
        return None, None, "missing"
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        return None, None, "%s is not YAML (%s)" % (path, str(exc).splitlines()[0])
    if not isinstance(doc, dict):
        return None, None, "%s is not a kubeconfig" % path
    context = _named(doc.get("contexts"), doc.get("current-context"), "context") or {}
    user = _named(doc.get("users"), context.get("user"), "user")
    if user is None:
        users = [u.get("user") for u in doc.get("users") or [] if isinstance(u, dict)]
        user = users[0] if len(users) == 1 and isinstance(users[0], dict) else None
    if user is None:
        return None, None, "%s names no user for its current context" % path
    if isinstance(user.get("client-certificate-data"), str):
        try:
            pem = base64.b64decode("".join(user["client-certificate-data"].split()), validate=True)
        except (binascii.Error, ValueError):
            return None, None, "%s: client-certificate-data is not base64" % path
        try:
            return pki.load_certificate(pem, "%s (client-certificate-data)" % path), None, None
        except pki.PKIError as exc:
            return None, None, str(exc)
    if isinstance(user.get("client-certificate"), str):
        referenced = user["client-certificate"]
        if not os.path.isabs(referenced):
            referenced = os.path.join(os.path.dirname(path), referenced)
        cert, problem = read_certificate(referenced, root)
        if problem == "missing":
            problem = "%s references %s, which is missing" % (path, referenced)
        return cert, referenced, problem
    return None, None, "%s has no client certificate (its user authenticates otherwise)" % path


def _common_name(name):
    values = [attribute.value for attribute in name if attribute.oid == NameOID.COMMON_NAME]
    return values[0] if values else name.rfc4514_string()


def _seconds_left(cert, now):
    return int((pki.not_after(cert) - now).total_seconds() // 1)


def _add_problem(row, text):
    row["problem"] = "%s; %s" % (row["problem"], text) if row["problem"] else text


def row_of(host, entry, ca_certs, now, root=""):
    """One row of the table for ``entry`` of :func:`entries`."""
    row = {"host": host, "name": entry["name"], "kind": entry["kind"], "path": entry["path"], "ca": entry["ca"],
           "ca_path": entry["ca_path"], "client_certificate": None, "subject": None, "issuer": None,
           "not_after": None, "expires": "", "seconds_left": None, "left": "", "signed_by_ca": None,
           "problem": "", "copy_seconds_left": None}
    if entry["kind"] == "kubeconfig":
        cert, referenced, problem = read_kubeconfig(entry["path"], root)
        row["client_certificate"] = referenced or ("embedded" if cert is not None else None)
    else:
        cert, problem = read_certificate(entry["path"], root)
    # the copy beside a kubeconfig is what the pki role compares and embeds: its time left counts
    # for a forced renewal even when the kubeconfig itself is gone
    copy, copy_problem = read_certificate(entry["copy"], root) if entry["copy"] else (None, "missing")
    if copy is not None:
        row["copy_seconds_left"] = _seconds_left(copy, now)
    if cert is None:
        row["status"] = "missing" if problem == "missing" else "unreadable"
        row["problem"] = "" if problem == "missing" else problem
        return row
    end = pki.not_after(cert)
    row.update(subject=_common_name(cert.subject), not_after=pki.iso8601(end),
               expires=end.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
               seconds_left=_seconds_left(cert, now))
    row["left"] = format_left(row["seconds_left"])
    if entry["kind"] == "ca":
        self_signed = cert.issuer == cert.subject and pki.signed_by(cert, cert.public_key())
        row["issuer"] = "self-signed" if self_signed else _common_name(cert.issuer)
        row["signed_by_ca"] = self_signed
    else:
        row["issuer"] = _common_name(cert.issuer)
        ca_cert = ca_certs.get(entry["ca"])
        if ca_cert is not None:
            row["signed_by_ca"] = cert.issuer == ca_cert.subject and pki.signed_by(cert, ca_cert.public_key())
            if not row["signed_by_ca"]:
                _add_problem(row, "not signed by the CA at %s" % entry["ca_path"])
    if copy is not None and pki.fingerprint(copy) != pki.fingerprint(cert):
        _add_problem(row, "the copy at %s is another certificate (expires %s)"
                     % (entry["copy"], pki.iso8601(pki.not_after(copy))))
    elif copy is None and copy_problem != "missing":
        _add_problem(row, copy_problem)
    row["status"] = "expired" if row["seconds_left"] <= 0 else "ok"
    return row


def service_inputs(specs):
    """{service: [files]} for the services of :data:`SERVICES` that read certificates of ``specs``."""
    by_name = {spec["name"]: spec for spec in specs}
    out = {}
    for service, names, ca_files in SERVICES:
        paths = []
        for name in names:
            spec = by_name.get(name)
            if spec is None:
                continue
            paths += [spec["cert_path"], spec["key_path"]]
            if spec.get("kubeconfig"):
                paths.append(spec["kubeconfig"]["dest"])
        if paths:
            out[service] = paths + ["%s/%s" % (pki_catalog.PKI_DIR, name) for name in ca_files]
    return out


def services_state(specs, run, proc="/proc", root=""):
    """Each service's state and the certificate files changed after it started."""
    out = []
    for service, paths in service_inputs(specs).items():
        state = etcd_member.systemd_state(run, service, proc)
        stale = [path for path in paths
                 if etcd_member.stale_inputs([root + path], state["started_at"])] if state["active"] else []
        out.append({"name": service, "active": state["active"], "state": state["state"], "stale": stale})
    return out


def report(host, control_planes, nodes, etcd_hosts, fail_within="7d", run=None, proc="/proc", now=None, root=""):
    """Everything the module returns (see its RETURN). ``run`` (``etcd_member.command_runner``) None
    leaves out the services; ``root`` is prefixed to every path read (tests), never to those reported."""
    threshold = parse_duration(fail_within, "fail_within")
    now = now or pki.utcnow()
    cas, specs = host_layout(host, control_planes, nodes, etcd_hosts)
    ca_certs = {}
    for ca in cas:
        cert, _problem = read_certificate(ca["path"], root)
        if cert is not None:
            ca_certs[ca["signer"]] = cert
    rows = [row_of(host, entry, ca_certs, now, root) for entry in entries(cas, specs)]
    failing = []
    longest = {}
    for row in rows:
        row["inside"] = inside(row, threshold)
        if row["inside"]:
            failing.append(row)
            if row["status"] == "ok":
                row["status"] = "within %s" % str(fail_within).strip()
        left = row["seconds_left"]
        row["order"] = _UNKNOWN_ORDER if left is None else left
        if row["kind"] != "ca":
            for value in (left, row["copy_seconds_left"]):
                if value is not None:
                    longest[row["ca"]] = max(longest.get(row["ca"], value), value)
    services = services_state(specs, run, proc, root) if run is not None else []
    return {"host": host, "rows": rows, "failing": failing, "longest_left": longest,
            "threshold_seconds": int(threshold), "services": services,
            "restart": [service["name"] for service in services if service["stale"]]}
