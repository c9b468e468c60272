"""The faults suite drives the in-process platform of the end-to-end payment tests."""

from tests.e2e.conftest import gateway_pems  # noqa: F401  (fixture)
from tests.e2e.test_payment_flow import platform  # noqa: F401  (fixture)
