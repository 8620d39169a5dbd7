"""Transactional outbox: domain events are written in the transaction that caused them, then
delivered at-least-once to each subscriber, with per-subscriber delivery records and retries."""
