"""Where the Teams bot may post: conversation references, saved when the bot is installed in a team, channel or
chat and refreshed on every activity, so proactive posts still work after a restart (and on another worker).

A reference is the Bot Framework's `ConversationReference` as JSON (the service URL to post to, the
conversation, the bot's id); paybot reads only `serviceUrl` back, the rest is kept for the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage import models
from bot.storage.database import Database
from bot.storage.sql import insert_or_ignore


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    service_url: str
    tenant_id: str | None
    removed: bool


class TeamsConversations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, reference: dict[str, Any]) -> None:
        """Insert or refresh a conversation's reference (an activity arrived from it: the bot is there)."""
        conversation = reference.get("conversation") or {}
        conversation_id, service_url = str(conversation.get("id") or ""), str(reference.get("serviceUrl") or "")
        if not conversation_id or not service_url:
            return
        tenant_id, kind = conversation.get("tenantId"), conversation.get("conversationType")
        values: dict[str, Any] = {"conversation_id": conversation_id[:255], "service_url": service_url[:500],
                                  "tenant_id": str(tenant_id)[:64] if tenant_id else None,
                                  "conversation_type": str(kind)[:20] if kind else None, "reference": reference}
        async with self.db.transaction() as uow:
            now = uow.clock()
            inserted = (await uow.session.execute(insert_or_ignore(
                uow.session, models.TeamsConversation, values | {"updated_at": now}))).scalar_one_or_none()
            if inserted is None:
                row = await uow.session.scalar(select(models.TeamsConversation).where(
                    models.TeamsConversation.conversation_id == values["conversation_id"]).with_for_update())
                if row is not None:
                    row.service_url, row.tenant_id = service_url[:500], values["tenant_id"]
                    row.conversation_type, row.reference = values["conversation_type"], reference
                    row.updated_at, row.removed_at = now, None

    async def remove(self, conversation_id: str) -> None:
        """The bot was uninstalled or removed from the conversation: posting there is over until it is back."""
        async with self.db.transaction() as uow:
            row = await uow.session.scalar(select(models.TeamsConversation).where(
                models.TeamsConversation.conversation_id == conversation_id).with_for_update())
            if row is not None and row.removed_at is None:
                row.removed_at = uow.clock()

    async def get(self, conversation_id: str) -> Conversation | None:
        async with self.db.read() as session:
            row = await session.scalar(select(models.TeamsConversation).where(
                models.TeamsConversation.conversation_id == conversation_id))
        if row is None:
            return None
        return Conversation(row.conversation_id, row.service_url, row.tenant_id, row.removed_at is not None)

    async def saw_user(self, aad_object_id: str, name: str | None) -> None:
        """Remember a user's display name (written only when it is new or changed)."""
        if not aad_object_id or not name:
            return
        name = name[:200]
        async with self.db.transaction() as uow:
            inserted = (await uow.session.execute(insert_or_ignore(uow.session, models.TeamsUser, {
                "aad_object_id": aad_object_id[:64], "name": name, "updated_at": uow.clock()}))).scalar_one_or_none()
            if inserted is None:
                row = await uow.session.scalar(select(models.TeamsUser).where(
                    models.TeamsUser.aad_object_id == aad_object_id[:64]))
                if row is not None and row.name != name:
                    row.name, row.updated_at = name, uow.clock()


async def display_names(session: AsyncSession, actors: list[str]) -> dict[str, str]:
    """`teams:<aad id>` actors → their display names, where known."""
    ids = {a.partition(":")[2] for a in actors if a.startswith("teams:")}
    if not ids:
        return {}
    rows = await session.scalars(select(models.TeamsUser).where(models.TeamsUser.aad_object_id.in_(ids)))
    return {f"teams:{r.aad_object_id}": r.name for r in rows}


async def display_name(session: AsyncSession, actor: str) -> str:
    """Who an actor is, as cards show it: a Teams user's name, else the id."""
    return (await display_names(session, [actor])).get(actor) or actor.partition(":")[2]
