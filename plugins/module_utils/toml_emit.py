# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A small, deterministic TOML writer (TOML 1.0).

Keys are sorted (or kept in the order given, with ``sort_keys=False``, where order means
something, as in containerd's hosts.toml). In each table the plain values come first, then the sub-tables, each under its
full dotted header (``[plugins."io.containerd.grpc.v1.cri".containerd]``); lists of tables become
``[[arrays of tables]]``. A key that is not a bare key is double-quoted. A table holding only other
tables gets no header of its own; an empty table gets one, so it still exists when read back.
"""

from __future__ import annotations

import math
import re

__all__ = ['dumps', 'TomlEmitError']


class TomlEmitError(TypeError):
    """A value that TOML cannot hold, with the path to it."""


_BARE_KEY = re.compile(r'[A-Za-z0-9_-]+\Z')

_ESCAPES = {
    '\\': '\\\\',
    '"': '\\"',
    '\b': '\\b',
    '\t': '\\t',
    '\n': '\\n',
    '\f': '\\f',
    '\r': '\\r',
}


def _string(text):
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append('\\u%04X' % ord(ch))
        elif 0xd800 <= ord(ch) <= 0xdfff:
            raise TomlEmitError('string %r holds a lone surrogate, which TOML cannot hold' % text)
        else:
            out.append(ch)
    return '"' + ''.join(out) + '"'


def key(name):
    """A single key, quoted when it is not a bare key."""
    if not isinstance(name, str):
        raise TomlEmitError('key %r is not a string' % (name,))
    if _BARE_KEY.match(name):
        return name
    return _string(name)


def dotted(names):
    return '.'.join(key(n) for n in names)


def _float(value):
    if math.isnan(value):
        return 'nan'
    if math.isinf(value):
        return 'inf' if value > 0 else '-inf'
    text = repr(value)
    if '.' not in text and 'e' not in text:
        text += '.0'
    return text


def _is_table(value):
    return isinstance(value, dict)


def _is_table_array(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _path(names):
    return '.' + dotted(names) if names else '.'


def _order(keys, sort_keys):
    return sorted(keys) if sort_keys else list(keys)


def _inline(value, names, sort_keys=True):
    if value is None:
        raise TomlEmitError('%s: TOML has no null value; remove the key instead' % _path(names))
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_inline(v, names + ['[%d]' % i], sort_keys) for i, v in enumerate(value)) + ']'
    if isinstance(value, dict):
        if not value:
            return '{}'
        parts = ['%s = %s' % (key(k), _inline(value[k], names + [k], sort_keys)) for k in _order(value, sort_keys)]
        return '{ ' + ', '.join(parts) + ' }'
    raise TomlEmitError('%s: cannot write a value of type %s' % (_path(names), type(value).__name__))


def _emit_table(table, names, lines, header, array_item=False, sort_keys=True):
    for k in table:
        if not isinstance(k, str):
            raise TomlEmitError('%s: key %r is not a string' % (_path(names), k))
    plain = _order((k for k, v in table.items() if not _is_table(v) and not _is_table_array(v)), sort_keys)
    nested = _order((k for k, v in table.items() if _is_table(v) or _is_table_array(v)), sort_keys)
    if header and (plain or not nested or array_item):
        if lines:
            lines.append('')
        lines.append(('[[%s]]' if array_item else '[%s]') % dotted(names))
    for k in plain:
        lines.append('%s = %s' % (key(k), _inline(table[k], names + [k], sort_keys)))
    for k in nested:
        value = table[k]
        if _is_table(value):
            _emit_table(value, names + [k], lines, header=True, sort_keys=sort_keys)
        else:
            for item in value:
                _emit_table(item, names + [k], lines, header=True, array_item=True, sort_keys=sort_keys)


def dumps(data, header=None, sort_keys=True):
    """Return the dict ``data`` as TOML text ending in a newline.

    ``header`` is written as comment lines at the top. ``sort_keys=False`` keeps the order of
    ``data`` (plain values still come before the sub-tables of their table).
    """
    if not isinstance(data, dict):
        raise TomlEmitError('the top level of a TOML document must be a table, got %s' % type(data).__name__)
    lines = []
    if header:
        lines.extend(('# ' + line).rstrip() for line in header.splitlines())
    body = []
    _emit_table(data, [], body, header=False, sort_keys=sort_keys)
    if lines and body:
        lines.append('')
    lines.extend(body)
    return '\n'.join(lines) + '\n'
