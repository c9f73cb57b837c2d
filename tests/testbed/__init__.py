# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Multi-node test bed: Debian nodes in podman containers and a local mirror of release artifacts.

Standard library only: it runs with the system python3 before any virtual environment exists.
See tests/testbed/README.md; the command line is hack/testbed.
"""
