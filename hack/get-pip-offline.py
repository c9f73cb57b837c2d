# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Stand-in for the pip bootstrap script ansible-test downloads from a host this machine cannot reach.

ansible-test runs it inside each fresh virtual environment it creates for a sanity test, with
get-pip's arguments (pip install options and packages). This does the same from the standard
library's ensurepip and the package index that pip is configured for.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
                      stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
