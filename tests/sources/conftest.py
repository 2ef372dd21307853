"""paybot with Stripe (and its fake API), Square and Wave in, SendGrid and Slack out."""

from __future__ import annotations

import pytest

from tests.contract.samples import SAMPLES


@pytest.fixture
async def stripe_api(aiohttp_server):  # type: ignore[no-untyped-def]
    from tests.fakes.stripe import FakeStripe

    fake = FakeStripe()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, stripe_api):  # type: ignore[no-untyped-def]
    from bot.integrations.sources.square import SquareSettings
    from bot.integrations.sources.stripe import StripeSettings
    from bot.integrations.sources.wave import WaveSettings
    from tests.fakes.stripe import API_KEY
    from tests.harness import STRIPE_SECRET

    return configs | {
        "stripe": StripeSettings(_env_file=None, webhook_secret=STRIPE_SECRET, api_key=API_KEY,
                                 base_url=str(stripe_api.server.make_url("/"))),
        "square": SquareSettings(_env_file=None, signature_key=SAMPLES["square"].KEY),  # type: ignore[attr-defined]
        "wave": WaveSettings(_env_file=None, webhook_secret=SAMPLES["wave"].SECRET),  # type: ignore[attr-defined]
    }
