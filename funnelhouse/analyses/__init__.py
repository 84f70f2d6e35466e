"""Analyses over the tables — trends, funnels, retention, flows, pages, purchase counts,
timeline — as SQL.

Each analysis has a typed spec (`FunnelSpec.from_json(...)`), a `build_sql` that returns the
SQL text with named `{name:Type}` parameters, and a `run_*` that runs it and returns an
`AnalysisResult` (the main table, headline numbers, the SQL and its parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from funnelhouse.analyses.common import AnalysisResult, SpecError
from funnelhouse.analyses.correlation import CorrelationSpec, run_correlation
from funnelhouse.analyses.flows import FlowsSpec, run_flows
from funnelhouse.analyses.funnel import FunnelSpec, run_funnel
from funnelhouse.analyses.pages import PagesSpec, run_pages
from funnelhouse.analyses.paths import PathsSpec, run_paths
from funnelhouse.analyses.purchases import PurchasesSpec, run_purchases
from funnelhouse.analyses.retention import RetentionSpec, run_retention
from funnelhouse.analyses.stickiness import StickinessSpec, run_stickiness
from funnelhouse.analyses.timeline import TimelineSpec, run_timeline
from funnelhouse.analyses.trends import TrendsSpec, run_trends
from funnelhouse.warehouse.base import Warehouse

__all__ = ["ANALYSES", "AnalysisResult", "CorrelationSpec", "FlowsSpec", "FunnelSpec",
           "PagesSpec", "PathsSpec", "PurchasesSpec", "RetentionSpec", "SpecError",
           "StickinessSpec", "TimelineSpec", "TrendsSpec", "run_analysis"]

# name → (spec parser, runner)
ANALYSES: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[..., AnalysisResult]]] = {
    "funnel": (FunnelSpec.from_json, run_funnel),
    "retention": (RetentionSpec.from_json, run_retention),
    "paths": (PathsSpec.from_json, run_paths),
    "timeline": (TimelineSpec.from_json, run_timeline),
    "trends": (TrendsSpec.from_json, run_trends),
    "stickiness": (StickinessSpec.from_json, run_stickiness),
    "flows": (FlowsSpec.from_json, run_flows),
    "pages": (PagesSpec.from_json, run_pages),
    "correlation": (CorrelationSpec.from_json, run_correlation),
    "purchases": (PurchasesSpec.from_json, run_purchases),
}


def run_analysis(name: str, doc: dict[str, Any], warehouse: Warehouse,
                 reporting_tz: str = "UTC") -> AnalysisResult:
    """Parse a JSON spec and run the named analysis (what the CLI and the HTTP API share)."""
    if name not in ANALYSES:
        raise SpecError(f"unknown analysis {name!r}")
    parse, run = ANALYSES[name]
    return run(warehouse, parse(doc), reporting_tz)
