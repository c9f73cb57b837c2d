# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""How a plan reads what a probe of another host registered: one rule for every plan.

The roles ask the hosts outside a run (by delegation, with ``ignore_unreachable``,
``failed_when: false`` and ``ignore_errors``, so that one lost host does not stop the play before
the plan can name it) what they hold: the CA files, an etcd member's state. The plan then sees
three cases, and treats them the same everywhere:

* skipped or absent: the host was not asked (nothing is known, nothing is wrong);
* unreachable, failed, or without the answer's key (the module did not run, and
  ``failed_when: false`` hid that): the host could not be asked, and the plan says so;
* otherwise: the answer.

Where a plan refuses a host it could not ask (the CA plans do), it words that with
:func:`unreachable_error`, so the refusal reads the same in every plan. :func:`by_host` puts the
two registrations of one probe (the run's hosts asked in place, the others by a delegated loop)
into one ``{host: result}`` that the plans read.
"""

from __future__ import annotations


def read_answer(result, key):
    """``(answer, unreachable)`` from one host's registered ``result``; ``key`` is a field every
    real answer has. ``answer`` is the result itself, or None when there is none."""
    if not result or result.get("skipped"):
        return None, False
    if result.get("unreachable") or result.get("failed") or key not in result:
        return None, True
    return result, False


def by_host(hostvars, hosts, var, delegated=None):
    """``{host: result}``: ``var`` as each of ``hosts`` registered it (None where it did not), then
    each result of the ``delegated`` loop (its items are host names) under its host."""
    out = {host: _without_deprecated((hostvars[host] or {}).get(var)) for host in hosts}
    for result in (delegated or {}).get("results") or []:
        if isinstance(result, dict) and result.get("item") is not None:
            out[result["item"]] = _without_deprecated(result)
    return out


# keys of a registered result that ansible-core marks deprecated: reading them warns on every run
_DEPRECATED_KEYS = ("skipped_reason",)


def _without_deprecated(result):
    """A copy of ``result`` without the deprecated keys (their values are never read)."""
    if not hasattr(result, "keys"):
        return result
    return {key: result[key] for key in result.keys() if key not in _DEPRECATED_KEYS}


def unreachable_error(host, group, holding=None):
    """The refusal for a host of ``group`` that could not be asked, in the same words in every plan;
    ``holding`` (for example "the cluster CA") says what is unknown about it and what to do."""
    message = "%s (%s) is unreachable" % (host, group)
    if holding:
        message += ", so whether it holds %s is unknown; bring it back or take it out of the inventory" % holding
    return message
