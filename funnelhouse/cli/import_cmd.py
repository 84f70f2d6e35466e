"""`funnelhouse import FILE`: a CSV or JSON-lines file of events through the tracking plan.

Which way the rows go (funnelhouse.imports.senders):
* `--url URL`: POST /v1/import of that collector (a scaled deployment's collector role);
* else the running `funnelhouse up` of the data folder, if one answers: the process that
  owns the queue writes it, and its dedup window, metrics and QA view see the import —
  the same reason the other commands go through it (funnelhouse.cli.client);
* else, or with `--in-process`: the collector's Ingestor in this process, into the queue
  the collector would use (make_sink: the data folder's log, or Kafka); the loader of the
  next `up` (or `funnelhouse loader`) loads it.
`--dry-run` validates in this process against the plan and stores nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from funnelhouse.cli.client import ClientError
from funnelhouse.cli.common import START_HINT, Subparsers, command, data_dir_given, settings_of
from funnelhouse.cli.progress import Status
from funnelhouse.collector.ingest import MESSAGE_TYPES
from funnelhouse.config import Settings, WriteKey
from funnelhouse.imports.mapping import (
    Field,
    MappingError,
    RowMapping,
    check_targets,
    identity_mapping,
    parse_mapping,
    parse_mapping_file,
)
from funnelhouse.imports.readers import FORMATS, format_of, read_rows
from funnelhouse.imports.run import ImportReport, import_rows
from funnelhouse.imports.senders import ImportFailed, LocalSender, RemoteSender, Sender
from funnelhouse.server import instance

# Exit codes: 0 every row accepted or a duplicate; 1 rows refused; 2 the import could not run.
REFUSED, FAILED = 1, 2


def cmd_import(args: argparse.Namespace) -> int:
    from funnelhouse.collector.plan import TrackingPlan

    path = Path(args.file)
    status = Status()   # one updating line of rows sent, on a terminal
    try:
        tz = ZoneInfo(args.timezone)
        fmt = format_of(path, args.format)
        fields = _fields(args)
        settings = settings_of(args, find=not args.url)
        with open(path, encoding="utf-8-sig", newline="") as handle:
            columns, rows = read_rows(handle, fmt, delimiter=args.delimiter)
            if fmt == "csv" and not fields:
                fields = identity_mapping(columns)
            mapping = RowMapping(fields, TrackingPlan.load(settings.plan_dir),
                                 default_type=args.type, default_event=args.event, tz=tz,
                                 text_cells=fmt == "csv")
            if fmt == "csv":
                mapping.check_columns(columns)
            sender = _sender(args, settings)
            try:
                report = import_rows(rows, mapping, sender, base_rows=fmt == "jsonl",
                                     dry_run=args.dry_run,
                                     progress=lambda line: status.note(line.strip()))
            finally:
                status.clear()
                sender.close()
    except (OSError, UnicodeDecodeError, ZoneInfoNotFoundError, ValueError,
            ImportFailed, ClientError) as exc:
        # MappingError, FileError and a bad --timezone are ValueErrors: said, exit 2.
        print(f"funnelhouse import: {exc}", file=sys.stderr)
        if isinstance(exc, ImportFailed):
            print("the rows sent before this are kept; running the same import again "
                  "stores none of them twice", file=sys.stderr)
        return FAILED
    _print(report, path, local=isinstance(sender, LocalSender), settings=settings)
    return REFUSED if report.refused and not args.allow_refused else 0


def _fields(args: argparse.Namespace) -> list[Field]:
    """--mapping FILE.json and --map together; each target once."""
    fields: list[Field] = []
    if args.mapping:
        try:
            doc = orjson.loads(Path(args.mapping).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise MappingError(f"{args.mapping} is not JSON: {exc}") from exc
        fields += parse_mapping_file(doc)
    if args.map:
        fields += parse_mapping(args.map)
    return check_targets(fields)


def _sender(args: argparse.Namespace, settings: Settings) -> Sender:
    if args.dry_run:
        return LocalSender(settings, _dry_run_key(settings, args.write_key), None,
                           "dry run (validated here, nothing stored)")
    if args.url:
        return RemoteSender(args.url.rstrip("/"), _key(settings, args.write_key).key)
    url = None if args.in_process else instance.running_url(settings)
    if not url and not args.in_process and not data_dir_given(args) \
            and not settings.data_dir.is_dir():
        # Not a new ./.funnelhouse holding a queue nobody loads.
        raise ValueError(f"no funnelhouse data in {settings.data_dir.resolve()} and none "
                           f"running: {START_HINT} (or --in-process to queue the rows "
                           "there for the next `up`)")
    # The folder's keys, as `up` has them (configured ones win over credentials.json).
    settings = instance.with_local_credentials(settings)
    if url:
        return RemoteSender(url, _key(settings, args.write_key).key,
                            http=instance.http_client(settings, url, timeout=120))
    from funnelhouse.collector.sinks.open import make_sink

    where = f"Kafka at {settings.kafka_bootstrap}" if settings.kafka_bootstrap \
        else str(settings.queue_path)
    return LocalSender(settings, _key(settings, args.write_key, known_only=True),
                       make_sink(settings), where)


def _key(settings: Settings, given: str | None, *, known_only: bool = False) -> WriteKey:
    """The write key the rows are sent as: the one given, else the first server key."""
    if given:
        key = settings.key(given)
        if key is None and known_only:
            raise ValueError("--write-key is not one of this data folder's keys "
                             "(FUNNELHOUSE_WRITE_KEYS, funnelhouse.toml or credentials.json)")
        return key or WriteKey(given, "", "server")   # the collector knows it, or says 401
    for key in settings.write_keys:
        if key.kind == "server":
            return key
    raise ValueError("no server write key configured: pass --write-key (a server key keeps "
                     "the file's historical timestamps)")


def _dry_run_key(settings: Settings, given: str | None) -> WriteKey:
    """The key's policies (unknown events, extra properties) decide validity; a dry run
    makes no data folder, so it reads the folder's keys only when there is one."""
    if settings.data_dir.is_dir() and not settings.write_keys:
        settings = instance.with_local_credentials(settings)
    try:
        return _key(settings, given, known_only=True)
    except ValueError:
        return WriteKey(given or "dry-run", "import", "server")


