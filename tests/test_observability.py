"""The alert rules and the Grafana dashboard in deploy/ ask only for metrics that isiqbot exports.

A renamed metric would leave an alert that never fires, silently; these tests read the names from the
exporter itself (this process's registry, and the database-wide gauges as a reporting replica makes
them from a real database), not from a list kept by hand.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from bot.core.metrics import DatabaseMetrics
from storage.db import Database

DEPLOY = Path(__file__).parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "isiqbot.json"
NAME = re.compile(r"\bisiqbot_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


@pytest.fixture
async def exported(sample_db: Database) -> set[str]:
    """Every series name a reporting replica exports."""
    names = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("isiqbot")
        for suffix in SUFFIXES.get(family.type, ("",))
    }
    database = DatabaseMetrics(sample_db, period=60)
    now = datetime.now(UTC)
    await database.renew(now)
    assert database.reporting
    names |= {family.name for family in await database.families(now)}
    return names


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def panel_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


async def test_every_alert_and_panel_asks_for_an_exported_metric(exported: set[str]) -> None:
    assert {"isiqbot_updates_total", "isiqbot_outbox_oldest_due_seconds", "isiqbot_applications"} <= exported
    queries = [str(rule["expr"]) for rule in rules()] + panel_queries()
    asked = {name for query in queries for name in NAME.findall(query)}
    assert asked, "no isiqbot metric is used"
    assert asked - exported == set()
    # and every metric isiqbot exports is on the dashboard
    shown = {name for query in panel_queries() for name in NAME.findall(query)}
    bases = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    assert {base for base in bases if base != "isiqbot_metrics_reporter"} <= {
        re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown
    }


def test_the_alerts_cover_what_an_operator_must_hear_about() -> None:
    by_name = {str(rule["alert"]): rule for rule in rules()}
    for rule in by_name.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"]))
    stuck = str(by_name["IsiqbotOutboxStuck"]["expr"])
    assert "isiqbot_outbox_oldest_due_seconds" in stuck and "> 300" in stuck  # older than 5 minutes
    assert "isiqbot_rate_limited_total" in str(by_name["IsiqbotRateLimited"]["expr"])
    assert "/readyz" in (ALERTS.read_text(encoding="utf-8")) and "probe_success" in str(
        by_name["IsiqbotNotReady"]["expr"]
    )
    assert "isiqbot_updates_total" in str(by_name["IsiqbotNoUpdates"]["expr"])


def test_the_dashboard_is_one_grafana_document() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "isiqbot"
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"])
        assert panel["datasource"]["uid"] == "${datasource}"
