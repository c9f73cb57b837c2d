# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Documentation shared by the collection's modules.

A module lists C(kubeforge.cluster.attributes) after C(ansible.builtin.action_common_attributes)
and states only what differs (its check-mode and diff details); modules that write files on the
host also list C(kubeforge.cluster.attributes.files) after C(ansible.builtin.files), and modules that
need a Python library on the host list C(kubeforge.cluster.attributes.libraries) (ansible-doc merges
the attributes and adds the notes of every fragment listed).
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
attributes:
  diff_mode:
    support: none
  idempotent:
    description:
      - When run again with the same arguments against an unchanged host, the module changes nothing
        and reports C(changed=false). It compares what exists with what was asked and acts only on a
        difference.
    support: full
  platform:
    platforms: posix
author:
  - kubeforge.cluster contributors (@kubeforge)
"""

    # Each fragment is one string literal: ansible-test's yamllint sanity check reads
    # the class body without running it and accepts no expressions.

    # modules that write files on the host
    FILES = r"""
attributes:
  safe_file_operations:
    description:
      - Writes each file through a temporary file beside it (flushed to disk) and an atomic move, keeping
        owner, group and mode; a reader never sees half a file.
    support: full
"""

    # modules that need Python libraries the os role installs on the hosts
    LIBRARIES = r"""
attributes: {}
notes:
  - In check mode on a host that lacks a Python library the module needs (a first install, before the
    os role installed it), the module reports C(changed=true) and names the library in C(msg) and
    C(missing_libraries) instead of failing, so a plan of a first install succeeds. A real run fails
    naming the library.
"""
