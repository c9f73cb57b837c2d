# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/component_config.py: merging, validation against the schema data, rendering."""

from __future__ import annotations

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'unit', 'plugins', 'modules'))

from realistic_configs import CASES, CONTAINERD_1, CONTAINERD_2, ETCD_35, KUBE_SCHEDULER, KUBELET  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.module_utils import component_config as cc  # noqa: E402

UPSTREAM = os.path.join(ROOT, 'tests', 'data', 'upstream')
SCHEMA_DIR = os.path.join(ROOT, 'plugins', 'module_utils', 'schemas')


def errors_of(kind, config, **extra):
    with pytest.raises(cc.ConfigError) as err:
        cc.prepare(kind, config, **extra)
    return err.value.errors


def with_changes(base, **changes):
    out = copy.deepcopy(base)
    out.update(changes)
    return out


# --------------------------------------------------------------------------- realistic configs

@pytest.mark.parametrize('kind, config, extra', CASES, ids=['%s-%s' % (c[0], '-'.join(c[2].values())) for c in CASES])
def test_realistic_config_passes_and_reads_back(kind, config, extra):
    prepared = cc.prepare(kind, config, **extra)
    assert prepared.warnings == []
    if kind == 'containerd':
        back = tomllib.loads(prepared.content)
        expected_version = 3 if extra['containerd_version'].startswith('2.') else 2
        assert back == dict(config, version=expected_version)
    else:
        back = yaml.safe_load(prepared.content)
        if kind == 'etcd':
            assert back == config
        else:
            schema = cc.KUBERNETES_KINDS[kind]
            assert back == dict(config, apiVersion=schema['apiVersion'], kind=kind)
            assert prepared.content.splitlines()[1:3] == ['apiVersion: %s' % schema['apiVersion'], 'kind: %s' % kind]
    assert cc.prepare(kind, copy.deepcopy(config), **extra).content == prepared.content


# --------------------------------------------------------------------------- errors

def test_the_two_documented_messages():
    errors = errors_of('KubeletConfiguration', with_changes(KUBELET, cgroupDrivr='systemd', maxPods='many'))
    assert 'KubeletConfiguration: unknown field .cgroupDrivr; did you mean cgroupDriver?' in errors
    assert "KubeletConfiguration: .maxPods must be an integer, got 'many'" in errors
    assert len(errors) == 2


def test_nested_typos_and_types_report_their_path():
    config = copy.deepcopy(KUBELET)
    config['authentication']['webhook']['cacheTT'] = '2m'
    config['authorization']['webhook']['cacheAuthorizedTTL'] = 300
    config['registerWithTaints'][0]['effect'] = 'NoSchedul'
    config['shutdownGracePeriodByPodPriority'][0]['priorty'] = 1
    config['logging']['verbosity'] = -1
    config['evictionHard'] = ['memory.available<100Mi']
    errors = errors_of('KubeletConfiguration', config)
    assert errors == [
        'KubeletConfiguration: unknown field .authentication.webhook.cacheTT; did you mean cacheTTL?',
        'KubeletConfiguration: .authorization.webhook.cacheAuthorizedTTL must be a duration string such as "10s" '
        'or "1m30s", got 300',
        'KubeletConfiguration: .evictionHard must be a mapping, got a list',
        'KubeletConfiguration: .logging.verbosity must be an integer from 0 to 4294967295 (uint32), got -1',
        'KubeletConfiguration: .registerWithTaints[0].effect must be one of NoSchedule, PreferNoSchedule, NoExecute, '
        "got 'NoSchedul'; did you mean NoSchedule or PreferNoSchedule?",
        'KubeletConfiguration: unknown field .shutdownGracePeriodByPodPriority[0].priorty; did you mean priority?',
    ]


