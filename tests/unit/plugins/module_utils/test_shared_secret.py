# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/shared_secret.py: the one decision behind the cluster CAs' plan and the etcd CA's.

``share`` is called here with plain entries of the shape both plans give it ({host: {name: value}});
``test_pki_catalog.py`` and ``test_etcd_plan.py`` check the plans' own arguments (a control plane
that holds another CA is refused; an etcd member only when it runs or holds data).
"""

from __future__ import annotations

from ansible_collections.kubeforge.cluster.plugins.module_utils import shared_secret

HOSTS = ['h1', 'h2', 'h3']
NAMES = ('cert', 'key')


def whole(files):
    return files['cert'] and files['key']


def share(held, play=tuple(HOSTS), **kwargs):
    kwargs.setdefault('prefer', (whole,))
    kwargs.setdefault('creators', [h for h in HOSTS if h in held and h in play])
    return shared_secret.share(HOSTS, list(play), held, NAMES, **kwargs)


def ca(cert, key):
    return {'cert': cert, 'key': key}


def test_holders_group_hosts_by_value_in_order():
    assert shared_secret.holders({'h1': 'a', 'h2': None, 'h3': 'a', 'h4': 'b'}) == {'a': ['h1', 'h3'], 'b': ['h4']}


def test_nobody_holds_it_the_first_creator_makes_it_and_everybody_gets_it():
    result = share({h: ca(None, None) for h in HOSTS})
    assert result == {'host': 'h1', 'holder': False, 'held': [], 'copy_to': ['h2', 'h3'], 'differ': {},
                      'conflicting': [], 'missing': []}


def test_the_first_holder_is_the_source_and_only_the_run_receives_copies():
    held = {'h1': ca(None, None), 'h2': ca('c', 'k'), 'h3': ca(None, None)}
    result = share(held, play=['h1', 'h2'])
    assert result['host'] == 'h2' and result['holder'] is True and result['held'] == ['cert', 'key']
    assert result['copy_to'] == ['h1']


def test_the_first_test_any_host_passes_wins():
    held = {'h1': ca('c', None), 'h2': ca(None, 'k'), 'h3': ca(None, None)}
    prefer = (whole, lambda files: files['key'], lambda files: files['cert'])
    assert share(held, prefer=prefer)['host'] == 'h2'
    assert share(held, prefer=prefer[2:])['host'] == 'h1'


def test_hosts_that_were_not_asked_are_neither_source_nor_copied_to():
    held = {'h2': ca(None, None)}
    result = share(held, creators=['h1', 'h2'])
    # the creator comes from the caller (the cluster CAs: the first control plane of the run)
    assert result['host'] == 'h1' and result['copy_to'] == ['h2']
    assert share({}, creators=[])['host'] is None


def test_every_compared_difference_conflicts():
    held = {'h1': ca('c', 'k'), 'h2': ca('c', 'other'), 'h3': ca('x', 'k')}
    result = share(held)
    assert result['differ'] == {'cert': {'c': ['h1', 'h2'], 'x': ['h3']}, 'key': {'k': ['h1', 'h3'], 'other': ['h2']}}
    assert result['conflicting'] == ['h2', 'h3'] and result['copy_to'] == []


def test_only_the_compared_names_and_hosts_conflict_the_others_get_the_source():
    held = {'h1': ca('c', 'k'), 'h2': ca('c', 'other'), 'h3': ca('x', 'y')}
    result = share(held, compare=('cert',), compared=['h2'])
    assert result['differ'] == {} and result['conflicting'] == []
    assert result['copy_to'] == ['h2', 'h3']
    result = share(held, compare=('cert',), compared=['h3'])
    assert result['differ'] == {'cert': {'c': ['h1'], 'x': ['h3']}}
    assert result['conflicting'] == ['h3'] and result['copy_to'] == ['h2']


def test_a_created_source_has_nothing_to_conflict_with():
    held = {'h1': ca('c', None), 'h2': ca('x', None), 'h3': ca(None, None)}
    result = share(held, compare=('cert',))
    assert result['holder'] is False and result['host'] == 'h1'
    # the versions still differ, but nobody holds a whole copy to be measured against
    assert result['differ'] == {'cert': {'c': ['h1'], 'x': ['h2']}} and result['conflicting'] == []
    assert result['copy_to'] == ['h2', 'h3']


def test_what_others_hold_and_the_source_lacks_is_missing():
    held = {'h1': {'cert': 'c', 'key': 'k', 'extra': None}, 'h2': {'cert': 'c', 'key': 'k', 'extra': 'e'},
            'h3': {'cert': None, 'key': None, 'extra': None}}
    result = shared_secret.share(HOSTS, HOSTS, held, ('cert', 'key', 'extra'), prefer=(whole,), creators=[],
                                 required=NAMES)
    assert result['host'] == 'h1' and result['missing'] == ['extra'] and result['held'] == ['cert', 'key']
    # h2 holds what h1 lacks (the caller refuses that); h3 lacks a required name
    assert result['copy_to'] == ['h2', 'h3']
