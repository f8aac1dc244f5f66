"""Generate the chart's Grafana dashboard with grafana-foundation-sdk.

The dashboard is code: this script builds it and writes
``charts/chromadb/files/dashboard.json`` (shipped by ``templates/monitoring/configmap-dashboard.yaml``).
``make dashboard`` runs it; ``--check`` fails when the committed JSON is stale.

Every query selects the release with ``$namespace`` and ``$job`` (the metrics Service's name,
which the ServiceMonitor and the PodMonitor both give as ``job``). ``PANELS`` lists every
panel's queries, so that tests can run each one against a real Prometheus.

Usage: python scripts/dashboard.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableHide, VariableRefresh

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "charts" / "chromadb" / "files" / "dashboard.json"
UID = "chromadb-chart-overview"

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
S = 'namespace="$namespace", job="$job"'
#: cAdvisor and kube-state-metrics series (present in kube-prometheus-stack, not from chromactl).
POD = 'namespace="$namespace", pod=~"$pod"'


@dataclass(frozen=True)
class PanelSpec:
    """One panel: title, kind, unit and its queries (expression, legend)."""

    row: str
    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 8


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return (" ".join(expr.split()), legend)


def rate(metric: str, by: str = "", extra: str = "") -> str:
    sel = f"{S}, {extra}" if extra else S
    inner = f"rate({metric}{{{sel}}}[$__rate_interval])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(qv: float, metric: str, by: str = "", extra: str = "") -> str:
    sel = f"{S}, {extra}" if extra else S
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({qv}, sum by ({labels}) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))"


PANELS: tuple[PanelSpec, ...] = (
    # -- overview
    PanelSpec(
        "Overview",
        "Chroma up",
        (q(f"max(chromactl_chroma_up{{{S}}})"),),
        "bool_yes_no",
        "stat",
        "Chroma answers its heartbeat (read by the gateway).",
        4,
    ),
    PanelSpec(
        "Overview",
        "Chroma ready",
        (q(f"max(chromactl_chroma_ready{{{S}}})"),),
        "bool_yes_no",
        "stat",
        "Chroma's healthcheck answers 200.",
        4,
    ),
    PanelSpec(
        "Overview",
        "Requests per second",
        (q(rate("chromactl_gateway_requests_total")),),
        "reqps",
        "stat",
        width=4,
    ),
    PanelSpec(
        "Overview",
        "5xx ratio",
        (
            q(
                f'(sum(rate(chromactl_gateway_requests_total{{{S}, status_class="5xx"}}[$__rate_interval]))'
                " or vector(0))"
                f" / sum(rate(chromactl_gateway_requests_total{{{S}}}[$__rate_interval]))"
            ),
        ),
        "percentunit",
        "stat",
        width=4,
    ),
    PanelSpec(
        "Overview", "Collections", (q(f"sum(chromactl_chroma_collections{{{S}}})"),), "short", "stat", width=4
    ),
    PanelSpec("Overview", "Records", (q(f"sum(chromactl_chroma_records{{{S}}})"),), "short", "stat", width=4),
    # -- traffic
    PanelSpec(
        "Traffic",
        "Requests by operation",
        (q(rate("chromactl_gateway_requests_total", "operation"), "{{operation}}"),),
        "reqps",
    ),
    PanelSpec(
        "Traffic",
        "Errors by operation",
        (
            q(
                rate(
                    "chromactl_gateway_requests_total", "operation, status_class", 'status_class=~"4xx|5xx"'
                ),
                "{{operation}} {{status_class}}",
            ),
        ),
        "reqps",
    ),
    PanelSpec(
        "Traffic",
        "Requests by tenant and database",
        (
            q(
                rate("chromactl_gateway_requests_total", "tenant, database", 'tenant!=""'),
                "{{tenant}}/{{database}}",
            ),
        ),
        "reqps",
    ),
    PanelSpec(
        "Traffic",
        "Requests in flight",
        (q(f"sum(chromactl_gateway_requests_in_flight{{{S}}})", "in flight"),),
    ),
    PanelSpec(
        "Traffic",
        "Records written per second",
        (q(rate("chromactl_gateway_write_records_sum", "operation"), "{{operation}}"),),
        "short",
    ),
    PanelSpec(
        "Traffic",
        "Request and response bytes per second",
        (
            q(rate("chromactl_gateway_request_size_bytes_sum"), "received"),
            q(rate("chromactl_gateway_response_size_bytes_sum"), "sent"),
        ),
        "Bps",
    ),
    # -- latency
    PanelSpec(
        "Latency",
        "Latency percentiles",
        (
            q(quantile(0.5, "chromactl_gateway_request_duration_seconds"), "p50"),
            q(quantile(0.9, "chromactl_gateway_request_duration_seconds"), "p90"),
            q(quantile(0.99, "chromactl_gateway_request_duration_seconds"), "p99"),
        ),
        "s",
    ),
    PanelSpec(
        "Latency",
        "p99 latency by operation",
        (q(quantile(0.99, "chromactl_gateway_request_duration_seconds", "operation"), "{{operation}}"),),
        "s",
    ),
    PanelSpec(
        "Latency",
        "p99 latency by tenant and database",
        (
            q(
                quantile(0.99, "chromactl_gateway_database_request_duration_seconds", "tenant, database"),
                "{{tenant}}/{{database}}",
            ),
        ),
        "s",
    ),
    PanelSpec(
        "Latency",
        "p90 request size by operation",
        (q(quantile(0.9, "chromactl_gateway_request_size_bytes", "operation"), "{{operation}}"),),
        "bytes",
    ),
    PanelSpec(
        "Latency",
        "p90 response size by operation",
        (q(quantile(0.9, "chromactl_gateway_response_size_bytes", "operation"), "{{operation}}"),),
        "bytes",
    ),
    PanelSpec(
        "Latency",
        "p90 records per write",
        (q(quantile(0.9, "chromactl_gateway_write_records", "operation"), "{{operation}}"),),
        "short",
    ),
    # -- security
    PanelSpec(
        "Security",
        "Authentication failures by reason",
        (q(rate("chromactl_gateway_auth_failures_total", "reason"), "{{reason}}"),),
        "reqps",
    ),
    PanelSpec(
        "Security",
        "Authorization denials",
        (
            q(
                rate("chromactl_gateway_authorization_denied_total", "reason, operation"),
                "{{reason}} {{operation}}",
            ),
        ),
        "reqps",
    ),
    PanelSpec(
        "Security",
        "Audited decisions by class and outcome",
        (q(rate("chromactl_gateway_audit_events_total", "class, outcome"), "{{class}} {{outcome}}"),),
        "reqps",
    ),
    PanelSpec(
        "Security",
        "Refused over a rate limit or quota (gateway.limits), by rule and limit",
        (q(rate("chromactl_gateway_limited_requests_total", "scope, limit"), "{{scope}} {{limit}}"),),
        "reqps",
    ),
    PanelSpec(
        "Security",
        "Cross-tenant refusals and rejections",
        (
            q(
                rate("chromactl_gateway_cross_tenant_refusals_total", "operation"),
                "cross-tenant {{operation}}",
            ),
            q(rate("chromactl_gateway_rejected_requests_total", "reason"), "{{reason}}"),
        ),
        "reqps",
    ),
    PanelSpec(
        "Security",
        "TLS certificate expires in",
        (q(f"min(chromactl_gateway_tls_certificate_expiry_timestamp_seconds{{{S}}}) - time()"),),
        "s",
        "stat",
        "Time left on the gateway's certificate (only with gateway TLS).",
        8,
    ),
    # -- data
    PanelSpec(
        "Data",
        "Records by collection",
        (
            q(
                f"sum by (tenant, database, collection) (chromactl_chroma_records{{{S}}})",
                "{{tenant}}/{{database}}/{{collection}}",
            ),
        ),
        "short",
    ),
    PanelSpec(
        "Data",
        "Collections by database",
        (q(f"sum by (tenant, database) (chromactl_chroma_collections{{{S}}})", "{{tenant}}/{{database}}"),),
        "short",
    ),
    PanelSpec(
        "Data",
        "Write log and unpersisted records",
        (
            q(f"sum(chromactl_chroma_write_log_records{{{S}}})", "write log"),
            q(f"sum(chromactl_chroma_unpersisted_records{{{S}}})", "not yet in the vector index"),
        ),
        "short",
    ),
    # -- volume
    PanelSpec(
        "Volume",
        "Volume used",
        (
            q(
                f"1 - max(chromactl_chroma_volume_free_bytes{{{S}}})"
                f" / max(chromactl_chroma_volume_size_bytes{{{S}}})",
                "used",
            ),
        ),
        "percentunit",
    ),
    PanelSpec(
        "Volume",
        "Data size",
        (
            q(f"max(chromactl_chroma_sqlite_bytes{{{S}}})", "SQLite"),
            q(f"max(chromactl_chroma_segment_bytes{{{S}}})", "vector segments"),
            q(f"max(chromactl_chroma_volume_free_bytes{{{S}}})", "free"),
        ),
        "bytes",
    ),
    PanelSpec(
        "Volume",
        "Volume growth",
        (q(f"-deriv(max(chromactl_chroma_volume_free_bytes{{{S}}})[30m:])", "bytes per second"),),
        "Bps",
        description="How fast free space shrinks (positive: filling).",
    ),
    # -- backups
    PanelSpec(
        "Backups",
        "Last successful backup",
        (q(f"time() - max(chromactl_backup_last_success_timestamp_seconds{{{S}}})"),),
        "s",
        "stat",
        width=6,
    ),
    PanelSpec(
        "Backups",
        "Last backup outcome",
        (q(f"min(chromactl_backup_last_outcome{{{S}}})"),),
        "bool_yes_no",
        "stat",
        width=6,
    ),
    PanelSpec(
        "Backups",
        "Backup runs by outcome",
        (q(f"sum by (outcome) (increase(chromactl_backup_runs_total{{{S}}}[1d]))", "{{outcome}}"),),
        "short",
        width=6,
    ),
    PanelSpec(
        "Backups", "Backup size", (q(f"max(chromactl_backup_size_bytes{{{S}}})", "size"),), "bytes", width=6
    ),
    PanelSpec(
        "Backups",
        "Backup duration p90",
        (q(quantile(0.9, "chromactl_backup_duration_seconds"), "p90"),),
        "s",
        width=12,
    ),
    PanelSpec(
        "Backups",
        "Write-hold time p99",
        (q(quantile(0.99, "chromactl_backup_hold_seconds"), "p99"),),
        "s",
        width=12,
    ),
    PanelSpec(
        "Backups",
        "Write holds given back per hour (a collection rewritten during the catch-up)",
        (q(f"sum(increase(chromactl_backup_holds_given_back_total{{{S}}}[1h]))", "given back"),),
        "short",
        width=12,
    ),
    PanelSpec(
        "Backups",
        "Off-site copies: last outcome by target",
        (q(f"min by (target) (chromactl_backup_copy_last_outcome{{{S}}})", "{{target}}"),),
        "bool_yes_no",
        width=8,
    ),
    PanelSpec(
        "Backups",
        "Last passing restore drill (age)",
        (q(f"time() - max(chromactl_backup_drill_last_success_timestamp_seconds{{{S}}})"),),
        "s",
        "stat",
        width=8,
    ),
    PanelSpec(
        "Backups",
        "Earliest recoverable point (age)",
        (q(f"time() - min(chromactl_backup_earliest_recoverable_timestamp_seconds{{{S}}})"),),
        "s",
        "stat",
        width=8,
    ),
    PanelSpec(
        "Backups",
        "Bytes in the backup target",
        (q(f"max(chromactl_backup_repository_bytes{{{S}}})", "stored"),),
        "bytes",
        width=8,
    ),
    # -- continuous backup
    PanelSpec(
        "Continuous backup",
        "Journal lag (recovery point) and its goal",
        (
            q(f"max(chromactl_backup_journal_lag_seconds{{{S}}})", "lag"),
            q(f"max(chromactl_backup_journal_max_lag_seconds{{{S}}})", "goal"),
        ),
        "s",
        width=8,
        description="Age of the oldest acknowledged write not yet in the backup target.",
    ),
    PanelSpec(
        "Continuous backup",
        "Journal shipped",
        (
            q(f"sum(rate(chromactl_backup_journal_entries_total{{{S}}}[$__rate_interval]))", "entries/s"),
            q(f"sum(rate(chromactl_backup_journal_bytes_total{{{S}}}[$__rate_interval]))", "bytes/s"),
        ),
        "short",
        width=8,
    ),
    PanelSpec(
        "Continuous backup",
        "Journal breaks (each starts a new base snapshot)",
        (q(f"sum(increase(chromactl_backup_journal_breaks_total{{{S}}}[1d]))", "breaks"),),
        "short",
        width=8,
    ),
    # -- pod
    PanelSpec(
        "Pod",
        "CPU by container",
        (
            q(
                "sum by (container) (rate(container_cpu_usage_seconds_total"
                f'{{{POD}, container!=""}}[$__rate_interval]))',
                "{{container}}",
            ),
        ),
        "short",
    ),
    PanelSpec(
        "Pod",
        "Memory by container",
        (
            q(
                f'sum by (container) (container_memory_working_set_bytes{{{POD}, container!=""}})',
                "{{container}}",
            ),
        ),
        "bytes",
    ),
    PanelSpec(
        "Pod",
        "Restarts",
        (
            q(
                f"sum by (container) (increase(kube_pod_container_status_restarts_total{{{POD}}}[1h]))",
                "{{container}}",
            ),
        ),
        "short",
    ),
)


def _panel(spec: PanelSpec, panel_id: int) -> stat.Panel | timeseries.Panel:
    panel: stat.Panel | timeseries.Panel
    if spec.kind == "stat":
        panel = (
            stat.Panel()
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(common.BigValueGraphMode.AREA)
        )
    else:
        panel = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(
                cb.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
            )
        )
    panel = (
        panel.id(panel_id)
        .title(spec.title)
        .datasource(DS)
        .unit(spec.unit)
        .span(spec.width)
        .height(4 if spec.kind == "stat" else 8)
    )
    if spec.description:
        panel = panel.description(spec.description)
    for ref, (expr, legend) in zip("ABCDEFGH", spec.queries, strict=False):
        target = prometheus.Dataquery().ref_id(ref).expr(expr).range()
        if legend:
            target = target.legend_format(legend)
        panel = panel.with_target(target)
    return panel


def _label_variable(name: str, label: str, query: str, *, multi: bool = False) -> db.QueryVariable:
    var = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(1)
    )
    if multi:
        var = var.multi(True).include_all(True)
    return var


def build() -> dict[str, object]:
    dash = (
        db.Dashboard("Chroma")
        .uid(UID)
        .description(
            "Chroma behind the chromactl gateway: traffic, errors, latency, security, data, backups."
        )
        .tags(["chroma", "chromadb", "vector-database"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            db.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .hide(VariableHide.DONT_HIDE)
        )
        .with_variable(
            _label_variable(
                "namespace", "Namespace", "label_values(chromactl_gateway_requests_in_flight, namespace)"
            )
        )
        .with_variable(
            _label_variable(
                "job",
                "Release",
                'label_values(chromactl_gateway_requests_in_flight{namespace="$namespace"}, job)',
            )
        )
        .with_variable(
            _label_variable(
                "pod",
                "Pod",
                'label_values(chromactl_gateway_requests_in_flight{namespace="$namespace", job="$job"}, pod)',
                multi=True,
            )
        )
    )
    row = ""
    panel_id = 0
    for spec in PANELS:
        if spec.row != row:
            row = spec.row
            panel_id += 1
            dash = dash.with_row(db.Row(row).id(panel_id))
        panel_id += 1
        dash = dash.with_panel(_panel(spec, panel_id))
    built = dash.build()
    doc: dict[str, object] = json.loads(json.dumps(built, cls=JSONEncoder, sort_keys=True))
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(PANELS)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
