"""Settings: read once from env vars and an optional TOML file, passed everywhere else.

Precedence: explicit keyword arguments (tests) > env vars > config file > defaults.
The config file is `$FUNNELHOUSE_CONFIG`, else `<data_dir>/funnelhouse.toml` if it exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Data that ships inside the package (works from a wheel, not only a checkout).
PACKAGE_ROOT = Path(__file__).resolve().parent
# A source checkout (dev tools only: benchmarks, the Kafka Maven project).
REPO_ROOT = PACKAGE_ROOT.parent

Policy = Literal["allow", "flag", "reject"]
KeyKind = Literal["browser", "server"]


@dataclass(frozen=True)
class WriteKey:
    """One write key: which source it writes as and what it may do."""

    key: str
    source: str
    kind: KeyKind = "browser"
    # Browser keys may be limited to origins; empty means any origin.
    allowed_origins: tuple[str, ...] = ()
    # What to do with events the plan does not know, and with properties it does not list.
    unknown_events: Policy = "flag"
    extra_properties: Policy = "flag"
    # Events per second for this key (token bucket); 0 disables the limit.
    rate_limit: float = 0.0
    # Personal fields: how to store the IP ("truncate" | "hash" | "drop" | "keep"), and
    # property/trait fields (dotted paths, e.g. "email", "address.street") to hash or drop.
    ip_policy: str = "truncate"
    hash_fields: tuple[str, ...] = ()
    drop_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 512 * 1024          # 413 above this (compressed size as sent)
    max_decompressed_bytes: int = 4 * 1024 * 1024
    max_events_per_batch: int = 2500
    max_event_bytes: int = 32 * 1024          # one oversized event is rejected alone
    max_depth: int = 12                       # nesting depth of one event
    max_string_length: int = 8192
    max_future_skew_seconds: int = 24 * 3600  # later than this: clamp to received_at
    max_past_days_browser: int = 30           # older than this from a browser key: clamp


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".funnelhouse")
    host: str = "127.0.0.1"
    port: int = 8080
    write_keys: tuple[WriteKey, ...] = ()
    admin_token: str = ""
    trusted_proxies: tuple[str, ...] = ()      # CIDRs whose X-Forwarded-For we believe
    limits: Limits = field(default_factory=Limits)
    dedup_window_seconds: int = 600
    dedup_window_size: int = 200_000
    plan_dir: Path = PACKAGE_ROOT / "schemas"
    sql_dir: Path = PACKAGE_ROOT / "sql"
    console_dir: Path = PACKAGE_ROOT / "console_dist"   # the built web console (/console)
    # Queue: the durable on-disk log, or Kafka when bootstrap servers are set.
    queue_fsync: Literal["full", "normal"] = "full"
    kafka_bootstrap: str = ""
    kafka_topic_events: str = "funnelhouse.events"
    kafka_topic_invalid: str = "funnelhouse.invalid"
    kafka_partitions: int = 6
    kafka_group: str = "funnelhouse-loader"
    kafka_replication_factor: int = 1         # 3 on a real cluster
    kafka_ack_timeout_seconds: float = 2.0    # slower than this: spool to disk, answer anyway
    kafka_retention_hours: int = 168
    # A batch of under 4 rows may wait this long for more (0: off). 5 ms, as Kafka's
    # own producer and librdkafka: fewer, fuller produce requests (docs/scaling.md).
    kafka_linger_ms: float = 5.0
    # How the producer compresses a batch (Kafka's codecs, or "none"). zstd: 92 bytes an
    # event on the broker's disk against lz4's 137, and less collector CPU, since
    # aiokafka's lz4 is the slow high-compression level (docs/benchmarks.md, 2026-12-05).
    kafka_compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "zstd"
    # Warehouse: embedded chdb in <data_dir>/warehouse unless a server URL is given.
    clickhouse_url: str = ""
    # Rows a loader batch takes at most (it closes after loader_batch_seconds anyway, so
    # this bounds catching up). Each batch leaves new parts in events_raw that merges
    # rewrite; fewer, bigger parts mean fewer rewrites: 200k drained a 2M-event
    # warehouse 1.4-1.5x faster than 50k, for ~0.5 GB more at the peak
    # (docs/benchmarks.md, 2026-12-05 midday).
    loader_batch_rows: int = 200_000
    loader_batch_seconds: float = 0.5
    loader_port: int = 9464                  # the standalone loader's /metrics
    collector_workers: int = 2
    segments_interval_minutes: float = 60     # `up` re-materialises segments this often
    # Roles that need the schema (loader, serve, collector with /v1/sql) wait this long
    # for `funnelhouse migrate` to have applied the shipped migrations, then exit.
    migration_wait_seconds: float = 120.0
    # Scheduled jobs hold a lease in the warehouse for this long, renewed every third.
    job_lease_seconds: float = 60.0
    # Models and reporting.
    reporting_tz: str = "UTC"
    session_gap_minutes: int = 30
    lookback_days: int = 3
    models_interval_seconds: int = 300
    # Models built at once, each on its connection once what it reads is built
    # (models/schedule.py); 1 builds them one by one.
    model_threads: int = 2
    export_time: str = "02:00"               # local time (reporting_tz) of the nightly export
    export_formats: tuple[str, ...] = ("csv", "parquet")
    # Per-query limits of user SQL (/v1/sql, `funnelhouse sql`, SQL segments); a query
    # that exceeds one is stopped and answered 400 `query_limit`.
    sql_max_seconds: float = 30.0
    sql_max_result_rows: int = 1_000_000
    sql_max_result_bytes: int = 100 * 1024 * 1024
    sql_max_memory_bytes: int = 2 * 1024 * 1024 * 1024
    # The one folder exports are written under (default <data_dir>/exports); the HTTP
    # API may only name sub-folders of it.
    export_root: Path | None = None
    # HTTP edge: a client gets this long to send its headers, and (in total time spent
    # waiting for it) its body; slower ones are answered 408 and disconnected.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # TLS for the collector and `up`: PEM certificate (chain) and key; empty = plain HTTP.
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.sqlite3"

    @property
    def export_dir(self) -> Path:
        return self.export_root or self.data_dir / "exports"

    def key(self, key: str) -> WriteKey | None:
        return _key_index(self.write_keys).get(key)

    def is_trusted_proxy(self, ip: str) -> bool:
        return any(_in_network(ip, cidr) for cidr in self.trusted_proxies)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_KEY_INDEX_CACHE: dict[int, dict[str, WriteKey]] = {}


def _key_index(keys: tuple[WriteKey, ...]) -> dict[str, WriteKey]:
    index = _KEY_INDEX_CACHE.get(id(keys))
    if index is None:
        index = {k.key: k for k in keys}
        _KEY_INDEX_CACHE[id(keys)] = index
    return index


def _in_network(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def parse_write_keys(spec: str) -> tuple[WriteKey, ...]:
    """`key:source[:kind],…` as in FUNNELHOUSE_WRITE_KEYS."""
    keys = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        parts = item.split(":")
        if len(parts) < 2:
            raise ValueError(f"write key {item!r} is not key:source[:kind]")
        kind = parts[2] if len(parts) > 2 else "browser"
        if kind not in ("browser", "server"):
            raise ValueError(f"write key {parts[0]!r}: kind must be browser or server")
        keys.append(WriteKey(key=parts[0], source=parts[1], kind=kind))  # type: ignore[arg-type]
    return tuple(keys)


def _keys_from_file(entries: list[dict[str, Any]]) -> tuple[WriteKey, ...]:
    keys = []
    for entry in entries:
        entry = dict(entry)
        for name in ("allowed_origins", "hash_fields", "drop_fields"):
            if name in entry:
                entry[name] = tuple(entry[name])
        keys.append(WriteKey(**entry))
    return tuple(keys)


_ENV: dict[str, tuple[str, type]] = {
    "FUNNELHOUSE_HOST": ("host", str),
    "FUNNELHOUSE_PORT": ("port", int),
    "FUNNELHOUSE_ADMIN_TOKEN": ("admin_token", str),
    "FUNNELHOUSE_CLICKHOUSE_URL": ("clickhouse_url", str),
    "FUNNELHOUSE_KAFKA_BOOTSTRAP": ("kafka_bootstrap", str),
    "FUNNELHOUSE_KAFKA_TOPIC_EVENTS": ("kafka_topic_events", str),
    "FUNNELHOUSE_KAFKA_TOPIC_INVALID": ("kafka_topic_invalid", str),
    "FUNNELHOUSE_KAFKA_PARTITIONS": ("kafka_partitions", int),
    "FUNNELHOUSE_KAFKA_GROUP": ("kafka_group", str),
    "FUNNELHOUSE_KAFKA_REPLICATION_FACTOR": ("kafka_replication_factor", int),
    "FUNNELHOUSE_KAFKA_ACK_TIMEOUT_SECONDS": ("kafka_ack_timeout_seconds", float),
    "FUNNELHOUSE_KAFKA_LINGER_MS": ("kafka_linger_ms", float),
    "FUNNELHOUSE_KAFKA_COMPRESSION": ("kafka_compression", str),
    "FUNNELHOUSE_QUEUE_FSYNC": ("queue_fsync", str),
    "FUNNELHOUSE_LOADER_BATCH_ROWS": ("loader_batch_rows", int),
    "FUNNELHOUSE_LOADER_BATCH_SECONDS": ("loader_batch_seconds", float),
    "FUNNELHOUSE_LOADER_PORT": ("loader_port", int),
    "FUNNELHOUSE_COLLECTOR_WORKERS": ("collector_workers", int),
    "FUNNELHOUSE_REPORTING_TZ": ("reporting_tz", str),
    "FUNNELHOUSE_SESSION_GAP_MINUTES": ("session_gap_minutes", int),
    "FUNNELHOUSE_LOOKBACK_DAYS": ("lookback_days", int),
    "FUNNELHOUSE_MODELS_INTERVAL_SECONDS": ("models_interval_seconds", int),
    "FUNNELHOUSE_MODEL_THREADS": ("model_threads", int),
    "FUNNELHOUSE_SEGMENTS_INTERVAL_MINUTES": ("segments_interval_minutes", float),
    "FUNNELHOUSE_MIGRATION_WAIT_SECONDS": ("migration_wait_seconds", float),
    "FUNNELHOUSE_JOB_LEASE_SECONDS": ("job_lease_seconds", float),
    "FUNNELHOUSE_EXPORT_TIME": ("export_time", str),
    "FUNNELHOUSE_DEDUP_WINDOW_SECONDS": ("dedup_window_seconds", int),
    "FUNNELHOUSE_SQL_MAX_SECONDS": ("sql_max_seconds", float),
    "FUNNELHOUSE_SQL_MAX_RESULT_ROWS": ("sql_max_result_rows", int),
    "FUNNELHOUSE_SQL_MAX_RESULT_BYTES": ("sql_max_result_bytes", int),
    "FUNNELHOUSE_SQL_MAX_MEMORY_BYTES": ("sql_max_memory_bytes", int),
    "FUNNELHOUSE_HEADER_TIMEOUT_SECONDS": ("header_timeout_seconds", float),
    "FUNNELHOUSE_BODY_TIMEOUT_SECONDS": ("body_timeout_seconds", float),
    "FUNNELHOUSE_TLS_CERT": ("tls_cert", str),
    "FUNNELHOUSE_TLS_KEY": ("tls_key", str),
}


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from env vars, the config file and explicit overrides."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(overrides.get("data_dir") or env.get("FUNNELHOUSE_DATA_DIR") or ".funnelhouse")
    values: dict[str, Any] = {}

    config_path = env.get("FUNNELHOUSE_CONFIG") or data_dir / "funnelhouse.toml"
    if Path(config_path).is_file():
        with open(config_path, "rb") as fh:
            values.update(_from_file(tomllib.load(fh)))

    for var, (name, cast) in _ENV.items():
        if var in env and env[var] != "":
            values[name] = cast(env[var])
    if env.get("FUNNELHOUSE_WRITE_KEYS"):
        values["write_keys"] = values.get("write_keys", ()) + parse_write_keys(
            env["FUNNELHOUSE_WRITE_KEYS"]
        )
    if env.get("FUNNELHOUSE_TRUSTED_PROXIES"):
        values["trusted_proxies"] = tuple(env["FUNNELHOUSE_TRUSTED_PROXIES"].split(","))
    if env.get("FUNNELHOUSE_PLAN_DIR"):
        values["plan_dir"] = Path(env["FUNNELHOUSE_PLAN_DIR"])
    if env.get("FUNNELHOUSE_CONSOLE_DIR"):
        values["console_dir"] = Path(env["FUNNELHOUSE_CONSOLE_DIR"])
    if env.get("FUNNELHOUSE_EXPORT_ROOT"):
        values["export_root"] = Path(env["FUNNELHOUSE_EXPORT_ROOT"])

    values.update({k: v for k, v in overrides.items() if v is not None})
    values["data_dir"] = data_dir
    return Settings(**values)


def _from_file(doc: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in doc.items() if k not in ("write_keys", "limits")}
    if "write_keys" in doc:
        values["write_keys"] = _keys_from_file(doc["write_keys"])
    if "limits" in doc:
        values["limits"] = Limits(**doc["limits"])
    for name in ("plan_dir", "sql_dir", "console_dir", "export_root"):
        if name in values:
            values[name] = Path(values[name])
    for name in ("trusted_proxies", "export_formats"):
        if name in values:
            values[name] = tuple(values[name])
    return values
