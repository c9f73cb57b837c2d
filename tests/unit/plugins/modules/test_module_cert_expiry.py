# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The cert_expiry module as Ansible runs it (arguments, result, failure message), and the
certificate modules with validity and renewal windows in fractions of a day."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import pki_catalog  # noqa: E402
from ansible_collections.kubeforge.cluster.plugins.modules import (  # noqa: E402
    cert_expiry,
    certificate,
    certificate_batch,
    private_key,
)


def test_a_host_outside_the_cluster_holds_nothing():
    result = run_module(cert_expiry, {"host": "stranger", "control_planes": ["cp1"], "nodes": ["w1"]})
    assert not result.get("failed"), result
    assert result["changed"] is False and result["host"] == "stranger"
    assert result["rows"] == [] and result["failing"] == [] and result["restart"] == []
    assert result["threshold_seconds"] == 7 * 86400


def test_rows_of_a_node_name_the_catalogue_paths():
    # nothing of the cluster on the machine running the tests: every file is reported missing
    result = run_module(cert_expiry, {"host": "w1", "control_planes": ["cp1"], "nodes": ["w1"], "services": False,
                                      "fail_within": "90m"}, check_mode=True)
    assert not result.get("failed"), result
    paths = [row["path"] for row in result["rows"]]
    assert paths == [pki_catalog.PKI_DIR + "/ca.crt", pki_catalog.KUBELET_PKI_DIR + "/kubelet-client.crt",
                     pki_catalog.KUBECONFIG_DIR + "/kubelet.conf", pki_catalog.KUBELET_PKI_DIR + "/kubelet.crt",
                     pki_catalog.KUBECONFIG_DIR + "/kube-proxy.conf"]
    if not any(os.path.exists(path) for path in paths):
        assert {row["status"] for row in result["rows"]} == {"missing"}
        assert len(result["failing"]) == 5
    assert result["threshold_seconds"] == 5400 and result["services"] == []


def test_a_bad_threshold_fails_naming_it():
    result = run_module(cert_expiry, {"host": "w1", "nodes": ["w1"], "fail_within": "a week"})
    assert result["failed"] is True
    assert result["msg"].startswith("fail_within: 'a week' is not a duration (use days, hours and minutes")


def test_certificate_modules_take_fractional_days(tmp_path):
    ca = dict(path=str(tmp_path / "ca.crt"), key_path=str(tmp_path / "ca.key"), common_name="kubernetes-ca",
              usage="ca")
    assert run_module(certificate, ca)["changed"] is True
    leaf = run_module(certificate, dict(path=str(tmp_path / "leaf.crt"), key_path=str(tmp_path / "leaf.key"),
                                        common_name="leaf", usage="client", ca_cert_path=ca["path"],
                                        ca_key_path=ca["key_path"], validity_days="0.01", renew_before_days=0.005))
    assert leaf["changed"] is True, leaf
    key = run_module(private_key, dict(path=str(tmp_path / "node.key"), cert_path=str(tmp_path / "node.crt")))
    request = {"id": "w1/kubelet", "public_key": key["public_key"], "common_name": "system:node:w1",
               "usage": "server", "dns_names": ["w1"], "validity_days": 0.01, "renew_before_days": "0.005"}
    signed = run_module(certificate_batch, dict(ca_cert_path=ca["path"], ca_key_path=ca["key_path"],
                                                requests=[request]))
    assert not signed.get("failed"), signed
    assert signed["certificates"]["w1/kubelet"]["reason"] == "no current certificate"
    request["current_certificate"] = signed["certificates"]["w1/kubelet"]["certificate"]
    again = run_module(certificate_batch, dict(ca_cert_path=ca["path"], ca_key_path=ca["key_path"],
                                               requests=[request]))
    assert again["changed"] is False and again["unchanged"] == ["w1/kubelet"]
    refused = run_module(certificate_batch, dict(ca_cert_path=ca["path"], ca_key_path=ca["key_path"],
                                                 requests=[dict(request, renew_before_days=0.01)]))
    assert refused["failed"] is True
    assert "renew_before_days (0.01) must be smaller than validity_days (0.01)" in refused["msg"]
