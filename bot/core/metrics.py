"""Prometheus metrics (prometheus_client): what this process counts, and what the database holds.

Counters and histograms are this process's own: Prometheus scrapes every replica and sums them.
What the database holds (applications by status, the outbox by state and by channel) is the same
seen from any replica, so only the one holding the `metrics` lease exports it (`DatabaseMetrics`):
a sum over replicas counts it once, and when that replica stops another takes the lease over within
a few turns of the periodic job. `isiqbot_metrics_reporter` says which replica it is.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dialogs.lifecycle import Status
from storage import applications, leases, outbox
from storage.db import Database, as_utc, storage_unavailable

log = logging.getLogger(__name__)
LEASE = "metrics"
STATUSES = tuple(status.value for status in Status)
# Updates: from arrival to the answer decided, stored and committed (the send is the channel's).
ANSWER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Notifications: from queued to sent, news waiting for a storm's budget included.
DELAY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

UPDATES = Counter(
    "isiqbot_updates",
    "Updates received, by channel and outcome: handled, repeated (delivered again), failed (a bug; "
    "the person got an apology), unavailable (the database was away; the platform re-delivers).",
    ["channel", "outcome"],
)
ANSWER = Histogram(
    "isiqbot_update_seconds", "Time to handle an update, by channel.", ["channel"], buckets=ANSWER_BUCKETS
)
SENDS = Counter(
    "isiqbot_sends",
    "Outbox sends by channel and result: sent, retry (a temporary failure), failed (given up).",
    ["channel", "result"],
)
SEND_DELAY = Histogram(
    "isiqbot_send_delay_seconds", "From queued to sent, by channel.", ["channel"], buckets=DELAY_BUCKETS
)
RATE_LIMITED = Counter(
    "isiqbot_rate_limited", "Requests a platform refused as too many (Telegram 429), by channel.", ["channel"]
)
CODES = Counter(
    "isiqbot_codes",
    "One-time codes: sent, or refused (too many to a phone or from a chat, or asked again too soon).",
    ["result"],
)
REPORTER = Gauge(
    "isiqbot_metrics_reporter", "1 on the replica that exports the database-wide metrics, else 0."
)


def handled(channel: str, outcome: str, seconds: float) -> None:
    UPDATES.labels(channel, outcome).inc()
    ANSWER.labels(channel).observe(seconds)


def sent(channel: str, seconds_since_queued: float) -> None:
    SENDS.labels(channel, "sent").inc()
    SEND_DELAY.labels(channel).observe(max(seconds_since_queued, 0.0))


def not_sent(channel: str, given_up: bool) -> None:
    SENDS.labels(channel, "failed" if given_up else "retry").inc()


def holder_id() -> str:
    """This process among the replicas: host, pid and a random part (pids repeat across containers)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DatabaseMetrics:
    """The database-wide gauges, exported by the replica that holds the `metrics` lease.

    `renew` is a periodic job of the outbox worker; `families` is read at each scrape.
    """

    def __init__(self, db: Database, period: float, holder: str | None = None) -> None:
        self.db = db
        self.holder = holder or holder_id()
        self.ttl = timedelta(seconds=max(3 * period, 30.0))  # a few missed turns before a takeover
        self.reporting = False

    async def renew(self, now: datetime) -> None:
        try:
            async with self.db.transaction() as session:
                self.reporting = await leases.hold(session, LEASE, self.holder, now, self.ttl)
        except Exception:
            self.reporting = False  # unsure: another replica may take the lease over meanwhile
            raise
        finally:
            REPORTER.set(1 if self.reporting else 0)

    async def release(self, now: datetime) -> None:
        if self.reporting:
            async with self.db.transaction() as session:
                await leases.release(session, LEASE, self.holder, now)
            self.reporting = False
            REPORTER.set(0)

    async def families(self, now: datetime) -> list[GaugeMetricFamily]:
        """The gauges, read in one transaction; none on a replica that does not report them."""
        if not self.reporting:
            return []
        try:
            async with self.db.transaction() as session:
                statuses = await applications.count_by_status(session)
                states = await outbox.counts_by_state(session)
                due = await outbox.due_by_channel(session, now)
        except Exception as exc:
            if not storage_unavailable(exc):
                raise
            log.warning("/metrics without the database's figures: it is away (%s)", type(exc).__name__)
            return []  # this process's own metrics still go out; /readyz says the database is away
        by_status = GaugeMetricFamily("isiqbot_applications", "Applications by status.", labels=["status"])
        for status in sorted({*STATUSES, *statuses}):  # every status, 0 too: absent is not zero
            by_status.add_metric([status], statuses.get(status, 0))
        by_state = GaugeMetricFamily("isiqbot_outbox", "Notifications by state.", labels=["state"])
        for state in sorted({*outbox.STATES, *states}):
            by_state.add_metric([state], states.get(state, 0))
        depth = GaugeMetricFamily(
            "isiqbot_outbox_due", "Notifications due and not sent, by channel.", labels=["channel"]
        )
        oldest = GaugeMetricFamily(
            "isiqbot_outbox_oldest_due_seconds",
            "How long the longest-waiting due notification has been due, by channel.",
            labels=["channel"],
        )
        for channel, (count, since) in sorted(due.items()):
            depth.add_metric([channel], count)
            oldest.add_metric([channel], max((now - as_utc(since)).total_seconds(), 0.0))
        return [by_status, by_state, depth, oldest]


class _Families(Collector):
    def __init__(self, families: Iterable[GaugeMetricFamily]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families


async def exposition(database: DatabaseMetrics | None, clock: Callable[[], datetime]) -> bytes:
    """The text format: this process's metrics, then the database's where this replica reports them."""
    body = generate_latest(REGISTRY)
    if database is not None:
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Families(await database.families(clock())))
        body += generate_latest(snapshot)
    return body
