# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/toml_emit.py: whatever it writes, tomllib reads back as the same data."""

from __future__ import annotations

import math
import random
import tomllib

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import toml_emit


def round_trip(data):
    text = toml_emit.dumps(data)
    return tomllib.loads(text), text


def test_containerd_like_document():
    data = {
        'version': 3,
        'root': '/var/lib/containerd',
        'plugins': {
            'io.containerd.cri.v1.runtime': {
                'enable_unprivileged_ports': True,
                'cni': {'bin_dirs': ['/opt/cni/bin'], 'conf_dir': '/etc/cni/net.d'},
                'containerd': {'runtimes': {'runc': {'runtime_type': 'io.containerd.runc.v2',
                                                     'options': {'SystemdCgroup': True}},
                                            'empty': {}}},
            },
        },
    }
    back, text = round_trip(data)
    assert back == data, text
    assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]' in text
    assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.empty]' in text
    assert text.index('version = 3') < text.index('[plugins')


@pytest.mark.parametrize('key', ['plain', 'with.dot', 'with space', 'quote"d', 'back\\slash', '', 'é', '1.2', '-_-'])
def test_keys_are_quoted_when_needed(key):
    back, text = round_trip({key: 1, 'table': {key: {key: 'v'}}})
    assert back == {key: 1, 'table': {key: {key: 'v'}}}, text


@pytest.mark.parametrize('value', ['', 'a"b', 'back\\slash', 'line\nbreak', 'tab\t', '\x00\x01\x1f\x7f', 'é☃😀',
                                   '\r\n', "'single'", '[not an array]', '# not a comment', 0, -1, 2 ** 62, 1.5,
                                   1e20, 1e-7, -0.0, float('inf'), float('-inf'), True, False,
                                   [], [1, 2], ['a', 'b'], [[1], ['x']], [{'a': 1}, 2], {}])
def test_values_round_trip(value):
    back, text = round_trip({'v': value, 'in': {'array': [value]}})
    assert back == {'v': value, 'in': {'array': [value]}}, text


def test_nan_and_arrays_of_tables():
    back, _unused = round_trip({'n': float('nan')})
    assert math.isnan(back['n'])
    data = {'proxy': [{'name': 'a', 'sub': {'x': 1}}, {'name': 'b', 'deep': [{'y': 2}]}]}
    back, text = round_trip(data)
    assert back == data, text
    assert text.count('[[proxy]]') == 2


def test_deterministic_and_sorted():
    assert toml_emit.dumps({'b': 1, 'a': {'d': 1, 'c': 2}}) == toml_emit.dumps({'a': {'c': 2, 'd': 1}, 'b': 1})
    assert toml_emit.dumps({'b': 1, 'a': 2}) == 'a = 2\nb = 1\n'
    assert toml_emit.dumps({'a': 1}, header='written by x') == '# written by x\n\na = 1\n'


def test_null_and_odd_types_fail_with_their_path():
    with pytest.raises(toml_emit.TomlEmitError, match=r'\.a\.b: TOML has no null'):
        toml_emit.dumps({'a': {'b': None}})
    with pytest.raises(toml_emit.TomlEmitError):
        toml_emit.dumps({'a': object()})
    with pytest.raises(toml_emit.TomlEmitError):
        toml_emit.dumps([1])


def test_random_documents_round_trip():
    rng = random.Random(7)
    chars = 'abc.-_ "\\\n\t#=[]{}é\x01'

    def word():
        return ''.join(rng.choice(chars) for _unused in range(rng.randint(0, 6)))

    def value(depth):
        kind = rng.randint(0, 6 if depth < 3 else 3)
        if kind == 0:
            return word()
        if kind == 1:
            return rng.randint(-10 ** 6, 10 ** 6)
        if kind == 2:
            return rng.choice([True, False])
        if kind == 3:
            return [word() for _unused in range(rng.randint(0, 3))]
        if kind == 4:
            return {word(): value(depth + 1) for _unused in range(rng.randint(0, 3))}
        if kind == 5:
            return [{word(): value(depth + 1)} for _unused in range(rng.randint(1, 2))]
        return rng.random() * 1000

    for _unused in range(500):
        data = {word(): value(0) for _unused in range(rng.randint(0, 4))}
        back, text = round_trip(data)
        assert back == data, text


def test_order_kept_where_it_means_something():
    # containerd tries the hosts of a hosts.toml in the order written
    data = {'server': 'https://registry-1.docker.io',
            'host': {'https://z.example': {'capabilities': ['pull'], 'ca': '/z.crt'},
                     'https://a.example': {'capabilities': ['pull', 'resolve']}}}
    text = toml_emit.dumps(data, header='Registry docker.io', sort_keys=False)
    assert text == ('# Registry docker.io\n\nserver = "https://registry-1.docker.io"\n\n'
                    '[host."https://z.example"]\ncapabilities = ["pull"]\nca = "/z.crt"\n\n'
                    '[host."https://a.example"]\ncapabilities = ["pull", "resolve"]\n')
    assert list(tomllib.loads(text)['host']) == ['https://z.example', 'https://a.example']
    assert list(tomllib.loads(toml_emit.dumps(data))['host']) == ['https://a.example', 'https://z.example']
