"""The payment-source registry: every module here, listed once by its webhook path name."""

from __future__ import annotations

from bot.integrations.base import registry
from bot.integrations.sources.base import SourceFactory
from bot.integrations.sources.business_central import BusinessCentralSource
from bot.integrations.sources.intacct import SageIntacctSource
from bot.integrations.sources.paypal import PayPalSource
from bot.integrations.sources.sap_b1 import SapB1Source
from bot.integrations.sources.quickbooks import QuickBooksSource
from bot.integrations.sources.square import SquareSource
from bot.integrations.sources.stripe import StripeSource
from bot.integrations.sources.wave import WaveSource
from bot.integrations.sources.xero import XeroSource
from bot.integrations.sources.freshbooks import FreshBooksSource
from bot.integrations.sources.zoho import ZohoBooksSource

_ALL: tuple[SourceFactory, ...] = (
    StripeSource,
    PayPalSource,
    SquareSource,
    WaveSource,
    SageIntacctSource,
    BusinessCentralSource,
    SapB1Source,
    QuickBooksSource,
    XeroSource,
    FreshBooksSource,
    ZohoBooksSource,
)
SOURCES: dict[str, SourceFactory] = registry(*_ALL)
