# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Helpers shared by the unit tests, the test bed checks and the molecule scenarios."""
