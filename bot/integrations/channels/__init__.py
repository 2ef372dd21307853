"""The channel registry: every module here, listed once by provider name."""

from __future__ import annotations

from bot.integrations.base import registry
from bot.integrations.channels.base import ChannelFactory
from bot.integrations.channels.sendgrid import SendGridChannel
from bot.integrations.channels.slack import SlackChannel
from bot.integrations.channels.hubspot import HubSpotChannel
from bot.integrations.channels.activecampaign import ActiveCampaignChannel
from bot.integrations.channels.klaviyo import KlaviyoChannel
from bot.integrations.channels.intercom import IntercomChannel
from bot.integrations.channels.twilio import TwilioChannel
from bot.integrations.channels.teams import TeamsChannel
from bot.integrations.channels.whatsapp import WhatsAppChannel
from bot.integrations.channels.mailgun import MailgunChannel
from bot.integrations.channels.pusher_beams import PusherBeamsChannel

_ALL: tuple[ChannelFactory, ...] = (
    SendGridChannel,
    SlackChannel,
    HubSpotChannel,
    ActiveCampaignChannel,
    KlaviyoChannel,
    IntercomChannel,
    TwilioChannel,
    TeamsChannel,
    WhatsAppChannel,
    MailgunChannel,
    PusherBeamsChannel,
)
CHANNELS: dict[str, ChannelFactory] = registry(*_ALL)
