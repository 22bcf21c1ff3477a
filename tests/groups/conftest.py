"""Fixtures of the Group SPI's back ends: a short directory for sockets, an operator for a cluster."""

from tests.e2e.conftest import operator, operator_factory  # noqa: F401 - fixtures, for the cluster back end
from tests.rpc.conftest import sockdir  # noqa: F401 - a fixture
