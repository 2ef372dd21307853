"""The tables. Money is integer minor units plus an ISO 4217 code; times are UTC-aware."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        false, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.storage.sql import invoice_key
from bot.storage.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


#: The statuses of stored events whose payments are not yet recorded (bot.services.ingest: ACCEPTED, RECEIVED).
UNRECORDED = ("accepted", "received")
WAITING_STATUSES = "status IN ({})".format(", ".join(f"'{status}'" for status in UNRECORDED))


class WebhookEvent(Base):
    """Every accepted webhook, raw; the unique (source, event_id) is what makes redelivery harmless."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_webhook_source_event"),
                      Index("ix_webhook_events_status_source", "status", "source"),
                      Index("ix_webhook_events_status_received", "status", "received_at"),
                      # PostgreSQL: the workers' page of events to record (`ingest.WAITING_PAGE`); see its migration.
                      Index("ix_webhook_events_waiting", "id",
                            postgresql_where=text(WAITING_STATUSES)).ddl_if(dialect="postgresql"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(120))
    received_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(30))  # processed | ignored | rejected | unverifiable | …: see ingest
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]]
    # Verified after the answer (`bot.services.verifier`): tries so far, and when the next may start (while a
    # verifier holds the event, the end of its lease).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    # A rejected or never-verified body is dropped after UNVERIFIED_RETENTION_HOURS; its size stays.
    body_bytes: Mapped[int | None] = mapped_column(Integer)
    purged_at: Mapped[datetime | None]


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    country: Mapped[str] = mapped_column(String(2), default="US")
    locale: Mapped[str] = mapped_column(String(35), default="en-US")
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name; None: the business's
    channels: Mapped[list[Any]]
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    teams_conversation: Mapped[str | None] = mapped_column(String(255))


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    number: Mapped[str] = mapped_column(String(120), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_on: Mapped[date | None] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)


# Invoices are looked up by number whatever the case of its letters (bot.domain.matching.invoice_key).
Index("ix_invoices_number_key", invoice_key(Invoice.number))
# `/payments find 1250.00`: by total or by balance, without scanning every invoice.
Index("ix_invoices_amount_minor", Invoice.amount_minor)
Index("ix_invoices_balance_minor", Invoice.amount_minor - Invoice.paid_minor)


class ExternalRef(Base):
    """A customer's or invoice's id on a platform (`stripe:cus_Q1`), for matching on what platforms send."""

    __tablename__ = "external_refs"
    __table_args__ = (UniqueConstraint("entity", "source", "external_id", name="uq_external_ref"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entity: Mapped[str] = mapped_column(String(10))  # customer | invoice
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    entity_id: Mapped[str] = mapped_column(String(120), index=True)


class Payment(Base):
    """One report of a payment. A second report of the same money points at the first (`duplicate_of`)."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_event_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_events.id"))
    source: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    payment_ref: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    date_only: Mapped[bool] = mapped_column(default=False, server_default=false())  # the platform gave only a day
    recorded_at: Mapped[datetime]
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    match_rule: Mapped[str] = mapped_column(String(30))
    match_reason: Mapped[str] = mapped_column(Text)
    settlement: Mapped[str | None] = mapped_column(String(20))
    balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    payer_email: Mapped[str | None] = mapped_column(String(320))
    payer_name: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]]


Index("ix_payments_amount_minor", Payment.amount_minor)  # `/payments find` by amount


class Notification(Base):
    """The transactional outbox: written with the payment, sent by a worker, never lost (README: "Out")."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "available_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    channel: Mapped[str] = mapped_column(String(40))   # the provider: sendgrid, slack, …
    audience: Mapped[str] = mapped_column(String(20))  # customer | finance
    purpose: Mapped[str] = mapped_column(String(30))   # receipt | finance_card | needs_review | dead_letter | …
    recipient: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]]
    fallbacks: Mapped[list[Any]]                        # channels to try, in order, if this one fails for good
    status: Mapped[str] = mapped_column(String(20))    # pending | sending | sent | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    attempt_started_at: Mapped[datetime | None]         # a send began and its outcome is not recorded yet
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(255))
    delivery_status: Mapped[str | None] = mapped_column(String(40))  # from the provider's status callback
    last_error: Mapped[str | None] = mapped_column(Text)


class RateSlot(Base):
    """The next free send time per rate-limited key (e.g. one Slack channel), shared by every worker."""

    __tablename__ = "rate_slots"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    next_at: Mapped[datetime]