@pytest.mark.parametrize('kind, mutate, expected', [
    ('KubeProxyConfiguration', lambda c: c['conntrack'].update(maxPerCor=1),
     'KubeProxyConfiguration: unknown field .conntrack.maxPerCor; did you mean maxPerCore?'),
    ('KubeProxyConfiguration', lambda c: c.update(mode=3), 'KubeProxyConfiguration: .mode must be a string, got 3'),
    ('KubeSchedulerConfiguration', lambda c: c['profiles'][0]['pluginConfig'][0]['args']['scoringStrategy'].update(
        resources=[{'name': 'cpu', 'wieght': 1}]),
     'KubeSchedulerConfiguration: unknown field .profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].wieght; '
     'did you mean weight?'),
    ('KubeSchedulerConfiguration', lambda c: c['profiles'][0]['plugins'].update(scores={}),
     'KubeSchedulerConfiguration: unknown field .profiles[0].plugins.scores; did you mean score'),
    ('EncryptionConfiguration', lambda c: c['resources'][0]['providers'].insert(0, {'aesgcn': {}}),
     'EncryptionConfiguration: unknown field .resources[0].providers[0].aesgcn; did you mean aesgcm'),
    ('Policy', lambda c: c['rules'][0].update(user=['x']), 'Policy: unknown field .rules[0].user; did you mean users'),
    ('AdmissionConfiguration', lambda c: c['plugins'][1].update(paht='/x'),
     'AdmissionConfiguration: unknown field .plugins[1].paht; did you mean path?'),
    ('AuthenticationConfiguration', lambda c: c['jwt'][0]['issuer'].update(audiences='kubernetes'),
     "AuthenticationConfiguration: .jwt[0].issuer.audiences must be a list, got 'kubernetes'"),
    ('AuthorizationConfiguration', lambda c: c['authorizers'][2]['webhook'].update(timeout='3 seconds'),
     'AuthorizationConfiguration: .authorizers[2].webhook.timeout must be a duration string'),
])
def test_each_kind_rejects_typos_and_wrong_types(kind, mutate, expected):
    base = dict((c[0], c[1]) for c in CASES)[kind]
    config = copy.deepcopy(base)
    mutate(config)
    errors = errors_of(kind, config)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_scheduler_plugin_args_are_checked_by_plugin_name_and_kind():
    config = copy.deepcopy(KUBE_SCHEDULER)
    config['profiles'][0]['pluginConfig'][1]['args']['defaultingTyp'] = 'List'
    config['profiles'][0]['pluginConfig'][2]['args']['filterTimeout'] = 10
    config['profiles'][0]['pluginConfig'].append({'name': 'SomeOutOfTreePlugin', 'args': {'anything': [1, 2]}})
    errors = errors_of('KubeSchedulerConfiguration', config)
    assert errors == [
        'KubeSchedulerConfiguration: unknown field .profiles[0].pluginConfig[1].args.defaultingTyp; '
        'did you mean defaultingType?',
        'KubeSchedulerConfiguration: .profiles[0].pluginConfig[2].args.filterTimeout must be a duration string '
        'such as "10s" or "1m30s", got 10',
    ]


def test_all_errors_at_once_across_the_document():
    config = with_changes(KUBELET, maxPod=1, port='10250/tcp', clusterDNS='10.96.0.10', featureGates={'A': 'enabled'})
    errors = errors_of('KubeletConfiguration', config)
    assert len(errors) == 4


def test_text_that_spells_a_number_or_boolean_is_converted():
    # ansible-core before 2.19 renders "{{ max_pods }}" as the text "110".
    config = with_changes(KUBELET, maxPods='110', port='+10250', featureGates={'A': 'True', 'B': 'false'},
                          memoryThrottlingFactor='0.9', serializeImagePulls='no')
    config['logging'] = dict(config['logging'], flushFrequency='5000000000')
    back = yaml.safe_load(cc.prepare('KubeletConfiguration', config).content)
    assert back['maxPods'] == 110 and back['port'] == 10250 and back['featureGates'] == {'A': True, 'B': False}
    assert back['memoryThrottlingFactor'] == 0.9 and back['serializeImagePulls'] is False
    assert back['logging']['flushFrequency'] == 5000000000
    assert back['clusterDNS'] == ['10.96.0.10'] and back['cgroupDriver'] == 'systemd'
    etcd = yaml.safe_load(cc.prepare('etcd', with_changes(ETCD_35, **{'snapshot-count': '5000'}), etcd_version='3.5').content)
    assert etcd['snapshot-count'] == 5000 and etcd['auto-compaction-retention'] == '8'


