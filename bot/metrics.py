"""Prometheus metrics, on a registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter("paybot_webhooks_received", "Webhooks accepted, by source and outcome",
                                ["source", "outcome"], registry=self.registry)
        self.rejected = Counter("paybot_webhooks_rejected", "Webhooks refused, by source and reason",
                                ["source", "reason"], registry=self.registry)
        self.webhook_seconds = Histogram("paybot_webhook_seconds", "Time to verify, store and answer a webhook",
                                         ["source"], registry=self.registry)
        self.deliveries = Counter("paybot_deliveries", "Delivery attempts, by channel and outcome",
                                  ["channel", "outcome"], registry=self.registry)
        self.possible_duplicates = Counter("paybot_possible_duplicates", "Messages sent again after a worker died "
                                           "mid-send, where the provider could not say whether it already had them",
                                           ["channel"], registry=self.registry)
        self.delivery_seconds = Histogram("paybot_delivery_seconds", "Provider call latency", ["channel"],
                                          registry=self.registry)
        self.outbox_depth = Gauge("paybot_outbox_depth", "Notifications by status", ["status"],
                                  registry=self.registry)
        self.waiting = Gauge("paybot_webhooks_waiting", "Verified thin notifications waiting to be read from their "
                             "platform, by source", ["source"], registry=self.registry)
