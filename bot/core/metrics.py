"""What this process counts for `/metrics`, besides what the database knows (applications, outbox)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict

BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.updates: Counter[str] = Counter()
        self.latency: defaultdict[str, Histogram] = defaultdict(Histogram)

    def handled(self, channel: str) -> None:
        self.updates[channel] += 1

    def sent(self, channel: str, seconds_since_queued: float) -> None:
        self.latency[channel].observe(max(seconds_since_queued, 0.0))

    def lines(self) -> list[str]:
        out = [
            "# HELP isiqbot_updates_total Updates handled, by channel.",
            "# TYPE isiqbot_updates_total counter",
            *(f'isiqbot_updates_total{{channel="{c}"}} {n}' for c, n in sorted(self.updates.items())),
            "# HELP isiqbot_send_latency_seconds From queued to sent, by channel.",
            "# TYPE isiqbot_send_latency_seconds histogram",
        ]
        for channel, histogram in sorted(self.latency.items()):
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f'isiqbot_send_latency_seconds_bucket{{channel="{channel}",le="{le}"}} {running}')
            out.append(f'isiqbot_send_latency_seconds_sum{{channel="{channel}"}} {histogram.total:.3f}')
            out.append(f'isiqbot_send_latency_seconds_count{{channel="{channel}"}} {histogram.n}')
        return out


METRICS = Metrics()
