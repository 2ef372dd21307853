"""CRM channels: HTTP calls per payment, mean send() time against the local fakes, and each account's rate-limit
slot (200 payments each, every customer new). Run: .venv/bin/python benchmarks/crm_calls.py"""
import asyncio
import sys
import time
from pathlib import Path
from datetime import UTC, datetime
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import aiohttp
from aiohttp.test_utils import TestServer
from tests.fakes import hubspot as H, klaviyo as K, intercom as I, activecampaign as A
from bot.integrations.channels.hubspot import HubSpotChannel, HubSpotSettings
from bot.integrations.channels.klaviyo import KlaviyoChannel, KlaviyoSettings
from bot.integrations.channels.intercom import IntercomChannel, IntercomSettings
from bot.integrations.channels.activecampaign import ActiveCampaignChannel, ActiveCampaignSettings

def payload(n):
    return {"email": f"c{n}@example.com", "phone": None, "name": f"C {n}", "customer_id": f"C{n}", "payment_id": n,
            "payment_ref": f"pi_{n}", "source": "stripe", "invoice": f"INV-{n}", "amount": "1250.00",
            "amount_minor": 125000, "currency": "USD", "invoice_total_minor": 125000, "balance_minor": 0,
            "paid_in_full": True, "paid_at": "2026-11-28T12:00:00Z", "paid_at_epoch": 1795867200 + n,
            "subject": "Payment received", "text": "Thank you", "test": False}

async def main():
    clock = lambda: datetime(2026, 11, 28, 12, tzinfo=UTC)
    fakes = {"hubspot": H.FakeHubSpot(), "klaviyo": K.FakeKlaviyo(), "intercom": I.FakeIntercom(),
             "activecampaign": A.FakeActiveCampaign()}
    A.PER_SECOND = 10**9  # measure our side, not the fake's limiter
    async with aiohttp.ClientSession() as http:
        for name, fake in fakes.items():
            server = TestServer(fake.app); await server.start_server()
            url = str(server.make_url("/"))
            ch = {"hubspot": lambda: HubSpotChannel(HubSpotSettings(_env_file=None, access_token=H.TOKEN, email_id=H.EMAIL_ID, base_url=url), http),
                  "klaviyo": lambda: KlaviyoChannel(KlaviyoSettings(_env_file=None, api_key=K.API_KEY, base_url=url), http),
                  "intercom": lambda: IntercomChannel(IntercomSettings(_env_file=None, access_token=I.TOKEN, base_url=url), http),
                  "activecampaign": lambda: ActiveCampaignChannel(ActiveCampaignSettings(_env_file=None, api_token=A.TOKEN, base_url=url + "api/3", tag="payment-received"), http)}[name]()
            n = 200
            start = time.perf_counter()
            for i in range(n):
                out = await ch.send(payload(i), key=f"p{i}:receipt:{name}")
                assert type(out).__name__ == "Sent", out
            took = time.perf_counter() - start
            print(f"{name:15s} {len(fake.calls)/n:.2f} calls/payment  {took/n*1000:.1f} ms/send  "
                  f"rate-limit slot {ch.rate_limit(payload(0))[1]*1000:.0f} ms")
            await server.close()

asyncio.run(main())
