# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Layout specifications and node names of the test bed."""

import re

import pytest

from testbed.layout import Group, LayoutError, expand, expand_spec, node_prefix, parse_layout, validate_cluster_name


def test_parse_full_spec():
    assert parse_layout("3:cp+etcd@bookworm,2:worker@trixie") == [
        Group(count=3, roles=("cp", "etcd"), suite="bookworm"),
        Group(count=2, roles=("worker",), suite="trixie"),
    ]


def test_default_suite_and_canonical_role_order():
    assert parse_layout("1:worker+etcd+cp") == [Group(count=1, roles=("cp", "etcd", "worker"), suite="bookworm")]


def test_whitespace_around_items_is_accepted():
    assert parse_layout(" 2 : cp + etcd @ trixie , 1:worker ") == [
        Group(count=2, roles=("cp", "etcd"), suite="trixie"),
        Group(count=1, roles=("worker",), suite="bookworm"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "layout is empty"),
        ("   ", "layout is empty"),
        ("3", "has no ':'"),
        ("x:cp", "count 'x' is not a whole number"),
        ("1.5:cp", "count '1.5' is not a whole number"),
        ("-1:cp", "count '-1' is not a whole number"),
        ("0:cp", "count must be at least 1"),
        ("3:", "names no role"),
        ("3:@trixie", "names no role"),
        ("3:cp+", "empty role between '+' signs"),
        ("3:cp++etcd", "empty role between '+' signs"),
        ("3:cp+cp", "role 'cp' is given twice"),
        ("3:master", "unknown role 'master'; choose from cp, etcd, worker"),
        ("3:cp@", "'@' is not followed by a suite"),
        ("3:cp@buster", "unknown suite 'buster'; choose from bookworm, trixie"),
        ("1:cp,,1:worker", "layout item 2 ('') is empty"),
        ("1:cp,", "layout item 2 ('') is empty"),
        ("60:worker,5:cp", "more than 64 nodes"),
    ],
)
def test_invalid_specs_name_the_problem(spec, message):
    with pytest.raises(LayoutError) as caught:
        parse_layout(spec)
    assert message in str(caught.value)


def test_error_names_the_item():
    with pytest.raises(LayoutError, match=r"layout item 2 \('2:wrker'\)"):
        parse_layout("1:cp,2:wrker")


@pytest.mark.parametrize(
    ("roles", "prefix"),
    [
        (("cp",), "cp"),
        (("cp", "etcd"), "cp"),
        (("cp", "etcd", "worker"), "cp"),
        (("cp", "worker"), "cp"),
        (("etcd",), "etcd"),
        (("etcd", "worker"), "w"),
        (("worker",), "w"),
    ],
)
def test_prefix(roles, prefix):
    assert node_prefix(roles) == prefix


def test_names_and_groups_of_the_probe_layout():
    nodes = expand_spec("probe", "3:cp+etcd@bookworm,2:worker@trixie")
    assert [(n.name, n.suite, n.groups) for n in nodes] == [
        ("probe-cp1", "bookworm", ("kube_control_plane", "etcd")),
        ("probe-cp2", "bookworm", ("kube_control_plane", "etcd")),
        ("probe-cp3", "bookworm", ("kube_control_plane", "etcd")),
        ("probe-w1", "trixie", ("kube_node",)),
        ("probe-w2", "trixie", ("kube_node",)),
    ]


def test_numbering_continues_across_groups_with_the_same_prefix():
    nodes = expand_spec("c", "1:cp,2:worker,1:cp+worker@trixie,1:etcd+worker,2:etcd")
    assert [n.name for n in nodes] == ["c-cp1", "c-w1", "c-w2", "c-cp2", "c-w3", "c-etcd1", "c-etcd2"]


def test_single_all_in_one_node():
    (node,) = expand_spec("aio", "1:cp+etcd+worker")
    assert node.name == "aio-cp1"
    assert node.groups == ("kube_control_plane", "etcd", "kube_node")


def test_etcd_only_cluster():
    assert [n.name for n in expand_spec("e", "3:etcd")] == ["e-etcd1", "e-etcd2", "e-etcd3"]


def test_generated_names_are_rfc1123_labels():
    label = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    for node in expand_spec("a" * 40, "9:cp+etcd,20:worker,9:etcd"):
        assert label.match(node.name), node.name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("Probe", "not a lowercase RFC 1123 label"),
        ("-probe", "not a lowercase RFC 1123 label"),
        ("probe-", "not a lowercase RFC 1123 label"),
        ("pro_be", "not a lowercase RFC 1123 label"),
        ("pro.be", "not a lowercase RFC 1123 label"),
        ("a" * 41, "at most 40"),
    ],
)
def test_invalid_cluster_names(name, message):
    with pytest.raises(LayoutError, match=message):
        validate_cluster_name(name)


def test_expand_checks_the_cluster_name():
    with pytest.raises(LayoutError, match="RFC 1123"):
        expand("Bad", parse_layout("1:cp"))
