# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/kubeconfig.py: build, normalise, compare by meaning, summarise without keys."""

from __future__ import annotations

import base64

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import kubeconfig, pki

CA_PEM = b'-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n'
CERT_PEM = b'-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n'
KEY_PEM = b'-----BEGIN EC PRIVATE KEY-----\nMHckey\n-----END EC PRIVATE KEY-----\n'


def doc(**changes):
    args = dict(cluster_name='kubernetes', server='https://192.0.2.10:6443', ca_pem=CA_PEM,
                user_name='kubernetes-admin', context_name='kubernetes-admin@kubernetes',
                client_cert_pem=CERT_PEM, client_key_pem=KEY_PEM)
    args.update(changes)
    return kubeconfig.build(**args)


def test_rendered_kubeconfig_reads_back_the_same():
    wanted = doc()
    text = kubeconfig.render(wanted)
    assert yaml.safe_load(text) == wanted
    assert text.splitlines()[0] == 'apiVersion: v1'
    assert 'current-context: kubernetes-admin@kubernetes' in text
    assert kubeconfig.render(doc()) == text


def test_layout_does_not_count_but_meaning_does():
    wanted = doc()
    other_layout = yaml.safe_load(kubeconfig.render(wanted))
    # Another tool wraps base64 differently, orders keys differently and adds empty preferences.
    user = other_layout['users'][0]['user']
    data = user['client-certificate-data']
    user['client-certificate-data'] = '\n'.join(data[i:i + 8] for i in range(0, len(data), 8))
    rewritten = yaml.safe_load(yaml.safe_dump(other_layout, default_flow_style=True, sort_keys=False))
    assert kubeconfig.normalize(rewritten) == kubeconfig.normalize(wanted)
    assert kubeconfig.normalize(doc(server='https://192.0.2.11:6443')) != kubeconfig.normalize(wanted)
    assert kubeconfig.normalize(doc(ca_pem=CA_PEM + b'\n')) != kubeconfig.normalize(wanted)


def test_referenced_client_files():
    wanted = kubeconfig.build('kubernetes', 'https://localhost:6443', CA_PEM, 'default-auth', 'default-auth@kubernetes',
                              client_cert_path='/var/lib/kubelet/pki/kubelet-client-current.pem',
                              client_key_path='/var/lib/kubelet/pki/kubelet-client-current.pem')
    user = wanted['users'][0]['user']
    assert user == {'client-certificate': '/var/lib/kubelet/pki/kubelet-client-current.pem',
                    'client-key': '/var/lib/kubelet/pki/kubelet-client-current.pem'}


def test_summary_never_holds_the_key(tmp_path):
    key = pki.generate_private_key('ecdsa-p256')
    ca_key = pki.generate_private_key('ecdsa-p256')
    ca_cert = pki.build_certificate(pki.Request('kubernetes-ca', usage='ca'), ca_key.public_key(), ca_key)
    cert = pki.build_certificate(pki.Request('kubernetes-admin', organizations=['kubeadm:cluster-admins']),
                                 key.public_key(), ca_key, ca_cert)
    wanted = doc(ca_pem=pki.certificate_pem(ca_cert), client_cert_pem=pki.certificate_pem(cert),
                 client_key_pem=pki.private_key_pem(key))
    summary = kubeconfig.summary(wanted)
    assert summary['server'] == 'https://192.0.2.10:6443'
    assert summary['client_certificate']['subject'] == 'CN=kubernetes-admin,O=kubeadm:cluster-admins'
    assert summary['client_certificate']['fingerprint'] == pki.fingerprint(cert)
    text = repr(summary)
    assert 'PRIVATE' not in text
    assert base64.b64encode(pki.private_key_pem(key)).decode()[:30] not in text


def test_server_must_be_a_url(tmp_path):
    with pytest.raises(kubeconfig.KubeconfigError, match='is not a URL'):
        kubeconfig.plan_kubeconfig(str(tmp_path / 'x.conf'), 'k', '192.0.2.1:6443', '/nonexistent', 'u', 'c', 'k')
