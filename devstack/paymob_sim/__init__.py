"""PayMob simulator: Intention API, hosted checkout, signed callbacks, inquiry, refund and void."""

from devstack.paymob_sim.config import (
    CALLBACK_MODES,
    INQUIRY_MODES,
    ConfigError,
    SimulatorConfig,
)
from devstack.paymob_sim.simulator import PaymobSimulator
from devstack.paymob_sim.transactions import (
    DECLINE_CARD,
    SANDBOX_CARDS,
    SANDBOX_CVV,
    SANDBOX_EXPIRY,
    TEST_WALLET,
    TEST_WALLET_PIN,
    CardPayment,
    WalletPayment,
)

__all__ = [
    "CALLBACK_MODES",
    "DECLINE_CARD",
    "INQUIRY_MODES",
    "SANDBOX_CARDS",
    "SANDBOX_CVV",
    "SANDBOX_EXPIRY",
    "TEST_WALLET",
    "TEST_WALLET_PIN",
    "CardPayment",
    "ConfigError",
    "PaymobSimulator",
    "SimulatorConfig",
    "WalletPayment",
]
