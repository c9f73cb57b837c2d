# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Cluster layouts: ``COUNT:ROLES[@SUITE]`` groups, node names and inventory groups.

A layout such as ``3:cp+etcd@bookworm,2:worker@trixie`` expands to named nodes. Names are
``<cluster>-cpN`` for nodes that carry the control plane, ``<cluster>-etcdN`` for etcd-only nodes
and ``<cluster>-wN`` for every other node; numbering continues across groups with the same prefix.
"""

import re
from dataclasses import dataclass

ROLE_GROUPS = {
    "cp": "kube_control_plane",
    "etcd": "etcd",
    "worker": "kube_node",
}
ROLE_ORDER = ("cp", "etcd", "worker")
INVENTORY_GROUPS = ("kube_control_plane", "kube_node", "etcd")
SUITES = ("bookworm", "trixie")
DEFAULT_SUITE = "bookworm"
MAX_NODES = 64
MAX_CLUSTER_NAME = 40

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_COUNT_RE = re.compile(r"^[0-9]+$")


class LayoutError(ValueError):
    """A layout specification or a name that cannot be used."""


@dataclass(frozen=True)
class Group:
    count: int
    roles: tuple
    suite: str


@dataclass(frozen=True)
class Node:
    name: str
    suite: str
    roles: tuple

    @property
    def groups(self):
        return tuple(ROLE_GROUPS[role] for role in self.roles)


def validate_cluster_name(name):
    """Cluster names become part of host names: a lowercase RFC 1123 label, short enough."""
    if not isinstance(name, str) or not name:
        raise LayoutError("cluster name is empty")
    if len(name) > MAX_CLUSTER_NAME:
        raise LayoutError(
            f"cluster name {name!r} is {len(name)} characters long; at most {MAX_CLUSTER_NAME} are allowed"
        )
    if not _LABEL_RE.match(name):
        raise LayoutError(
            f"cluster name {name!r} is not a lowercase RFC 1123 label "
            "(a-z, 0-9 and '-', starting and ending with a letter or digit)"
        )
    return name


def parse_layout(spec):
    """Parse ``COUNT:ROLES[@SUITE],...`` into a list of :class:`Group`.

    Every problem is reported with the item it was found in.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise LayoutError("layout is empty; expected COUNT:ROLES[@SUITE][,...], e.g. 3:cp+etcd,2:worker@trixie")
    groups = []
    total = 0
    for position, raw in enumerate(spec.split(","), start=1):
        item = raw.strip()
        where = f"layout item {position} ({raw!r})"
        if not item:
            raise LayoutError(f"{where} is empty; items are separated by single commas")
        count_text, sep, rest = item.partition(":")
        if not sep:
            raise LayoutError(f"{where} has no ':'; expected COUNT:ROLES[@SUITE]")
        count_text = count_text.strip()
        if not _COUNT_RE.match(count_text):
            raise LayoutError(f"{where}: count {count_text!r} is not a whole number")
        count = int(count_text)
        if count < 1:
            raise LayoutError(f"{where}: count must be at least 1")
        roles_text, at, suite = rest.partition("@")
        suite = suite.strip() if at else DEFAULT_SUITE
        if at and not suite:
            raise LayoutError(f"{where}: '@' is not followed by a suite; choose from {', '.join(SUITES)}")
        if suite not in SUITES:
            raise LayoutError(f"{where}: unknown suite {suite!r}; choose from {', '.join(SUITES)}")
        names = [name.strip() for name in roles_text.split("+")]
        if not roles_text.strip():
            raise LayoutError(f"{where} names no role; choose from {', '.join(ROLE_ORDER)}")
        seen = set()
        for name in names:
            if not name:
                raise LayoutError(f"{where}: empty role between '+' signs")
            if name not in ROLE_GROUPS:
                raise LayoutError(f"{where}: unknown role {name!r}; choose from {', '.join(ROLE_ORDER)}")
            if name in seen:
                raise LayoutError(f"{where}: role {name!r} is given twice")
            seen.add(name)
        roles = tuple(role for role in ROLE_ORDER if role in seen)
        total += count
        if total > MAX_NODES:
            raise LayoutError(f"layout asks for more than {MAX_NODES} nodes")
        groups.append(Group(count=count, roles=roles, suite=suite))
    return groups


def node_prefix(roles):
    """``cp`` for control-plane nodes, ``etcd`` for etcd-only nodes, ``w`` for the rest."""
    roles = tuple(roles)
    if "cp" in roles:
        return "cp"
    if roles == ("etcd",):
        return "etcd"
    return "w"


def expand(cluster, groups):
    """Name every node of a parsed layout, in layout order."""
    validate_cluster_name(cluster)
    counters = {}
    nodes = []
    for group in groups:
        prefix = node_prefix(group.roles)
        for _ in range(group.count):
            counters[prefix] = counters.get(prefix, 0) + 1
            name = f"{cluster}-{prefix}{counters[prefix]}"
            if len(name) > 63:
                raise LayoutError(f"node name {name!r} is longer than 63 characters")
            nodes.append(Node(name=name, suite=group.suite, roles=group.roles))
    return nodes


def expand_spec(cluster, spec):
    return expand(cluster, parse_layout(spec))