def test_api_version_and_kind_are_the_modules():
    config = with_changes(KUBELET, apiVersion='kubelet.config.k8s.io/v1beta1', kind='KubeletConfiguration')
    prepared = cc.prepare('KubeletConfiguration', config)
    assert yaml.safe_load(prepared.content)['kind'] == 'KubeletConfiguration'
    errors = errors_of('KubeletConfiguration', with_changes(KUBELET, apiVersion='kubelet.config.k8s.io/v1'))
    assert errors == ["KubeletConfiguration: .apiVersion is 'kubelet.config.k8s.io/v1', but this module writes "
                      "apiVersion 'kubelet.config.k8s.io/v1beta1' (leave it out; it is set for you)"]


def test_fields_of_newer_releases_from_the_supplement():
    config = with_changes(KUBELET, crashLoopBackOff={'maxContainerRestartPeriod': '30s'},
                          imagePullCredentialsVerificationPolicy='NeverVerifyPreloadedImages',
                          mergeDefaultEvictionSettings=True, userNamespaces={'idsPerPod': 65536},
                          singleProcessOOMKill=False)
    assert cc.prepare('KubeletConfiguration', config).warnings == []
    errors = errors_of('KubeletConfiguration', with_changes(KUBELET, userNamespaces={'idsPerPod': '64k'}))
    assert errors == ["KubeletConfiguration: .userNamespaces.idsPerPod must be an integer, got '64k'"]


# --------------------------------------------------------------------------- allow_unknown

def test_allow_unknown_turns_a_failure_into_a_warning():
    config = with_changes(KUBELET, futureField={'a': 1})
    assert errors_of('KubeletConfiguration', config) == [
        'KubeletConfiguration: unknown field .futureField']
    prepared = cc.prepare('KubeletConfiguration', config, allow_unknown=['futureField'])
    assert prepared.warnings == [
        'KubeletConfiguration: unknown field .futureField (passed: allow_unknown lists futureField)']
    assert yaml.safe_load(prepared.content)['futureField'] == {'a': 1}


def test_allow_unknown_covers_a_subtree_and_ignores_list_indices():
    config = copy.deepcopy(KUBE_SCHEDULER)
    config['profiles'][0]['plugins']['placementScoreX'] = {}
    config['profiles'][0]['pluginConfig'][0]['args']['newArg'] = 1
    prepared = cc.prepare('KubeSchedulerConfiguration', config,
                          allow_unknown=['.profiles[*].plugins', 'profiles[0].pluginConfig.args'])
    assert len(prepared.warnings) == 2


def test_unused_allow_unknown_entries_are_reported():
    prepared = cc.prepare('KubeletConfiguration', KUBELET, allow_unknown=['noSuchField'])
    assert prepared.warnings == ['KubeletConfiguration: allow_unknown entries matched nothing: noSuchField']


def test_parse_path():
    assert cc.parse_path('plugins."io.containerd.cri.v1.runtime".containerd') == [
        'plugins', 'io.containerd.cri.v1.runtime', 'containerd']
    assert cc.parse_path('.profiles[0].pluginConfig[*].args') == ['profiles', 'pluginConfig', 'args']
    assert cc.format_path(['plugins', 'io.containerd.grpc.v1.cri', 'cni']) == '.plugins."io.containerd.grpc.v1.cri".cni'


# --------------------------------------------------------------------------- containerd

def test_containerd_config_version_follows_the_release():
    assert tomllib.loads(cc.prepare('containerd', CONTAINERD_1, containerd_version='1.7.24').content)['version'] == 2
    assert tomllib.loads(cc.prepare('containerd', CONTAINERD_2, containerd_version='2.1.9').content)['version'] == 3
    errors = errors_of('containerd', with_changes(CONTAINERD_2, version=2), containerd_version='2.1.9')
    assert errors[0].startswith('containerd: .version is 2, but containerd 2.1.9 reads config version 3')
    assert errors_of('containerd', CONTAINERD_2, containerd_version='1.4.0')[0].startswith(
        'containerd: version 1.4.0 is not supported')


