# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Make the test bed package (tests/testbed) importable as ``testbed``."""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
