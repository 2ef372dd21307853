"""Who may run staff commands and press staff buttons: listed user ids, or members of one user group."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.storage.database import Clock

log = logging.getLogger(__name__)

GROUP_CACHE = timedelta(minutes=5)


class StaffAccess:
    """`members_of(group)` asks the chat platform for a group's members; its answer is cached for a few minutes.

    Fails closed: when the group cannot be read, only the listed users are staff.
    """

    def __init__(self, users: str, group: str | None, members_of: Callable[[str], Awaitable[list[str]]],
                 clock: Clock) -> None:
        self.users = frozenset(u.strip() for u in users.split(",") if u.strip())
        self.group = group or None
        self.members_of = members_of
        self.clock = clock
        self._members: frozenset[str] = frozenset()
        self._fetched_at: datetime | None = None

    async def allows(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        if self.group is None:
            return False
        return user_id in await self._group_members()

    async def _group_members(self) -> frozenset[str]:
        now = self.clock()
        if self._fetched_at is None or now - self._fetched_at >= GROUP_CACHE:
            try:
                self._members = frozenset(await self.members_of(self.group or ""))
                self._fetched_at = now
            except Exception as exc:  # the platform is down or refuses: nobody new gets in
                log.warning("could not read the members of staff group %s: %s", self.group, exc)
                return frozenset()
        return self._members
