# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The cluster's certificates: which host holds which, with what subject, names and kubeconfig.

Pure Python, used on the controller by the ``pki`` filters; unit tests call it with plain dicts and
check it against Kubernetes' PKI requirements table (the page "PKI certificates and requirements":
names, paths, CN, O and usages are those of kubeadm, so operators' tools keep working).

The catalogue has two parts, one per CA family, in the same form (see ``_spec``):

* :func:`host_certificates`: the cluster CAs' certificates of one host (API server, front proxy,
  kubeconfig clients, kubelet), issued by the pki role;
* :func:`etcd_certificates`: the etcd CA's (server, peer, healthcheck-client on etcd members,
  apiserver-etcd-client on control planes), issued by the etcd role, whose plan decides which
  member holds that CA and in which order members restart.

Both flows turn every host's list and its keys into the requests of one ``certificate_batch``
call per CA with :func:`batch_requests`; the etcd flow picks what the batch issued for a host with
:func:`issued` (and :func:`etcd_outside_files`). :func:`ca_plan` picks the control plane that holds
(or will create) the cluster CAs and the service-account key pair, lists the control planes that
lack them, and refuses control planes that hold different CAs, by ``shared_secret.share``, the
decision the etcd plan makes for the etcd CA. What a probe of another host registered is read by
``probe.read_answer``, the same rule for both flows.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress

from ansible_collections.kubeforge.cluster.plugins.module_utils import ca_rotation, network, shared_secret
from ansible_collections.kubeforge.cluster.plugins.module_utils.pki import day_count
from ansible_collections.kubeforge.cluster.plugins.module_utils.probe import read_answer, unreachable_error

PKI_DIR = "/etc/kubernetes/pki"
KUBECONFIG_DIR = "/etc/kubernetes"
# client certificates that only live inside a kubeconfig in kubeadm's layout; here the kubeconfig
# embeds them and the files stay beside it, so a renewal can compare and re-issue them
CLIENT_DIR = PKI_DIR + "/kubeconfig"
KUBELET_PKI_DIR = "/var/lib/kubelet/pki"

# What the CA host creates and the other control planes receive (cert or public part, key), with
# the name the certificates it signs give as their "ca" (none for the service-account key pair).
CA_FILES = (
    {"name": "ca", "cert": "ca.crt", "key": "ca.key", "common_name": "kubernetes-ca", "signer": "kubernetes"},
    {"name": "front-proxy-ca", "cert": "front-proxy-ca.crt", "key": "front-proxy-ca.key",
     "common_name": "kubernetes-front-proxy-ca", "signer": "front-proxy"},
    {"name": "sa", "cert": "sa.pub", "key": "sa.key", "common_name": None, "signer": None},
)
CA_FILE_NAMES = tuple(entry[key] for entry in CA_FILES for key in ("cert", "key"))
# A CA being rotated (module_utils/ca_rotation.py) waits at <name>-new.crt/.key during phase trust;
# the control planes hold these too while they exist.
ROTATING_CAS = CA_FILES[:2]
ROTATION_FILE_NAMES = tuple(name for entry in ROTATING_CAS for name in ca_rotation.next_paths(entry["cert"], entry["key"]))
# what kube-controller-manager signs CSRs with: the first certificate of ca.crt (the signer), alone,
# as its --cluster-signing-cert-file takes exactly one certificate and ca.crt holds two during a
# rotation; written on the control planes from the CA host's ca.crt
SIGNER_FILE = "ca-signer.crt"
# the cluster CAs that sign leaf certificates: batch_requests groups its requests by these names (the
# spec's "ca"), and by "etcd" for the etcd CA's certificates
SIGNERS = ("kubernetes", "front-proxy")