def test_containerd_keys_are_checked_against_the_version():
    errors = errors_of('containerd', CONTAINERD_1, containerd_version='2.1.9')
    assert ('containerd: unknown field .plugins."io.containerd.grpc.v1.cri".sandbox_image; in config version 3 it '
            'is .plugins."io.containerd.cri.v1.images".pinned_images.sandbox') in errors
    assert ('containerd: unknown field .plugins."io.containerd.grpc.v1.cri".containerd; that is a config version 2 '
            'key (containerd 1.x), this file is config version 3') in errors
    config = copy.deepcopy(CONTAINERD_2)
    config['plugins']['io.containerd.cri.v1.runtime']['containerd']['runtimes']['runc']['options']['SystemdCgroup'] = 'systemd'
    config['grpc']['adress'] = '/run/x.sock'
    config['plugins']['io.containerd.cri.v1.runtim'] = {}
    errors = errors_of('containerd', config, containerd_version='2.1.9')
    assert errors == [
        'containerd: unknown field .grpc.adress; did you mean address or tcp_address?',
        'containerd: .plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options.SystemdCgroup must be '
        "a boolean (true or false), got 'systemd'",
        'containerd: unknown field .plugins."io.containerd.cri.v1.runtim"; did you mean io.containerd.cri.v1.runtime, '
        'io.containerd.cri.v1.images or io.containerd.grpc.v1.cri?',
    ]


def test_containerd_undocumented_plugin_sections_need_allow_unknown():
    config = copy.deepcopy(CONTAINERD_2)
    config['plugins']['io.containerd.nri.v1.nri'] = {'disable': False, 'socket_path': '/var/run/nri/nri.sock'}
    config['plugins']['io.containerd.cri.v1.runtime']['containerd']['runtimes']['kata'] = {
        'runtime_type': 'io.containerd.kata.v2', 'options': {'ConfigPath': '/etc/kata/configuration.toml'}}
    errors = errors_of('containerd', config, containerd_version='2.1.9')
    assert len(errors) == 2
    prepared = cc.prepare('containerd', config, containerd_version='2.1.9', allow_unknown=[
        'plugins."io.containerd.nri.v1.nri"',
        'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata.options.ConfigPath'])
    assert len(prepared.warnings) == 2
    back = tomllib.loads(prepared.content)
    assert back['plugins']['io.containerd.nri.v1.nri']['socket_path'] == '/var/run/nri/nri.sock'
    assert '[plugins."io.containerd.nri.v1.nri"]' in prepared.content


def test_containerd_release_newer_than_the_data_is_validated_with_a_warning():
    prepared = cc.prepare('containerd', CONTAINERD_2, containerd_version='2.9.0')
    assert prepared.warnings == ['containerd: 2.9.0 is newer than the schema data; validated against containerd 2.3']


# --------------------------------------------------------------------------- etcd

def test_etcd_flags_that_live_elsewhere_in_the_file():
    config = with_changes(ETCD_35, **{'cert-file': '/x.crt', 'peer-trusted-ca-file': '/ca.crt',
                                      'client-crl-file': '/crl', 'naem': 'x',
                                      'grpc-keepalive-timeout': '20s', 'auto-compaction-retention': 8})
    errors = errors_of('etcd', config, etcd_version='3.5.16')
    assert sorted(errors) == sorted([
        'etcd: .auto-compaction-retention must be a string, got 8',
        'etcd: .cert-file is the command-line flag --cert-file; in the config file it is .client-transport-security.cert-file',
        'etcd: .client-crl-file is a command-line flag (--client-crl-file) that the config file cannot set; pass it as a flag',
        'etcd: .grpc-keepalive-timeout must be an integer number of nanoseconds: this file is read as JSON, where a '
        "duration is a number (20s is 20000000000); got '20s'",
        'etcd: unknown field .naem; did you mean name?',
        'etcd: .peer-trusted-ca-file is the command-line flag --peer-trusted-ca-file; in the config file it is '
        '.peer-transport-security.trusted-ca-file',
    ])


def test_etcd_versions_differ():
    config = with_changes(ETCD_35, **{'log-format': 'json'})
    assert cc.prepare('etcd', config, etcd_version='3.6.4').warnings == []
    assert errors_of('etcd', config, etcd_version='3.5.16') == ['etcd: unknown field .log-format']
    assert errors_of('etcd', ETCD_35, etcd_version='3.4.23')[0].startswith('etcd: version 3.4.23 is not supported')


