"""Make ``ansible_collections.kubeforge.cluster`` importable from a checkout.

``.collections/ansible_collections/kubeforge/cluster`` links back to the repository root, so the
plugins are imported under their real names, exactly as Ansible loads them.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS = os.path.join(_ROOT, ".collections")
if os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections")) and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