ETCD_PKI_DIR = PKI_DIR + "/etcd"
# The etcd CA, in the form of CA_FILES (paths below PKI_DIR): on every etcd member, and its
# certificate alone on control planes outside the etcd group.
ETCD_CA = {"name": "etcd-ca", "cert": "etcd/ca.crt", "key": "etcd/ca.key", "common_name": "etcd-ca", "signer": "etcd"}
# The etcd CA's certificates (CN as in the Kubernetes PKI requirements; no O): name, path below
# PKI_DIR without the suffix, CN, usage, held by etcd members (else by control planes), file owner.
ETCD_CERTIFICATES = (
    ("server", "etcd/server", "kube-etcd", "server+client", True, "etcd"),
    ("peer", "etcd/peer", "kube-etcd-peer", "server+client", True, "etcd"),
    ("healthcheck-client", "etcd/healthcheck-client", "kube-etcd-healthcheck-client", "client", True, "root"),
    ("apiserver-etcd-client", "apiserver-etcd-client", "kube-apiserver-etcd-client", "client", False, "root"),
)

# kubeadm gives admin.conf this group and binds it to cluster-admin; super-admin.conf alone is in
# system:masters, which no RBAC rule can restrict (a break-glass credential, on the first control
# plane only: a fixed place, so no copy is left behind elsewhere)
ADMIN_GROUP = "kubeadm:cluster-admins"


class PKIPlanError(ValueError):
    """Input the catalogue cannot work with."""


