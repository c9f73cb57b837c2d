# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A small, deterministic YAML emitter.

Writes dict / list / str / int / float / bool / None in block style, the layout ``kubectl`` uses
(sequences inside mappings are not indented). The output depends only on the data, never on the
version of a YAML library, so a file written twice from the same data is byte-for-byte the same.

Strings are written plain only when every YAML 1.1 and 1.2 reader (PyYAML, Go's yaml packages)
reads them back as the same string; otherwise they are double-quoted, or written as a literal
block when they span several lines.

Why not PyYAML, which the os role installs on every node (and kubeconfig.py reads with): what we
write is read by Go programs (kubelet, kube-proxy, the control plane), and PyYAML decides quoting
by YAML 1.1 alone. ``yaml.safe_dump({'mode': '0o755', 'e': '1e3'})`` writes both strings plain,
and a YAML 1.2 or Go reader takes them back as the numbers 493 and 1000.0. PyYAML also folds long
strings at 80 columns, and its output has changed between releases (5.x on older distributions,
6.x here): hosts with different versions would rewrite each other's files on every run, and a
rewritten config restarts its service. Reading is not affected, so reading stays with PyYAML.
"""

from __future__ import annotations

import math
import re

__all__ = ['dump', 'YamlEmitError']


class YamlEmitError(TypeError):
    """A value that this emitter cannot write, with the path to it."""


# A plain scalar must start with a letter, "_" or "/" (so it can never be read as a number, a date
# or an indicator) and contain only characters that are never special in block context.
_PLAIN = re.compile(r'[A-Za-z_/][A-Za-z0-9_./@+=:()-]*(?: [A-Za-z0-9_./@+=:()-]+)*\Z')

# Words that YAML 1.1 (PyYAML, Go yaml.v2) or 1.2 read as booleans or null.
_RESERVED = frozenset((
    'y', 'n', 'yes', 'no', 'true', 'false', 'on', 'off', 'null',
))

_ESCAPES = {
    '\\': '\\\\',
    '"': '\\"',
    '\b': '\\b',
    '\t': '\\t',
    '\n': '\\n',
    '\f': '\\f',
    '\r': '\\r',
}

# Characters a literal block may not hold: every control character but newline and tab,
# the YAML 1.1 line breaks, and characters outside YAML's printable set.
_NOT_IN_BLOCK = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]')


def _escape_char(ch):
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    if code < 0x20 or 0x7f <= code <= 0xa0 or ch in '\u2028\u2029\ufeff\ufffe\uffff' or 0xd800 <= code <= 0xdfff:
        if code <= 0xff:
            return '\\x%02X' % code
        return '\\u%04X' % code
    return ch


def _double_quoted(text):
    return '"' + ''.join(_escape_char(ch) for ch in text) + '"'


def _plain_ok(text):
    if not _PLAIN.match(text):
        return False
    if text.lower() in _RESERVED:
        return False
    if text.endswith(':') or ': ' in text:
        return False
    return True


def _block_ok(text):
    """Whether ``text`` can be written as a literal block (``|``) and read back unchanged."""
    if '\n' not in text or _NOT_IN_BLOCK.search(text):
        return False
    lines = text.split('\n')
    first = lines[0]
    if not first or first[0] in ' \t':
        # The indentation of a block is taken from its first line.
        return False
    body = text.rstrip('\n').split('\n')
    for line in body:
        if line and not line.strip(' \t'):
            return False
    return True


def _scalar(value, path):
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        if value == '':
            return '""'
        if _plain_ok(value):
            return value
        return _double_quoted(value)
    raise YamlEmitError('%s: cannot write a value of type %s' % (path or '.', type(value).__name__))


def _float(value):
    if math.isnan(value):
        return '.nan'
    if math.isinf(value):
        return '.inf' if value > 0 else '-.inf'
    text = repr(value)
    mantissa, sep, exponent = text.partition('e')
    if '.' not in mantissa:
        # PyYAML only reads "1e+20" as a float when the mantissa has a dot.
        mantissa += '.0'
    if sep:
        if exponent[0] not in '+-':
            exponent = '+' + exponent
        return mantissa + 'e' + exponent
    return mantissa


def _key(key, path):
    if isinstance(key, str) or isinstance(key, (bool, int, float)) or key is None:
        return _scalar(key, path)
    raise YamlEmitError('%s: mapping key %r is not a scalar' % (path or '.', key))


def _block_header(text):
    if text.endswith('\n\n'):
        chomp = '+'
    elif text.endswith('\n'):
        chomp = ''
    else:
        chomp = '-'
    return '|' + chomp


def _block_lines(text, indent):
    pad = ' ' * indent
    content = text[:-1] if text.endswith('\n') else text
    return [(pad + line) if line else '' for line in content.split('\n')]


def _ordered_items(mapping, sort_keys, first_keys):
    items = list(mapping.items())
    if sort_keys:
        items.sort(key=lambda kv: (str(type(kv[0]).__name__) != 'str', str(kv[0])))
    if first_keys:
        head = [(k, mapping[k]) for k in first_keys if k in mapping]
        items = head + [kv for kv in items if kv[0] not in first_keys]
    return items


def _emit_mapping(mapping, indent, lines, path, sort_keys, first_keys=()):
    pad = ' ' * indent
    for key, value in _ordered_items(mapping, sort_keys, first_keys):
        sub = '%s.%s' % (path, key)
        head = pad + _key(key, sub) + ':'
        if isinstance(value, dict):
            if not value:
                lines.append(head + ' {}')
            else:
                lines.append(head)
                _emit_mapping(value, indent + 2, lines, sub, sort_keys)
        elif isinstance(value, (list, tuple)):
            if not value:
                lines.append(head + ' []')
            else:
                lines.append(head)
                _emit_sequence(value, indent, lines, sub, sort_keys)
        elif isinstance(value, str) and _block_ok(value):
            lines.append(head + ' ' + _block_header(value))
            lines.extend(_block_lines(value, indent + 2))
        else:
            lines.append(head + ' ' + _scalar(value, sub))


def _emit_sequence(sequence, indent, lines, path, sort_keys):
    pad = ' ' * indent
    for index, item in enumerate(sequence):
        sub = '%s[%d]' % (path, index)
        if isinstance(item, dict) and item:
            start = len(lines)
            _emit_mapping(item, indent + 2, lines, sub, sort_keys)
            lines[start] = pad + '- ' + lines[start][indent + 2:]
        elif isinstance(item, (list, tuple)) and item:
            start = len(lines)
            _emit_sequence(item, indent + 2, lines, sub, sort_keys)
            lines[start] = pad + '- ' + lines[start][indent + 2:]
        elif isinstance(item, dict):
            lines.append(pad + '- {}')
        elif isinstance(item, (list, tuple)):
            lines.append(pad + '- []')
        elif isinstance(item, str) and _block_ok(item):
            lines.append(pad + '- ' + _block_header(item))
            lines.extend(_block_lines(item, indent + 2))
        else:
            lines.append(pad + '- ' + _scalar(item, sub))


def dump(data, sort_keys=True, first_keys=(), explicit_start=False, header=None):
    """Return ``data`` as YAML text ending in a newline.

    ``sort_keys`` orders every mapping by key; ``first_keys`` puts those top-level keys first
    (e.g. ``('apiVersion', 'kind')``); ``header`` is written as comment lines at the top.
    """
    lines = []
    if header:
        lines.extend(('# ' + line).rstrip() for line in header.splitlines())
    if explicit_start:
        lines.append('---')
    if isinstance(data, dict):
        if data:
            _emit_mapping(data, 0, lines, '', sort_keys, first_keys)
        else:
            lines.append('{}')
    elif isinstance(data, (list, tuple)):
        if data:
            _emit_sequence(data, 0, lines, '', sort_keys)
        else:
            lines.append('[]')
    elif isinstance(data, str) and _block_ok(data):
        lines.append(_block_header(data))
        lines.extend(_block_lines(data, 2))
    else:
        lines.append(_scalar(data, ''))
    return '\n'.join(lines) + '\n'
