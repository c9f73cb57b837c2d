# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The etcd_member module's main(): check mode is handled by the module, not around it."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from module_runner import run_module  # noqa: E402

from ansible_collections.kubeforge.cluster.plugins.modules import etcd_member  # noqa: E402


def test_a_wait_in_check_mode_is_reported_skipped_without_asking_etcd(tmp_path):
    args = {'data_dir': str(tmp_path / 'data'), 'pki_dir': str(tmp_path / 'pki'), 'bin_dir': str(tmp_path / 'bin'),
            'endpoint': 'https://127.0.0.1:2379', 'wait': 120}
    result = run_module(etcd_member, args, check_mode=True)
    assert result['skipped'] is True and result['changed'] is False
    assert 'check mode' in result['msg'] and 'https://127.0.0.1:2379' in result['msg']
    assert 'failed' not in result
