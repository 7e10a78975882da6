"""A YooKassa API v3 emulator that the official SDK can talk to unmodified (like stripe-mock)."""

from payments.gateway.emulator.app import create_emulator_app
from payments.gateway.emulator.errors import CheckoutError, EmulatorError
from payments.gateway.emulator.faults import Fault
from payments.gateway.emulator.notifier import Notifier
from payments.gateway.emulator.server import EmulatorServer, serve
from payments.gateway.emulator.state import EmulatorState

__all__ = [
    "CheckoutError",
    "EmulatorError",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "Notifier",
    "create_emulator_app",
    "serve",
]
