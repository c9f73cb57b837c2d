# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Configurations like those of a kubeadm-built cluster, one per component_config kind.

Shared by the component_config tests (module_utils and module).
"""

from __future__ import annotations

import base64

ENCRYPTION_KEY = base64.b64encode(b'0123456789abcdef0123456789abcdef').decode()

KUBELET = {
    'authentication': {
        'anonymous': {'enabled': False},
        'webhook': {'cacheTTL': '0s', 'enabled': True},
        'x509': {'clientCAFile': '/etc/kubernetes/pki/ca.crt'},
    },
    'authorization': {'mode': 'Webhook', 'webhook': {'cacheAuthorizedTTL': '0s', 'cacheUnauthorizedTTL': '0s'}},
    'cgroupDriver': 'systemd',
    'clusterDNS': ['10.96.0.10'],
    'clusterDomain': 'cluster.local',
    'containerRuntimeEndpoint': 'unix:///run/containerd/containerd.sock',
    'cpuManagerReconcilePeriod': '0s',
    'evictionHard': {'memory.available': '100Mi', 'nodefs.available': '10%', 'imagefs.available': '15%'},
    'evictionPressureTransitionPeriod': '0s',
    'featureGates': {'KubeletSeparateDiskGC': True},
    'fileCheckFrequency': '0s',
    'healthzBindAddress': '127.0.0.1',
    'healthzPort': 10248,
    'httpCheckFrequency': '0s',
    'imageMaximumGCAge': '0s',
    'imageMinimumGCAge': '0s',
    'kubeReserved': {'cpu': '100m', 'memory': '256Mi'},
    'logging': {'flushFrequency': 0, 'options': {'json': {'infoBufferSize': '0'}, 'text': {'infoBufferSize': '0'}},
                'verbosity': 0},
    'maxPods': 110,
    'memorySwap': {},
    'nodeStatusReportFrequency': '0s',
    'nodeStatusUpdateFrequency': '0s',
    'podPidsLimit': 4096,
    'protectKernelDefaults': True,
    'readOnlyPort': 0,
    'registerWithTaints': [{'key': 'node-role.kubernetes.io/control-plane', 'effect': 'NoSchedule'}],
    'resolvConf': '/run/systemd/resolve/resolv.conf',
    'rotateCertificates': True,
    'runtimeRequestTimeout': '0s',
    'serverTLSBootstrap': False,
    'shutdownGracePeriod': '30s',
    'shutdownGracePeriodCriticalPods': '10s',
    'shutdownGracePeriodByPodPriority': [{'priority': 0, 'shutdownGracePeriodSeconds': 30}],
    'staticPodPath': '/etc/kubernetes/manifests',
    'streamingConnectionIdleTimeout': '0s',
    'syncFrequency': '0s',
    'systemReserved': {'cpu': '100m', 'memory': '512Mi', 'ephemeral-storage': '1Gi'},
    'tlsCertFile': '/var/lib/kubelet/pki/kubelet.crt',
    'tlsPrivateKeyFile': '/var/lib/kubelet/pki/kubelet.key',
    'tlsCipherSuites': ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'],
    'tlsMinVersion': 'VersionTLS12',
    'volumeStatsAggPeriod': '0s',
}

KUBE_PROXY = {
    'bindAddress': '0.0.0.0',
    'clientConnection': {'acceptContentTypes': '', 'burst': 10, 'contentType': 'application/vnd.kubernetes.protobuf',
                         'kubeconfig': '/var/lib/kube-proxy/kubeconfig.conf', 'qps': 5},
    'clusterCIDR': '10.233.64.0/18',
    'configSyncPeriod': '15m0s',
    'conntrack': {'maxPerCore': 32768, 'min': 131072, 'tcpCloseWaitTimeout': '1h0m0s',
                  'tcpEstablishedTimeout': '24h0m0s', 'udpStreamTimeout': '0s', 'udpTimeout': '0s'},
    'detectLocalMode': 'ClusterCIDR',
    'enableProfiling': False,
    'healthzBindAddress': '0.0.0.0:10256',
    'hostnameOverride': 'node1',
    'iptables': {'localhostNodePorts': True, 'masqueradeAll': False, 'masqueradeBit': 14, 'minSyncPeriod': '1s',
                 'syncPeriod': '30s'},
    'ipvs': {'excludeCIDRs': [], 'minSyncPeriod': '0s', 'scheduler': 'rr', 'strictARP': False, 'syncPeriod': '30s',
             'tcpFinTimeout': '0s', 'tcpTimeout': '0s', 'udpTimeout': '0s'},
    'logging': {'flushFrequency': 0, 'verbosity': 0},
    'metricsBindAddress': '127.0.0.1:10249',
    'mode': 'iptables',
    'nodePortAddresses': [],
    'oomScoreAdj': -999,
    'portRange': '',
}

KUBE_SCHEDULER = {
    'clientConnection': {'kubeconfig': '/etc/kubernetes/scheduler.conf'},
    'leaderElection': {'leaderElect': True, 'leaseDuration': '15s', 'renewDeadline': '10s', 'retryPeriod': '2s',
                       'resourceLock': 'leases', 'resourceName': 'kube-scheduler', 'resourceNamespace': 'kube-system'},
    'enableProfiling': False,
    'profiles': [{
        'schedulerName': 'default-scheduler',
        'plugins': {'score': {'disabled': [{'name': 'NodeResourcesBalancedAllocation'}],
                              'enabled': [{'name': 'NodeResourcesFit', 'weight': 2}]}},
        'pluginConfig': [
            {'name': 'NodeResourcesFit',
             'args': {'scoringStrategy': {'type': 'MostAllocated',
                                          'resources': [{'name': 'cpu', 'weight': 1}, {'name': 'memory', 'weight': 1}]}}},
            {'name': 'PodTopologySpread',
             'args': {'apiVersion': 'kubescheduler.config.k8s.io/v1', 'kind': 'PodTopologySpreadArgs',
                      'defaultingType': 'List',
                      'defaultConstraints': [{'maxSkew': 1, 'topologyKey': 'topology.kubernetes.io/zone',
                                              'whenUnsatisfiable': 'ScheduleAnyway'}]}},
            {'name': 'DynamicResources', 'args': {'filterTimeout': '10s'}},
        ],
    }],
}

ENCRYPTION = {
    'resources': [{
        'resources': ['secrets', 'configmaps'],
        'providers': [{'aescbc': {'keys': [{'name': 'key1', 'secret': ENCRYPTION_KEY}]}}, {'identity': {}}],
    }],
}

AUDIT_POLICY = {
    'omitStages': ['RequestReceived'],
    'rules': [
        {'level': 'None', 'users': ['system:kube-proxy'], 'verbs': ['watch'],
         'resources': [{'group': '', 'resources': ['endpoints', 'services', 'services/status']}]},
        {'level': 'None', 'nonResourceURLs': ['/healthz*', '/version', '/swagger*']},
        {'level': 'Metadata', 'omitStages': ['RequestReceived'],
         'resources': [{'group': '', 'resources': ['secrets', 'configmaps']},
                       {'group': 'authentication.k8s.io', 'resources': ['tokenreviews']}]},
        {'level': 'Request', 'verbs': ['get', 'list', 'watch'], 'resources': [{'group': ''}, {'group': 'apps'}]},
        {'level': 'RequestResponse', 'resources': [{'group': ''}, {'group': 'apps'}], 'omitManagedFields': True},
        {'level': 'Metadata'},
    ],
}

ADMISSION = {
    'plugins': [
        {'name': 'PodSecurity', 'configuration': {
            'apiVersion': 'pod-security.admission.config.k8s.io/v1', 'kind': 'PodSecurityConfiguration',
            'defaults': {'enforce': 'baseline', 'enforce-version': 'latest', 'audit': 'restricted',
                         'audit-version': 'latest', 'warn': 'restricted', 'warn-version': 'latest'},
            'exemptions': {'usernames': [], 'runtimeClasses': [], 'namespaces': ['kube-system']}}},
        {'name': 'EventRateLimit', 'path': '/etc/kubernetes/admission/eventratelimit.yaml'},
    ],
}

AUTHENTICATION = {
    'jwt': [{
        'issuer': {'url': 'https://issuer.example.com', 'audiences': ['kubernetes'], 'audienceMatchPolicy': 'MatchAny'},
        'claimValidationRules': [{'expression': 'claims.hd == "example.com"',
                                  'message': 'the hd claim must be set to example.com'}],
        'claimMappings': {'username': {'claim': 'email', 'prefix': 'oidc:'},
                          'groups': {'claim': 'groups', 'prefix': 'oidc:'},
                          'uid': {'claim': 'sub'},
                          'extra': [{'key': 'example.com/tenant', 'valueExpression': 'claims.tenant'}]},
        'userValidationRules': [{'expression': "!user.username.startsWith('system:')",
                                 'message': 'username cannot use the reserved system: prefix'}],
    }],
    'anonymous': {'enabled': True, 'conditions': [{'path': '/livez'}, {'path': '/readyz'}, {'path': '/healthz'}]},
}

AUTHORIZATION = {
    'authorizers': [
        {'type': 'Node', 'name': 'node'},
        {'type': 'RBAC', 'name': 'rbac'},
        {'type': 'Webhook', 'name': 'webhook', 'webhook': {
            'timeout': '3s', 'subjectAccessReviewVersion': 'v1', 'matchConditionSubjectAccessReviewVersion': 'v1',
            'failurePolicy': 'NoOpinion', 'authorizedTTL': '5m', 'unauthorizedTTL': '30s',
            'connectionInfo': {'type': 'KubeConfigFile', 'kubeConfigFile': '/etc/kubernetes/authz-webhook.conf'},
            'matchConditions': [{'expression': 'has(request.resourceAttributes)'}]}},
    ],
}

CONTAINERD_1 = {
    'root': '/var/lib/containerd',
    'state': '/run/containerd',
    'oom_score': -999,
    'grpc': {'address': '/run/containerd/containerd.sock', 'max_recv_message_size': 16777216,
             'max_send_message_size': 16777216},
    'debug': {'level': 'info'},
    'metrics': {'address': '127.0.0.1:1338', 'grpc_histogram': False},
    'plugins': {'io.containerd.grpc.v1.cri': {
        'sandbox_image': 'registry.k8s.io/pause:3.10',
        'max_container_log_line_size': 16384,
        'enable_unprivileged_ports': True,
        'containerd': {'snapshotter': 'overlayfs', 'default_runtime_name': 'runc',
                       'runtimes': {'runc': {'runtime_type': 'io.containerd.runc.v2',
                                             'options': {'SystemdCgroup': True, 'BinaryName': '/usr/local/bin/runc'}}}},
        'cni': {'bin_dir': '/opt/cni/bin', 'conf_dir': '/etc/cni/net.d'},
        'registry': {'config_path': '/etc/containerd/certs.d'},
    }},
}

CONTAINERD_2 = {
    'root': '/var/lib/containerd',
    'state': '/run/containerd',
    'oom_score': -999,
    'grpc': {'address': '/run/containerd/containerd.sock'},
    'plugins': {
        'io.containerd.cri.v1.images': {'snapshotter': 'overlayfs', 'pinned_images': {'sandbox': 'registry.k8s.io/pause:3.10'},
                                        'registry': {'config_path': '/etc/containerd/certs.d'},
                                        'max_concurrent_downloads': 3},
        'io.containerd.cri.v1.runtime': {
            'enable_unprivileged_ports': True,
            'cni': {'bin_dirs': ['/opt/cni/bin'], 'conf_dir': '/etc/cni/net.d'},
            'containerd': {'default_runtime_name': 'runc',
                           'runtimes': {'runc': {'runtime_type': 'io.containerd.runc.v2',
                                                 'options': {'SystemdCgroup': True}}}},
        },
        'io.containerd.grpc.v1.cri': {'stream_server_address': '127.0.0.1', 'stream_server_port': '0'},
    },
}

ETCD_35 = {
    'name': 'etcd1',
    'data-dir': '/var/lib/etcd',
    'listen-peer-urls': 'https://10.0.0.11:2380',
    'listen-client-urls': 'https://10.0.0.11:2379,https://127.0.0.1:2379',
    'initial-advertise-peer-urls': 'https://10.0.0.11:2380',
    'advertise-client-urls': 'https://10.0.0.11:2379',
    'initial-cluster': 'etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380,etcd3=https://10.0.0.13:2380',
    'initial-cluster-state': 'new',
    'initial-cluster-token': 'k8s_etcd',
    'snapshot-count': 10000,
    'heartbeat-interval': 250,
    'election-timeout': 5000,
    'auto-compaction-mode': 'periodic',
    'auto-compaction-retention': '8',
    'quota-backend-bytes': 2147483648,
    'metrics': 'basic',
    'listen-metrics-urls': 'http://127.0.0.1:2381',
    'experimental-initial-corrupt-check': True,
    'experimental-watch-progress-notify-interval': 5000000000,
    'logger': 'zap',
    'log-level': 'info',
    'log-outputs': ['stderr'],
    'cipher-suites': ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'],
    'client-transport-security': {'cert-file': '/etc/kubernetes/pki/etcd/server.crt',
                                  'key-file': '/etc/kubernetes/pki/etcd/server.key', 'client-cert-auth': True,
                                  'trusted-ca-file': '/etc/kubernetes/pki/etcd/ca.crt'},
    'peer-transport-security': {'cert-file': '/etc/kubernetes/pki/etcd/peer.crt',
                                'key-file': '/etc/kubernetes/pki/etcd/peer.key', 'client-cert-auth': True,
                                'trusted-ca-file': '/etc/kubernetes/pki/etcd/ca.crt', 'allowed-cn': ['kube-etcd-peer']},
}

ETCD_36 = dict(ETCD_35, **{'feature-gates': 'InitialCorruptCheck=true',
                           'watch-progress-notify-interval': 5000000000})
del ETCD_36['experimental-initial-corrupt-check']
del ETCD_36['experimental-watch-progress-notify-interval']

CASES = [
    ('KubeletConfiguration', KUBELET, {}),
    ('KubeProxyConfiguration', KUBE_PROXY, {}),
    ('KubeSchedulerConfiguration', KUBE_SCHEDULER, {}),
    ('EncryptionConfiguration', ENCRYPTION, {}),
    ('Policy', AUDIT_POLICY, {}),
    ('AdmissionConfiguration', ADMISSION, {}),
    ('AuthenticationConfiguration', AUTHENTICATION, {}),
    ('AuthorizationConfiguration', AUTHORIZATION, {}),
    ('containerd', CONTAINERD_1, {'containerd_version': '1.7.24'}),
    ('containerd', CONTAINERD_1, {'containerd_version': '1.6.20'}),
    ('containerd', CONTAINERD_2, {'containerd_version': '2.1.9'}),
    ('etcd', ETCD_35, {'etcd_version': '3.5.16'}),
    ('etcd', ETCD_36, {'etcd_version': '3.6.4'}),
]
