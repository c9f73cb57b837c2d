# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Entry point: ``python3 tests/testbed ARGS`` (what hack/testbed runs) or ``python3 -m testbed``."""

import os
import sys

if __package__ in (None, ""):
    # Run as a directory: import the package from its parent, not the modules as top-level names.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from testbed.cli import main  # noqa: E402

sys.exit(main())