def test_every_etcd_file_key_is_a_flag_or_a_section():
    for minor, schema in cc.SCHEMA_ETCD['versions'].items():
        flags = set(schema['flags'])
        extra = set(schema['types']['etcd']) - flags
        assert extra <= {'client-transport-security', 'peer-transport-security', 'socket-options', 'discovery-config',
                         'experimental-snapshot-catch-up-entries'}, (minor, extra)


# --------------------------------------------------------------------------- merging

def test_deep_merge():
    base = {'a': {'b': 1, 'c': [1, 2], 'd': {'e': 1}}, 'f': 'x', 'g': 1}
    merged = cc.deep_merge(base, {'a': {'b': 2, 'c': [3], 'd': None}, 'f': None, 'h': {'i': None, 'j': 1}})
    assert merged == {'a': {'b': 2, 'c': [3]}, 'g': 1, 'h': {'j': 1}}
    assert base == {'a': {'b': 1, 'c': [1, 2], 'd': {'e': 1}}, 'f': 'x', 'g': 1}


def test_overrides_apply_before_validation():
    prepared = cc.prepare('KubeletConfiguration', KUBELET, overrides={'maxPods': 250, 'registerWithTaints': None,
                                                                      'evictionHard': {'memory.available': '200Mi'}})
    back = yaml.safe_load(prepared.content)
    assert back['maxPods'] == 250 and 'registerWithTaints' not in back
    assert back['evictionHard'] == {'memory.available': '200Mi', 'nodefs.available': '10%', 'imagefs.available': '15%'}
    assert errors_of('KubeletConfiguration', KUBELET, overrides={'maxPods': 'lots'}) == [
        "KubeletConfiguration: .maxPods must be an integer, got 'lots'"]


def test_secret_masking():
    prepared = cc.prepare('EncryptionConfiguration', dict(
        resources=[{'resources': ['secrets'], 'providers': [{'aescbc': {'keys': [{'name': 'k', 'secret': 'c2VjcmV0'}]}}]}]))
    assert prepared.secrets == ['c2VjcmV0']
    masked = cc.mask_secrets(prepared.content)
    assert 'c2VjcmV0' not in masked and 'secret: <masked sha256:' in masked


# --------------------------------------------------------------------------- generated data

def test_generated_schemas_are_up_to_date():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'hack', 'gen-schemas'), '--check', '--data', UPSTREAM],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_files_name_their_source_and_commit():
    for path in glob.glob(os.path.join(SCHEMA_DIR, '*.py')):
        if path.endswith('__init__.py'):
            continue
        with open(path, encoding='utf-8') as handle:
            head = handle.read(4000)
        if 'Generated by hack/gen-program-facts' in head:
            # read from the built programs' --help: the source is the Go module release
            assert re.search(r'k8s\.io/kubernetes v\d+\.\d+\.\d+', head), path
            continue
        assert 'Generated by hack/gen-schemas' in head
        assert re.search(r'upstream data file [\w.-]+\.json', head), path
        assert re.search(r'@ [0-9a-f]{40}|search index file id \d+', head), path


def test_supplement_entries_name_their_sources():
    with open(os.path.join(SCHEMA_DIR, 'supplement.json'), encoding='utf-8') as handle:
        supplement = json.load(handle)
    for kind in supplement['kubernetes'].values():
        for entry in kind.get('fields', {}).values():
            assert entry['source'] in supplement['sources'] and entry['since']
        for fields in kind.get('type_fields', {}).values():
            for entry in fields.values():
                assert entry['source'] in supplement['sources']
    for source in supplement['sources'].values():
        assert re.fullmatch(r'[0-9a-f]{40}', source['commit']) and source['tag']


def test_upstream_fields_are_all_in_the_schema():
    with open(os.path.join(UPSTREAM, 'config-KubeletConfiguration.json'), encoding='utf-8') as handle:
        upstream = json.load(handle)
    schema = cc.KUBERNETES_KINDS['KubeletConfiguration']['types']['KubeletConfiguration']
    assert set(upstream['fields']) - {'apiVersion', 'kind'} <= set(schema)