def _print(report: ImportReport, path: Path, *, local: bool, settings: Settings) -> None:
    verb = ("would accept", "would refuse") if report.dry_run else ("accepted", "refused")
    print(f"{path.name} → {report.where}")
    print(f"rows {report.rows}: {verb[0]} {report.accepted}, duplicates {report.duplicates}, "
          f"{verb[1]} {len(report.refused)}")
    for refused in report.refused:
        print(refused.text())
    if report.refused and not report.dry_run:
        print("refused rows are in events_invalid with their payload; correct the file (or "
              "the plan) and import it again: accepted rows come back as duplicates")
    if local and not report.dry_run and report.accepted:
        print("queued; the loader of `funnelhouse up` (or `funnelhouse loader`) loads them "
              f"into {settings.clickhouse_url or settings.warehouse_dir}")


def register(sub: Subparsers) -> None:
    parser = command(sub, "import", cmd_import,
                     "import a CSV or JSON-lines file of events (history, CRM, offline "
                     "purchases) through the tracking plan")
    parser.add_argument("file", help="the file (.csv, or .jsonl / .ndjson: one JSON object "
                                     "per line)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="csv or jsonl (default: from the file name)")
    parser.add_argument("--map", action="append", default=None, metavar="TARGET=SOURCE",
                        help="a column mapping: userId=customer_id, event='purchase', "
                             "properties.revenue=amount, … (repeat, or separate by commas)")
    parser.add_argument("--mapping", default=None, metavar="FILE.json",
                        help="the mapping as JSON: {\"userId\": \"customer_id\", …}")
    parser.add_argument("--type", default="track", choices=MESSAGE_TYPES,
                        help="call type of rows that name none (default track)")
    parser.add_argument("--event", default=None,
                        help="event of track rows that name none")
    parser.add_argument("--timezone", default="UTC",
                        help="time zone of timestamps without an offset (default UTC)")
    parser.add_argument("--delimiter", default=",", help="CSV delimiter (default ,)")
    parser.add_argument("--write-key", dest="write_key", default=None,
                        help="send as this write key (default: the first server key)")
    parser.add_argument("--url", default=None,
                        help="post to this collector (default: the running up of the data "
                             "folder, else in process)")
    parser.add_argument("--in-process", dest="in_process", action="store_true",
                        help="write the queue from this process even if up runs")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="validate every row against the plan; store nothing")
    parser.add_argument("--allow-refused", dest="allow_refused", action="store_true",
                        help="exit 0 even if rows were refused")
