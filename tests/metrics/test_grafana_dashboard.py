"""conf.d/grafana/autonomys-farmer.json loads as a Grafana dashboard and every query in it names
only metrics that services.metrics registers (so a renamed metric breaks this test, not a screen)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.metrics import all_metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "conf.d" / "grafana" / "autonomys-farmer.json"
METRIC = re.compile(r"\b(?:subspace_farmer|process)_[A-Za-z0-9_]+\b")


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_dashboard_is_loadable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_query_names_registered_metrics():
    registered = all_metric_names()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(panel["title"], target["expr"]) for panel in panels(dashboard) for target in panel.get("targets", [])]
    queries += [(v["name"], v["definition"]) for v in dashboard["templating"]["list"] if v.get("definition")]
    assert len(queries) > 50
    used: set[str] = set()
    for title, expr in queries:
        names = METRIC.findall(expr)
        assert names, (title, expr)
        unknown = [name for name in names if name not in registered]
        assert not unknown, (title, unknown)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (title, expr)
        used.update(names)
    # the official farmer's headline measures are on the screen
    for name in ("subspace_farmer_farm_auditing_time_seconds_bucket", "subspace_farmer_farm_proving_time_seconds_bucket",
                 "subspace_farmer_farm_sectors_total_Sectors", "subspace_farmer_farm_skipped_slots_total",
                 "subspace_farmer_plotter_sector_plotting_time_seconds_bucket",
                 "subspace_farmer_farmer_cache_cache_get_hit_Requests_total"):
        assert name in used, name
