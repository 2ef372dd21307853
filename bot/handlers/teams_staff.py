"""What every Teams handler works with: the activity (`Turn`), and the staff services behind a finance check
(`Staff.admit`: the same claim keys, refusals and audit entries as Slack's, actor `teams:<AAD object id>`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from microsoft_agents.activity import Activity, ChannelAccount

from bot.handlers.slack import InFlight
from bot.integrations.channels.teams import TeamsChannel
from bot.services.staff.access import StaffAccess
from bot.services.staff.actions import StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request, claim
from bot.storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class Staff:
    db: Database
    channel: TeamsChannel
    desk: StaffDesk
    escalations: Escalations
    queries: StaffQueries
    access: StaffAccess
    tenant_id: str | None
    inflight: InFlight

    async def admit(self, turn: Turn, key: str, action: str) -> tuple[Request, int] | None:
        """The request to act on and its claim, or None: a repeat of one already handled, or refused (audited once).
        A guest, or anyone from another tenant (a shared channel's outside member), is refused even if listed."""
        user = turn.user_id
        actor = f"teams:{user}"
        if not await self.allows(turn):
            refused = Request(f"{key}:refused:{user}", actor, "refused")
            if await claim(self.db, refused) is not None:
                async with self.db.transaction() as uow:
                    uow.audit("staff.refused", actor=actor, channel="teams", detail={
                        "action": action, "tenant_id": turn.tenant_id, "conversation_id": turn.conversation_id,
                        "user_role": turn.user_role})
            log.info("refused %s to non-staff Teams user %s", action, user)
            return None
        request = Request(key, actor, action)
        claim_id = await claim(self.db, request)
        return (request, claim_id) if claim_id is not None else None

    async def allows(self, turn: Turn) -> bool:
        if not turn.user_id or turn.user_role == "guest":
            return False
        if self.tenant_id and turn.tenant_id != self.tenant_id:
            return False
        return await self.access.allows(turn.user_id)


@dataclass
class Turn:
    """One activity, with what paybot reads from it."""

    activity: Activity
    raw: dict[str, Any]

    @property
    def user_id(self) -> str:
        sender = self.activity.from_property or ChannelAccount()
        return str(sender.aad_object_id or "")

    @property
    def user_role(self) -> str | None:
        role = (self.raw.get("from") or {}).get("userRole")
        return str(role) if role else None

    @property
    def tenant_id(self) -> str | None:
        tenant = ((self.raw.get("channelData") or {}).get("tenant") or {}).get("id")
        conversation = self.activity.conversation
        return str(tenant or (conversation.tenant_id if conversation else None) or "") or None

    @property
    def conversation_id(self) -> str:
        return str(self.activity.conversation.id if self.activity.conversation else "")

    @property
    def service_url(self) -> str:
        return str(self.activity.service_url or "")

    def reference(self) -> dict[str, Any]:
        reference = self.activity.get_conversation_reference()
        return reference.model_dump(by_alias=True, exclude_none=True, mode="json")



def later(staff: Staff, work: Awaitable[None]) -> None:
    """After the 200: Teams wants activities answered quickly; the reply goes through the connector."""

    async def run() -> None:
        staff.inflight.track()
        try:
            await work
        except Exception:  # nobody to raise to: the answer was given
            log.exception("a Teams command failed after its answer")

    asyncio.get_running_loop().create_task(run())


