# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Command-line flags of the cluster components, from a dict, checked against upstream flag lists.

``render_flags('kube-apiserver', {'secure-port': 6443, 'anonymous-auth': False})`` returns
``['--anonymous-auth=false', '--secure-port=6443']``. The flag lists are generated from the upstream
data into ``schemas/component_flags.py`` (hack/gen-schemas).
"""

from __future__ import annotations

from ansible_collections.kubeforge.cluster.plugins.module_utils.component_config import suggestions
from ansible_collections.kubeforge.cluster.plugins.module_utils.versions import minor_of
from ansible_collections.kubeforge.cluster.plugins.module_utils.schemas.component_flags import FLAGS
from ansible_collections.kubeforge.cluster.plugins.module_utils.schemas.kubernetes_programs import PROGRAMS

COMPONENTS = ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'etcd')
ETCD_VERSIONS = ('3.5', '3.6')


class FlagError(ValueError):
    """Every problem with a flag dict, at once."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__('\n'.join(self.errors))


class FlagList(list):
    """The rendered flags (a plain list of strings) with the warnings raised while rendering."""

    def __init__(self, items=(), warnings=()):
        super().__init__(items)
        self.warnings = list(warnings)


def known_flags(component, version=None):
    """The set of flag names (without dashes) upstream documents for ``component``."""
    if component not in COMPONENTS:
        raise FlagError(['unknown component %r (expected one of %s)' % (component, ', '.join(COMPONENTS))])
    if component != 'etcd':
        # The flags the program of the target minor prints in its --help, where read
        # (hack/gen-program-facts); the documented list otherwise.
        minor = minor_of(version)
        if minor in PROGRAMS:
            return set(PROGRAMS[minor]['flags'][component])
        return set(FLAGS[component])
    if version is None:
        return set(FLAGS['etcd-3.5']) | set(FLAGS['etcd-3.6'])
    minor = minor_of(version)
    if minor not in ETCD_VERSIONS:
        raise FlagError(['etcd version %s is not supported (known: %s)' % (version, ', '.join(ETCD_VERSIONS))])
    return set(FLAGS['etcd-' + minor])


def _scalar(value, name):
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, (int, float, str)):
        return str(value)
    raise FlagError(['--%s: cannot render a value of type %s inside a list or mapping' % (name, type(value).__name__)])


def render_value(value, name='flag'):
    """The text after ``=``: bool -> true/false, list -> a,b, dict -> k=v,k2=v2 (sorted by key)."""
    if isinstance(value, (list, tuple)):
        return ','.join(_scalar(v, name) for v in value)
    if isinstance(value, dict):
        return ','.join('%s=%s' % (k, _scalar(value[k], name)) for k in sorted(value, key=str))
    return _scalar(value, name)


def _hint(name, known):
    found = ['--' + f for f in suggestions(name, known)]
    if not found:
        return ''
    if len(found) == 1:
        return '; did you mean %s?' % found[0]
    return '; did you mean %s or %s?' % (', '.join(found[:-1]), found[-1])


def render_flags(component, flags, allow_unknown=(), version=None):
    """A sorted list of ``--name=value`` strings.

    A None value leaves the flag out. A name upstream does not list fails with the closest known names,
    unless it is in ``allow_unknown``, which passes it with a warning (``result.warnings``). Every problem is
    reported at once (FlagError.errors). ``version`` picks the etcd release (3.5 or 3.6; without it, etcd
    flags are checked against both), or the Kubernetes release whose programs' flags apply.
    """
    known = known_flags(component, version)
    if not isinstance(flags, dict):
        raise FlagError(['%s: flags must be a mapping of flag names to values, got %s' % (component, type(flags).__name__)])
    allowed = {str(name).lstrip('-') for name in allow_unknown or ()}
    errors = []
    warnings = []
    rendered = {}
    for raw_name, value in flags.items():
        name = str(raw_name).lstrip('-')
        if not name or '=' in name or ' ' in name:
            errors.append('%s: %r is not a flag name' % (component, raw_name))
            continue
        if name in rendered:
            errors.append('%s: --%s is given twice' % (component, name))
            continue
        if value is None:
            continue
        if name not in known:
            if name in allowed:
                warnings.append('%s: --%s is not in the upstream flag list; passed because allow_unknown lists it'
                                % (component, name))
            else:
                errors.append('%s: unknown flag --%s%s' % (component, name, _hint(name, known)))
                continue
        try:
            rendered[name] = '--%s=%s' % (name, render_value(value, name))
        except FlagError as exc:
            errors.extend('%s: %s' % (component, e) for e in exc.errors)
    if errors:
        raise FlagError(errors)
    return FlagList([rendered[name] for name in sorted(rendered)], warnings)
