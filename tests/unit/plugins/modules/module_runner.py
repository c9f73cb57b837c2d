# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Run a module's main() in-process with given arguments and return its JSON result.

Works across ansible-core 2.17 to 2.21: from 2.19 on, module arguments are injected with
``ansible.module_utils.testing.patch_module_args`` (which also sets the serialization profile that
2.19 introduced); before that, with the ``_ANSIBLE_ARGS`` bytes that AnsibleModule reads. The module
really prints its result and exits, as on a host; nothing of AnsibleModule is replaced.
"""

from __future__ import annotations

import contextlib
import io
import json
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.common import warnings as _warnings

try:  # ansible-core 2.19+
    from ansible.module_utils.testing import patch_module_args as _patch_module_args
except ImportError:  # ansible-core 2.17, 2.18
    _patch_module_args = None

try:  # ansible-core 2.19+: once controller code is imported, warnings go to the display instead
    from ansible.module_utils import _internal as _module_internal
except ImportError:
    _module_internal = None


@contextlib.contextmanager
def module_args(args):
    """Make ``args`` the arguments of any AnsibleModule created inside the block."""
    if _patch_module_args is not None:
        with _patch_module_args(args):
            yield
    else:
        payload = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode('utf-8')
        with mock.patch.object(basic, '_ANSIBLE_ARGS', payload):
            yield


def _reset_global_messages():
    # AnsibleModule collects warnings in module-level containers, one process = one module run on
    # a host; clear them so each call starts clean.
    for name in ('_global_warnings', '_global_deprecations'):
        container = getattr(_warnings, name, None)
        if container is not None:
            container.clear()


def run_module(module, args, check_mode=False, diff=False):
    """Call ``module.main()`` with ``args``; return the result dict it printed.

    The result carries ``failed`` when the module called fail_json.
    """
    args = dict(args)
    args['_ansible_check_mode'] = check_mode
    args['_ansible_diff'] = diff
    _reset_global_messages()
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(module_args(args))
        stack.enter_context(contextlib.redirect_stdout(out))
        if getattr(_module_internal, 'is_controller', False):
            # Run as on a host: warnings are returned in the result, not printed by the controller.
            stack.enter_context(mock.patch.object(_module_internal, 'is_controller', False))
        try:
            module.main()
        except SystemExit:
            pass
        else:
            raise AssertionError('%s.main() returned without exit_json/fail_json' % module.__name__)
    lines = [line for line in out.getvalue().splitlines() if line.startswith('{')]
    assert lines, 'no JSON result printed: %r' % out.getvalue()
    return json.loads(lines[-1])


def warning_texts(result):
    """The warnings of a result as plain strings (2.19+ may return structured entries)."""
    texts = []
    for item in result.get('warnings', []) or []:
        if isinstance(item, dict):
            event = item.get('event') if isinstance(item.get('event'), dict) else item
            texts.append(str(event.get('msg') or event.get('message') or item))
        else:
            texts.append(str(item))
    return texts
