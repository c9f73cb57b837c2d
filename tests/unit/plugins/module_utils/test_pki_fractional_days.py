# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Validity and renewal windows in fractions of a day (pki_cert_validity_days=0.01 is about 14
minutes, for tests of renewal), with whole days working as before."""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki, pki_catalog

NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("value, expected", [
    (365, 365), ("365", 365), (365.0, 365), ("30", 30), (0, 0), ("0.01", 0.01), (0.005, 0.005), (" 1.5 ", 1.5),
])
def test_day_count(value, expected):
    found = pki.day_count(value)
    assert found == expected and type(found) is type(expected)


@pytest.mark.parametrize("value", [True, "abc", "", "inf", "nan", None, [1]])
def test_day_count_refuses(value):
    with pytest.raises((TypeError, ValueError)):
        pki.day_count(value)


def test_request_takes_fractional_days():
    request = pki.Request("leaf", usage="server", validity_days="0.01", renew_before_days=0.005)
    assert request.validity_days == 0.01 and request.renew_before_days == 0.005
    whole = pki.Request("leaf", usage="server", validity_days="365", renew_before_days="30")
    assert whole.validity_days == 365 and isinstance(whole.validity_days, int)


@pytest.mark.parametrize("validity, renew, message", [
    (0, 0, "validity_days must be more than 0, got 0"),
    (0.01, -0.001, "renew_before_days must not be negative, got -0.001"),
    (0.01, 0.01, "renew_before_days (0.01) must be smaller than validity_days (0.01)"),
    ("soon", 1, "validity_days and renew_before_days must be numbers of days, got 'soon' and 1"),
])
def test_request_refuses_bad_lifetimes(validity, renew, message):
    with pytest.raises(pki.PKIError) as exc:
        pki.Request("leaf", usage="server", validity_days=validity, renew_before_days=renew, what="leaf.crt")
    assert message in str(exc.value)


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.build_certificate(pki.Request("kubernetes-ca", usage="ca"), key.public_key(), key, None, NOW)
    return cert, key


def test_certificate_of_minutes_is_renewed_inside_its_window():
    ca_cert, ca_key = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    request = pki.Request("leaf", usage="server", validity_days=0.01, renew_before_days=0.005)
    cert = pki.build_certificate(request, key.public_key(), ca_key, ca_cert, NOW)
    assert pki.not_after(cert) - NOW == datetime.timedelta(seconds=864)
    later = NOW + datetime.timedelta(minutes=5)  # 9.4 minutes left, window 7.2 minutes
    assert pki.compare(cert, request, key.public_key(), ca_cert, later) == []
    later = NOW + datetime.timedelta(minutes=10)  # 4.4 minutes left
    assert pki.compare(cert, request, key.public_key(), ca_cert, later) == ["expires in 4 minutes (renew_before 0.005)"]
    whole = pki.Request("leaf", usage="server", validity_days=365, renew_before_days=30)
    long_cert = pki.build_certificate(whole, key.public_key(), ca_key, ca_cert, NOW)
    assert pki.compare(long_cert, whole, key.public_key(), ca_cert, NOW + datetime.timedelta(days=340)) == \
        ["expires in 25 days (renew_before 30)"]


def test_batch_with_fractional_days():
    ca_cert, ca_key = make_ca()

    class FakeCA:
        cert = ca_cert

        @staticmethod
        def issue(request, public_key, now=None):
            return pki.build_certificate(request, public_key, ca_key, ca_cert, now)

    key = ec.generate_private_key(ec.SECP256R1())
    entry = {"id": "w1/kubelet", "common_name": "system:node:w1", "usage": "server", "dns_names": ["w1"],
             "public_key": pki.public_key_pem(key).decode(), "current_certificate": None,
             "validity_days": 0.01, "renew_before_days": 0.005}
    issued, unchanged, errors = pki.issue_batch(FakeCA, [entry], now=NOW)
    assert errors == [] and unchanged == []
    assert issued["w1/kubelet"]["not_after"] == "2030-06-01T12:14:24Z"
    entry["current_certificate"] = issued["w1/kubelet"]["certificate"]
    assert pki.issue_batch(FakeCA, [entry], now=NOW + datetime.timedelta(minutes=5))[1] == ["w1/kubelet"]
    renewed, _unchanged, _errors = pki.issue_batch(FakeCA, [entry], now=NOW + datetime.timedelta(minutes=8))
    assert renewed["w1/kubelet"]["reason"] == "expires in 6 minutes (renew_before 0.005)"


def test_batch_requests_keep_whole_days_and_fractions():
    specs = {"w1": pki_catalog.host_certificates("w1", "192.0.2.21", ["cp1"], ["w1"], {
        "cluster_name": "c", "service_cidr": "10.233.0.0/18", "cluster_domain": "cluster.local",
        "api_endpoint": "", "apiserver_port": 6443})}
    keys = {"w1": {spec["name"]: {"public_key": "PUB", "certificate": None} for spec in specs["w1"]}}
    whole = pki_catalog.batch_requests(specs, keys, "365", 30)["kubernetes"]
    assert {(r["validity_days"], r["renew_before_days"]) for r in whole} == {(365, 30)}
    assert all(isinstance(r["validity_days"], int) for r in whole)
    fraction = pki_catalog.batch_requests(specs, keys, "0.01", 0.005)["kubernetes"]
    assert {(r["validity_days"], r["renew_before_days"]) for r in fraction} == {(0.01, 0.005)}
