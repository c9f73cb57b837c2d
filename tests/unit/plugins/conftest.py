"""Fixtures of the stand-in Kubernetes API server (tests/support/kube_api_stand_in.py), shared by the
tests of the modules and module_utils that talk to an API server."""

import os
import sys

import pytest

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support.kube_api_stand_in import StandInApiServer, make_pki  # noqa: E402


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    """A CA with server and client certificates for the stand-in, once per test module."""
    return make_pki(tmp_path_factory.mktemp('pki'))


@pytest.fixture
def api(pki):
    """A running stand-in API server, fresh for each test."""
    server = StandInApiServer(pki).start()
    yield server
    server.stop()
