"""The inventory's component settings (flags, config overrides, feature gates, admission plugins,
extra SANs), checked through the inventory check on plain data (no Ansible)."""

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_check
from ansible_collections.kubeforge.cluster.plugins.module_utils.schemas.kubernetes_programs import PROGRAMS

from test_inventory_check import check, layout


def errors_for(cluster_vars=None, host_vars=None):
    errors, _settings = check(*layout(cluster_vars=cluster_vars, host_vars=host_vars))
    return errors


def test_valid_component_settings_pass():
    assert errors_for({
        "control_plane_apiserver_flags": {"event-ttl": "2h", "max-requests-inflight": 800},
        "control_plane_controller_manager_flags": {"node-monitor-grace-period": "50s"},
        "control_plane_feature_gates": {"APIResponseCompression": True},
        "control_plane_admission_plugins": ["NodeRestriction", "AlwaysPullImages"],
        "control_plane_pod_security": {"enforce": "restricted", "exempt_namespaces": ["kube-system"]},
        "node_kubelet_config": {"maxPods": 200, "evictionHard": {"memory.available": "200Mi"}},
        "node_kube_proxy_config": {"mode": "nftables"},
        "pki_apiserver_extra_sans": ["api.example.com", "*.api.example.com", "192.0.2.100", "2001:db8::1"],
    }) == []


@pytest.mark.parametrize("cluster_vars, expected", [
    ({"control_plane_apiserver_flags": {"anonymous-auth": False, "profilng": False}},
     "control_plane_apiserver_flags.profilng: is not a flag of kube-apiserver 1.36.4; did you mean --profiling?"),
    ({"node_kubelet_flags": {"--max-pod": 10}},
     "node_kubelet_flags.max-pod: is not a flag of kubelet 1.36.4"),
    ({"control_plane_apiserver_flags": {"enable-admission-plugins": "AlwaysPullImages"}},
     "control_plane_apiserver_flags.enable-admission-plugins: is set by the role from control_plane_admission_plugins"),
    ({"node_kubelet_config": {"readOnlyPrt": 0}},
     "unknown field .readOnlyPrt; did you mean readOnlyPort?"),
    ({"node_kube_proxy_config": {"conntrack": {"maxPerCor": 0}}},
     "unknown field .conntrack.maxPerCor; did you mean maxPerCore?"),
    ({"node_kubelet_config": {"maxPods": "many"}}, ".maxPods must be an integer, got 'many'"),
    ({"control_plane_feature_gates": {"APIResponseCompresion": True}},
     "control_plane_feature_gates.APIResponseCompresion: is not a feature gate of Kubernetes 1.36.4; "
     "did you mean APIResponseCompression?"),
    ({"node_kubelet_config": {"featureGates": {"NoSuchGate": True}}},
     "node_kubelet_config.featureGates.NoSuchGate: is not a feature gate of Kubernetes 1.36.4"),
    ({"control_plane_feature_gates": {"APIResponseCompression": "yes"}}, "'yes' is not true or false"),
    ({"control_plane_admission_plugins": ["NodeRestriction", "AlwaysAdmit"]},
     "AlwaysAdmit admits every request"),
    ({"control_plane_admission_plugins": ["PodSecurityPolicy"]}, "PodSecurityPolicy was removed in Kubernetes 1.25"),
    ({"control_plane_admission_plugins": ["NodeRestrictoin"]},
     "'NodeRestrictoin' is not an admission plugin of kube-apiserver 1.36.4; did you mean NodeRestriction"),
    ({"control_plane_apiserver_flags": {"disable-admission-plugins": ["PodSecurity"]}},
     "control_plane_apiserver_flags.disable-admission-plugins: turns PodSecurity admission off"),
    ({"control_plane_pod_security": {"enforce": "strict"}},
     "control_plane_pod_security.enforce: 'strict' is not a Pod Security level"),
    ({"pki_apiserver_extra_sans": ["api.example.com", "api_example.com"]},
     "'api_example.com' is neither an IP address nor a lowercase DNS name"),
    ({"pki_apiserver_extra_sans": ["10.0.0.256"]}, "'10.0.0.256' is neither an IP address nor a lowercase DNS name"),
])
def test_a_bad_component_setting_is_named(cluster_vars, expected):
    errors = errors_for(cluster_vars)
    assert any(expected in e for e in errors), errors
    assert len(errors) == 1, errors


def test_every_problem_is_reported_at_once_with_the_hosts():
    errors = errors_for({"control_plane_apiserver_flags": {"profilng": False}},
                        host_vars={"worker1": {"node_kubelet_config": {"readOnlyPrt": 0}},
                                   "worker2": {"node_kubelet_config": {"readOnlyPrt": 0}}})
    assert len(errors) == 2, errors
    assert any("node_kubelet_config (on worker1, worker2)" in e for e in errors)


def test_a_flag_the_docs_lack_passes_when_the_program_has_it():
    program_only = sorted(set(PROGRAMS["1.36"]["flags"]["kube-apiserver"])
                          - set(component_check.flags.FLAGS["kube-apiserver"]))
    if not program_only:
        pytest.skip("the documented list has every flag of the 1.36 program")
    flag = next(f for f in program_only if f not in component_check.OWNED_FLAGS["kube-apiserver"])
    assert errors_for({"control_plane_apiserver_flags": {flag: "x"}}) == []


def test_allow_unknown_lets_a_flag_through():
    assert errors_for({"control_plane_apiserver_flags": {"brand-new-flag": 1},
                       "control_plane_flags_allow_unknown": ["brand-new-flag"]}) == []


def test_a_minor_without_program_facts_uses_the_documented_flags():
    assert component_check.programs("1.30.1") is None
    assert component_check.programs("v1.36.4")["release"] == "1.36.4"
