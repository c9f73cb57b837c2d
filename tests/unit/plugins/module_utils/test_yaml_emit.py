# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/yaml_emit.py: whatever it writes, PyYAML reads back as the same data."""

from __future__ import annotations

import math
import random

import pytest
import yaml

from ansible_collections.kubeforge.cluster.plugins.module_utils import yaml_emit

PEM = ('-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb3Zl\nZXJ0aGluZyBpcyBmaW5l==\n'
       '-----END CERTIFICATE-----\n')

TRICKY = [
    'yes', 'Yes', 'YES', 'no', 'on', 'On', 'OFF', 'y', 'n', 'true', 'False', 'null', 'Null', '~', '',
    '0x1', '0o17', '017', '1e3', '1.0', '.5', '-1', '+1', '1_000', '0b101', '190:20:30', '.inf', '-.Inf', '.NaN', 'NaN',
    '2001-12-14', '2001-12-14t21:59:43.10-05:00', '12:30', ':', '::', 'a:', 'a: b', 'a:b', '#', 'a #b', 'a#b',
    '- a', '-', '--', '---', '...', '? x', '?', '%x', '@x', '`x', '!x', '&x', '*x', '|', '>', "'", '"', '[', ']', '{',
    '}', ',', 'a,b', '=', '<<', ' leading', 'trailing ', '  ', '\t', 'tab\tinside', 'line\nbreak', 'crlf\r\n',
    'nul\x00', 'bell\x07', 'esc\x1b', 'é', 'snow ☃', '\u2028', '\u0085', '\ufeffbom', 'emoji 😀',
    PEM, PEM.rstrip('\n'), PEM + '\n', '\n', '\n\n', 'a\n\n\nb', ' a\nb', 'a\n b', 'a\n \nb', 'a \nb', '#a\nb',
    'https://192.0.2.10:6443', 'system:masters', 'kubernetes-admin@kubernetes', '/etc/kubernetes/pki/ca.crt',
    'unix:///run/containerd/containerd.sock', '10.233.0.1', '2001:db8::1', '100Mi', '10%', '0s', '1m30s',
    'Ünïcödé', 'key: value # comment', '!!str', '!!int 3', '&anchor', '*alias',
]


def round_trip(value, **kwargs):
    text = yaml_emit.dump(value, **kwargs)
    return yaml.safe_load(text), text


@pytest.mark.parametrize('text', TRICKY)
def test_tricky_strings_read_back_unchanged(text):
    for value in (text, {'key': text}, [text], {text: 'v'} if text else {'k': text}, {'a': [{'b': text}]}):
        back, out = round_trip(value)
        assert back == value, out


def test_scalars_and_containers():
    data = {'int': 3, 'neg': -7, 'big': 2 ** 70, 'float': 1.5, 'exp': 1e20, 'small': 1e-7, 'zero': -0.0,
            'inf': float('inf'), 'ninf': float('-inf'), 'bool': True, 'no': False, 'none': None,
            'empty_list': [], 'empty_map': {}, 'nested': [[1, [2, []]], {}, [{}], {'a': {'b': {'c': []}}}],
            2: 'int key', True: 'bool key'}
    back, out = round_trip(data)
    nan_back, _unused = round_trip({'nan': float('nan')})
    assert math.isnan(nan_back['nan'])
    assert back == data, out


def test_output_is_deterministic_and_sorted():
    a = {'b': 1, 'a': {'d': 1, 'c': 2}, 'apiVersion': 'v1', 'kind': 'Config'}
    b = {'kind': 'Config', 'apiVersion': 'v1', 'a': {'c': 2, 'd': 1}, 'b': 1}
    assert yaml_emit.dump(a) == yaml_emit.dump(b)
    text = yaml_emit.dump(a, first_keys=('apiVersion', 'kind'))
    assert text.splitlines()[:3] == ['apiVersion: v1', 'kind: Config', 'a:']
    unsorted = yaml_emit.dump({'z': 1, 'a': 2}, sort_keys=False)
    assert unsorted == 'z: 1\na: 2\n'


def test_kubectl_layout():
    text = yaml_emit.dump({'clusters': [{'cluster': {'server': 'https://x:6443'}, 'name': 'k'}]})
    assert text == 'clusters:\n- cluster:\n    server: https://x:6443\n  name: k\n'


def test_header_and_errors():
    assert yaml_emit.dump({'a': 1}, header='one\ntwo') == '# one\n# two\na: 1\n'
    with pytest.raises(yaml_emit.YamlEmitError, match='.a'):
        yaml_emit.dump({'a': object()})


def test_random_strings_round_trip():
    rng = random.Random(20261125)
    alphabet = 'ab:#-?,[]{}&*!|>\'"%@`=~ \t\n\r.+01eExyYnNoOtTfF\x00\x85é☃\u2028\ufeff'
    for _unused in range(3000):
        text = ''.join(rng.choice(alphabet) for _unused in range(rng.randint(0, 10)))
        value = {'k': text, 'l': [text, {'m': text}]}
        if text:
            value[text] = text
        back, out = round_trip(value)
        assert back == value, (text, out)
