"""Opt-outs per channel kind and address (`bot.storage.models.Consent`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Consent
from bot.storage.sql import insert_or_ignore, one_of


async def opted_out(session: AsyncSession, channel: str, address: str) -> bool:
    return bool(await session.scalar(select(Consent.opted_out).where(
        Consent.channel == channel, Consent.address == address)))


async def change(session: AsyncSession, channel: str, address: str, *, opted_out: bool, reason: str,
                 now: datetime) -> bool:
    """Record what the person said; False when it was already so (a provider's redelivery, a second STOP)."""
    values = {"channel": channel, "address": address, "opted_out": opted_out, "reason": reason, "changed_at": now}
    if await session.scalar(insert_or_ignore(session, Consent, values)) is not None:
        return opted_out  # new row: opting in with nothing on record changes nothing
    row = await session.scalar(select(Consent).where(Consent.channel == channel, Consent.address == address)
                               .with_for_update())
    if row is None or row.opted_out == opted_out:
        return False
    row.opted_out, row.reason, row.changed_at = opted_out, reason, now
    return True


def opted_out_of(connection: Connection, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """`opted_out` for many (channel, address) pairs in one query: those opted out."""
    if not wanted:
        return set()
    rows = connection.execute(OPTED_OUT, {"addresses": list({address for _, address in wanted})})
    return {(channel, address) for channel, address in rows if (channel, address) in wanted}


OPTED_OUT = select(Consent.channel, Consent.address).where(  # built once: it is on the hot path
    Consent.opted_out.is_(True), one_of(Consent.address, "addresses"))
