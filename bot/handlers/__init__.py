"""Inbound surfaces: HTTP webhooks, health and metrics, Slack, Teams."""
