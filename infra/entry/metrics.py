"""Prometheus metrics of one application (its own registry: tests and apps never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EntryMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sceneos_http_requests", "HTTP requests answered", ["method", "route", "status", "tenant", "partner"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sceneos_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.refusals = Counter(
            "sceneos_entry_refusals", "Partner requests refused by the entry", ["code"], registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "sceneos_entry_idempotent_replays", "Answers replayed from an idempotency key", ["tenant", "partner"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "sceneos_webhook_deliveries", "Webhook POSTs tried", ["tenant", "partner", "outcome"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "sceneos_webhook_delivery_duration_seconds", "Time a partner took to answer a webhook",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