def _is_ip(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def url(host, port):
    """``https://host:port``, an IPv6 address in brackets."""
    return "https://%s:%s" % ("[%s]" % host if ":" in host else host, port)


def _endpoint_host(endpoint):
    """Host part of ``host:port`` or ``[v6]:port``."""
    if endpoint.startswith("["):
        return endpoint[1:endpoint.index("]")]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def host_address(hostvars_of_host, name):
    """The address other hosts use: ``ip``, else ``ansible_host``, else the inventory name."""
    return str(hostvars_of_host.get("ip") or hostvars_of_host.get("ansible_host") or name)


def _spec(name, ca, key, cert, common_name, usage, organizations=(), dns=(), ips=(), kubeconfig=None):
    if kubeconfig:
        kubeconfig = dict(kubeconfig, client_cert_path=cert, client_key_path=key)
    # "key": the entry of this certificate in the private_key module's keys option
    return {"name": name, "ca": ca, "key_path": key, "cert_path": cert, "key": {"path": key, "cert_path": cert},
            "common_name": common_name, "organizations": list(organizations), "usage": usage,
            "dns_names": list(dns), "ip_addresses": list(ips), "kubeconfig": kubeconfig}


def _client(name, ca, common_name, organizations, kubeconfig_file, server, cluster, user, base=CLIENT_DIR,
            embed=True):
    kubeconfig = {"dest": "%s/%s" % (KUBECONFIG_DIR, kubeconfig_file), "server": server, "cluster_name": cluster,
                  "user_name": user, "embed_client": embed}
    return _spec(name, ca, "%s/%s.key" % (base, name), "%s/%s.crt" % (base, name), common_name, "client",
                 organizations, kubeconfig=kubeconfig)


def _split_sans(values):
    dns, ips = [], []
    for value in values:
        value = str(value).strip()
        if value:
            (ips if _is_ip(value) else dns).append(value)
    return dns, ips


def _unique(values):
    seen, out = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def host_certificates(host, address, control_planes, nodes, settings):
    """Every certificate ``host`` holds, in a stable order.

    ``settings``: cluster_name, service_cidr, cluster_domain, api_endpoint (``host:port`` or empty),
    apiserver_port, apiserver_extra_sans (list), admin_group.
    """
    cluster = settings["cluster_name"]
    port = settings["apiserver_port"]
    endpoint = settings.get("api_endpoint") or ""
    is_cp = host in control_planes
    own_api = url(address, port)
    # what kubelet and kube-proxy talk to: the external endpoint, the node's own API server, or
    # (nodes that are not control planes) the local load balancer on 127.0.0.1
    node_api = "https://" + endpoint if endpoint else (own_api if is_cp else url("127.0.0.1", port))
    admin_api = "https://" + endpoint if endpoint else own_api
    specs = []
    if is_cp:
        domain = settings["cluster_domain"]
        names = [host, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc." + domain, "localhost", address,
                 network.service_ip(settings["service_cidr"]), "127.0.0.1"]
        extra = settings.get("apiserver_extra_sans") or []
        # -e pki_apiserver_extra_sans=a,b arrives as one string
        names += extra.split(",") if isinstance(extra, str) else list(extra)
        if endpoint:
            names.append(_endpoint_host(endpoint))
        dns, ips = _split_sans(names)
        specs.append(_spec("apiserver", "kubernetes", PKI_DIR + "/apiserver.key", PKI_DIR + "/apiserver.crt",
                           "kube-apiserver", "server", dns=_unique(dns), ips=_unique(ips)))
        specs.append(_spec("apiserver-kubelet-client", "kubernetes", PKI_DIR + "/apiserver-kubelet-client.key",
                           PKI_DIR + "/apiserver-kubelet-client.crt", "kube-apiserver-kubelet-client", "client",
                           [settings.get("admin_group") or ADMIN_GROUP]))
        specs.append(_spec("front-proxy-client", "front-proxy", PKI_DIR + "/front-proxy-client.key",
                           PKI_DIR + "/front-proxy-client.crt", "front-proxy-client", "client"))
        specs.append(_client("admin", "kubernetes", "kubernetes-admin", [settings.get("admin_group") or ADMIN_GROUP],
                             "admin.conf", admin_api, cluster, "kubernetes-admin"))
        if host == control_planes[0]:
            specs.append(_client("super-admin", "kubernetes", "kubernetes-super-admin", ["system:masters"],
                                 "super-admin.conf", own_api, cluster, "kubernetes-super-admin"))
        specs.append(_client("controller-manager", "kubernetes", "system:kube-controller-manager", [],
                             "controller-manager.conf", own_api, cluster, "system:kube-controller-manager"))
        specs.append(_client("scheduler", "kubernetes", "system:kube-scheduler", [],
                             "scheduler.conf", own_api, cluster, "system:kube-scheduler"))
    if is_cp or host in nodes:
        # the kubelet's client certificate is referenced by path, so a renewal rewrites only the files
        specs.append(_client("kubelet-client", "kubernetes", "system:node:" + host, ["system:nodes"],
                             "kubelet.conf", node_api, cluster, "system:node:" + host, base=KUBELET_PKI_DIR,
                             embed=False))
        dns, ips = _split_sans([host, address])
        specs.append(_spec("kubelet", "kubernetes", KUBELET_PKI_DIR + "/kubelet.key", KUBELET_PKI_DIR + "/kubelet.crt",
                           "system:node:" + host, "server", ["system:nodes"], dns=_unique(dns), ips=_unique(ips)))
        specs.append(_client("kube-proxy", "kubernetes", "system:kube-proxy", [], "kube-proxy.conf", node_api,
                             cluster, "system:kube-proxy"))
    return specs


def etcd_sans(host, member_name, address, extra_sans=()):
    """(dns, ips) of a member's server and peer certificates: its names, its address, loopback."""
    names = [host, member_name, "localhost", address, "127.0.0.1", "::1"]
    # -e etcd_cert_extra_sans=a,b arrives as one string
    names += extra_sans.split(",") if isinstance(extra_sans, str) else list(extra_sans or ())
    dns, ips = _split_sans(names)
    return _unique(dns), _unique(ips)


def etcd_certificates(host, is_member, is_control_plane, member_name=None, address=None, extra_sans=()):
    """The etcd CA's certificates ``host`` holds, in a stable order.

    Each entry has the fields of the cluster catalogue plus ``path`` (below PKI_DIR, no suffix)
    and ``owner`` (etcd for the files the etcd server reads).
    """
    dns, ips = etcd_sans(host, member_name or host, address or host, extra_sans) if is_member else ([], [])
    specs = []
    for name, path, common_name, usage, member, owner in ETCD_CERTIFICATES:
        if not (is_member if member else is_control_plane):
            continue
        base = "%s/%s" % (PKI_DIR, path)
        entry = _spec(name, "etcd", base + ".key", base + ".crt", common_name, usage,
                      dns=dns if usage != "client" else (), ips=ips if usage != "client" else ())
        entry.update(path=path, owner=owner)
        specs.append(entry)
    return specs


def read_found(by_host):
    """{host: {file: checksum or None}} and the hosts that could not be asked.

    ``by_host``: {host: what ``ansible.builtin.find`` (paths /etc/kubernetes/pki, patterns the CA
    files, get_checksum) registered there}. A skipped or missing registration means "not asked".
    """
    found, unreachable = {}, []
    for host, reg in by_host.items():
        answer, lost = read_answer(reg, "files")
        if lost:
            unreachable.append(host)
        if answer is None:
            continue
        entry = dict.fromkeys(CA_FILE_NAMES + ROTATION_FILE_NAMES)
        for item in answer.get("files") or []:
            name = str(item.get("path", "")).rsplit("/", 1)[-1]
            if name in entry:
                entry[name] = item.get("checksum") or "present"
        found[host] = entry
    return found, unreachable


def ca_plan(control_planes, play_hosts, found, unreachable=(), rotating=False):
    """Choose the CA host and the control planes that need the CA files.

    ``found``: {host: {file name: sha256}} for the control planes that were asked (a host that was
    not asked is absent). The decision is ``shared_secret.share``'s, as for the etcd CA: the CA
    host is the first control plane holding ``ca.crt``, else any CA file, else the first of the
    run; every control plane is compared. With ``rotating`` (certs.yml moving a CA through its
    rotation), the CA host's files are the ones that count: control planes that differ are not
    refused but receive them all. Returns {"host", "exists": {file: bool}, "files": [what the CA
    host holds], "copy_to": [...], "stale": [rotation files the CA host no longer holds], "errors":
    [...]}.
    """
    errors = [unreachable_error(host, "kube_control_plane", "the cluster CA") for host in unreachable]
    names = CA_FILE_NAMES + ROTATION_FILE_NAMES
    placed = shared_secret.share(
        control_planes, play_hosts, found, names,
        prefer=(lambda files: files.get("ca.crt"), lambda files: any(files.get(n) for n in CA_FILE_NAMES)),
        creators=[h for h in control_planes if h in play_hosts] or list(control_planes),
        required=CA_FILE_NAMES)
    ca_host = placed["host"]
    if ca_host is None:
        raise PKIPlanError("there is no control plane (group kube_control_plane is empty)")
    if not rotating:
        for name, groups in placed["differ"].items():
            held = sorted((h, s) for s, hosts in groups.items() for h in hosts)
            errors.append(
                "%s differs between control planes (%s): they must share one CA. Keep the right one on every "
                "control plane (a CA is never replaced by this collection) and run again; a CA rotation that "
                "stopped half-way leaves them so: run certs.yml -e certs_action=rotate-ca again with the phase "
                "it was at" % (name, ", ".join("%s checksum %s" % (h, s[:12]) for h, s in held)))
        if placed["missing"]:
            errors.append(
                "%s, the control plane holding the cluster CA, lacks %s, which another control plane holds: copy "
                "them to %s under %s (same owner root, keys 0600) or remove them from the others, then run again"
                % (ca_host, ", ".join(placed["missing"]), ca_host, PKI_DIR))
    held = set(placed["held"])
    # a rotation run copies everything the CA host holds to every other control plane of the run
    copy_to = [h for h in control_planes if h != ca_host and h in play_hosts] if rotating else placed["copy_to"]
    return {"host": ca_host, "exists": {name: name in held for name in names},
            "files": [name for name in names if name in held or name in CA_FILE_NAMES],
            "copy_to": copy_to, "stale": [name for name in ROTATION_FILE_NAMES if name not in held],
            "differ": bool(placed["differ"]), "errors": errors}


def batch_requests(specs_by_host, keys_by_host, validity_days, renew_before_days):
    """``certificate_batch`` requests per CA, from every host's specs and its key results.

    ``keys_by_host``: {host: {cert name: {"public_key", "certificate"}}} (what private_key returned).
    Days may be fractional (``0.01``); whole days stay integers.
    """
    out = {name: [] for name in SIGNERS}
    for host in specs_by_host:
        keys = keys_by_host.get(host) or {}
        for spec in specs_by_host[host]:
            key = keys.get(spec["name"])
            if key is None:
                continue
            request = {"id": "%s/%s" % (host, spec["name"]), "common_name": spec["common_name"],
                       "organizations": spec["organizations"], "usage": spec["usage"],
                       "public_key": key.get("public_key"), "current_certificate": key.get("certificate"),
                       "validity_days": day_count(validity_days), "renew_before_days": day_count(renew_before_days)}
            if spec["usage"] != "client":
                request["dns_names"] = spec["dns_names"]
                request["ip_addresses"] = spec["ip_addresses"]
            out.setdefault(spec["ca"], []).append(request)
    return out


def _signed_certificates(signed):
    """{request id: {"certificate", "reason", ...}} from what a ``certificate_batch`` task registered:
    one result, or a looped task's (one result per CA); nothing for a skipped or missing one."""
    out = {}
    for result in (signed or {}).get("results") or [signed or {}]:
        if isinstance(result, dict) and not result.get("skipped"):
            out.update(result.get("certificates") or {})
    return out


def issued(host, specs, signed):
    """The certificates of ``specs`` (``host``'s entries of the catalogue) that ``signed`` (what the
    ``certificate_batch`` task registered) holds for ``host``, in the order of ``specs``: each
    {"name", "cert_path", "certificate", "reason"}. A request the batch left alone, or one it would
    issue in check mode (no certificate), is not among them."""
    certificates = _signed_certificates(signed)
    out = []
    for spec in specs:
        entry = certificates.get("%s/%s" % (host, spec["name"])) or {}
        if entry.get("certificate"):
            out.append({"name": spec["name"], "cert_path": spec["cert_path"], "certificate": entry["certificate"],
                        "reason": entry.get("reason") or ""})
    return out


def slurped(read, name):
    """The text of ``name`` from a looped ``ansible.builtin.slurp`` task's registration (the loop's
    items are file names), or None when it was not read (skipped, or not in the loop)."""
    for result in (read or {}).get("results") or []:
        if result.get("item") == name and result.get("content") is not None:
            try:
                return base64.b64decode(result["content"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise PKIPlanError("%s as read: %s" % (name, exc))
    return None


def etcd_outside_files(hosts, ca_read, signed):
    """What the control planes ``hosts`` outside the etcd group receive from the etcd CA host: the CA
    certificate (as its ``slurp`` of ``etcd/ca.crt`` read it, in ``ca_read``) and their
    apiserver-etcd-client certificate when ``signed`` issued it. Each {"host", "dest", "content"},
    host by host, the CA first."""
    ca_cert = slurped(ca_read, ETCD_CA["cert"].rsplit("/", 1)[-1])
    out = []
    for host in hosts:
        if ca_cert is not None:
            out.append({"host": host, "dest": "%s/%s" % (PKI_DIR, ETCD_CA["cert"]), "content": ca_cert})
        for entry in issued(host, etcd_certificates(host, False, True), signed):
            out.append({"host": host, "dest": entry["cert_path"], "content": entry["certificate"]})
    return out