class AuditEntry(Base):
    """Append-only and hash-chained: each hash covers the previous hash and the entry's canonical content."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(60))
    actor: Mapped[str] = mapped_column(String(120))
    source: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(40))
    invoice: Mapped[str | None] = mapped_column(String(120), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(120))
    amount: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str | None] = mapped_column(String(3))
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last seq and hash. Appenders lock it, so the chain stays linear across processes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(8))  # the key the chain is keyed with now; None: unkeyed


class StaffAction(Base):
    """One staff request from chat (a command, a button, a modal), kept once: its unique `request_key` makes a
    Slack retry or a double click a no-op. `summary` is what the payment's card shows about it afterwards."""

    __tablename__ = "staff_actions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_key: Mapped[str] = mapped_column(String(200), unique=True)
    actor: Mapped[str] = mapped_column(String(120))  # slack:U…
    action: Mapped[str] = mapped_column(String(40))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    summary: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class Escalation(Base):
    """A payment handed to the on-call person; re-posted every interval until someone acknowledges it."""

    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_due", "next_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    escalated_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime]
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))  # the latest post
    rounds: Mapped[int] = mapped_column(Integer, default=1)
    next_at: Mapped[datetime | None]  # when to re-escalate; None once acknowledged or out of rounds
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))


class MessageEdit(Base):
    """Staff rewording of a payment's customer message; the latest `after` is what later resends say."""

    __tablename__ = "message_edits"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    before: Mapped[str] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    edited_by: Mapped[str] = mapped_column(String(120))
    edited_at: Mapped[datetime]


class Refusal(Base):
    """Refused webhooks, summarised: one row per source, reason class and remote per flush window, with a count.
    Outside the audit chain, so old rows are pruned (REFUSALS_RETENTION_DAYS)."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(40))
    remote: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(BigInteger)
    example: Mapped[str] = mapped_column(String(120))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime] = mapped_column(index=True)


class Consent(Base):
    """Whether an address may be messaged on a channel kind (`sms`: a phone number), as the person last said.

    One row per (channel, address), written when they opt out (STOP, or the provider refusing a send because they
    did) or back in (START). No row: nothing said, consent as given by the operator's customer record."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("channel", "address", name="uq_consents_channel_address"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))     # the customer preference: sms, whatsapp, …
    address: Mapped[str] = mapped_column(String(320))    # E.164 for sms
    opted_out: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text)            # "replied STOP", "twilio error 21610", …
    changed_at: Mapped[datetime]


class TeamsConversation(Base):
    """Where the Teams bot can post: a conversation reference (service URL, tenant, bot id) saved when the bot is
    installed in a team, channel or chat and refreshed on every activity, so proactive posts survive restarts.
    `removed_at` is set when the bot is uninstalled or removed: posting there fails at once, for good."""

    __tablename__ = "teams_conversations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(255), unique=True)
    service_url: Mapped[str] = mapped_column(String(500))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    conversation_type: Mapped[str | None] = mapped_column(String(20))  # personal | channel | groupChat
    reference: Mapped[dict[str, Any]]                                   # the Bot Framework ConversationReference
    updated_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]


class TeamsUser(Base):
    """A Teams user's display name, as their last activity gave it: cards show who acted by name, not by id."""

    __tablename__ = "teams_users"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    aad_object_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime]




class BcSubscription(Base):
    """A Business Central webhook subscription paybot created (`paybot subscribe business-central`) and renews
    before its 3-day expiry, or creates again when BC dropped it (`bot.services.bc_subscriptions`)."""

    __tablename__ = "bc_subscriptions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(200), unique=True)
    resource: Mapped[str] = mapped_column(String(500))
    notification_url: Mapped[str] = mapped_column(String(1000))
    etag: Mapped[str] = mapped_column(String(200))  # BC's @odata.etag: a renewal must send it back (If-Match)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
    renewed_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # renewals failed in a row
    last_error: Mapped[str | None] = mapped_column(String(300))
class OAuthToken(Base):
    """A platform's OAuth2 tokens for one tenant (QuickBooks realm, Xero tenant, …), kept across restarts: QuickBooks
    and Xero rotate the refresh token on every refresh, so the latest one must be saved before it is used.
    `lost_at` set: the refresh token is dead (revoked, expired); `paybot connect` replaces the row's tokens."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (UniqueConstraint("source", "tenant", name="uq_oauth_token_source_tenant"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    tenant: Mapped[str] = mapped_column(String(255))
    tenant_name: Mapped[str | None] = mapped_column(String(255))
    refresh_token: Mapped[str] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None]
    connected_at: Mapped[datetime]
    refreshed_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    lost_reason: Mapped[str | None] = mapped_column(String(255))
    refreshes: Mapped[int] = mapped_column(Integer, default=0)


class OAuthState(Base):
    """One `paybot connect` in progress: the `state` its consent URL carries, checked by the callback, used once."""

    __tablename__ = "oauth_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any] | None]  # what was connected (tenants and names), or the error


class SweepMark(Base):
    """The catch-up sweep's high-water mark per source and tenant: the platform's time the next sweep asks from."""

    __tablename__ = "sweep_marks"

    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(255), primary_key=True)
    mark: Mapped[datetime]
    swept_at: Mapped[datetime]
