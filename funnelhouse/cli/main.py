"""The `funnelhouse` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path

import orjson

from funnelhouse.config import Settings, load_settings
from funnelhouse.server import instance


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None)
                 for name in ("host", "port", "data_dir", "tls_cert", "tls_key")}
    if overrides["data_dir"] is not None:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return load_settings(**overrides)


def cmd_up(args: argparse.Namespace) -> int:
    from funnelhouse.collector.edge import tls_options
    from funnelhouse.server.up import serve

    settings = instance.with_local_credentials(_settings(args))
    try:
        tls_options(settings.tls_cert, settings.tls_key)
    except (ValueError, OSError) as exc:
        print(f"cannot serve TLS: {exc}", file=sys.stderr)
        return 2
    if instance.running_url(settings):
        print(f"funnelhouse is already running for {settings.data_dir}", file=sys.stderr)
        return 1
    broker = None
    if args.with_kafka:
        from funnelhouse.queue.kafka_broker import KafkaBroker

        broker = KafkaBroker(settings.data_dir / "kafka")
        broker.fetch()
        settings = settings.replace(kafka_bootstrap=broker.start())
        print(f"Apache Kafka (KRaft, single node) at {settings.kafka_bootstrap}", flush=True)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    finally:
        if broker is not None:
            broker.stop()
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    """Production collector: uvicorn workers importing collector.asgi:app (env config)."""
    import uvicorn

    from funnelhouse.collector.edge import server_options

    settings = _settings(args)
    # The workers read their settings from the environment (collector.asgi): hand them
    # what the command line said too.
    for var, value in (("FUNNELHOUSE_DATA_DIR", args.data_dir),
                       ("FUNNELHOUSE_TLS_CERT", args.tls_cert),
                       ("FUNNELHOUSE_TLS_KEY", args.tls_key)):
        if value:
            os.environ[var] = str(value)
    try:
        options = server_options(settings,
                                 protocol="funnelhouse.collector.edge:HeaderTimeoutProtocol")
    except (ValueError, OSError) as exc:
        print(f"cannot serve TLS: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if options.get("ssl_certfile") else "http"
    print(f"funnelhouse collector at {scheme}://{settings.host}:{settings.port}", flush=True)
    uvicorn.run("funnelhouse.collector.asgi:app", host=settings.host, port=settings.port,
                workers=args.workers or settings.collector_workers, log_level="warning",
                access_log=False, env_file=None, **options)
    return 0


def cmd_loader(args: argparse.Namespace) -> int:
    from funnelhouse.loader.main import run_loader

    asyncio.run(run_loader(_settings(args)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from funnelhouse.warehouse.migrate import migrate
    from funnelhouse.warehouse.open import open_warehouse

    settings = _settings(args)
    applied = migrate(open_warehouse(settings), settings.sql_dir / "migrations")
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    settings = instance.with_local_credentials(_settings(args))
    fmt = {"csv": "CSVWithNames", "json": "JSON", "pretty": "PrettyCompactMonoBlock",
           "tsv": "TSVWithNames"}[args.format]
    url = None if settings.clickhouse_url else instance.running_url(settings)
    if url:
        # The running instance holds the data folder; ask it. It speaks JSON or CSV,
        # so a pretty table is rendered here from JSON.
        wire = "csv" if args.format in ("csv", "tsv") else "json"
        response = instance.call(settings, url, "/v1/sql", {"sql": args.query,
                                                            "format": args.format
                                                            if wire == "csv" else "json"})
        if response.status_code != 200:
            print(response.text, file=sys.stderr)
            return 1
        if args.format == "pretty":
            print(_pretty(orjson.loads(response.content)))
        else:
            sys.stdout.write(response.text)
        return 0
    from funnelhouse.warehouse.base import WarehouseError
    from funnelhouse.warehouse.open import open_warehouse
    from funnelhouse.warehouse.sql_guard import SqlRefused, SqlRunner

    # The same guard and limits as POST /v1/sql: the CLI is no way around them.
    runner = SqlRunner(open_warehouse(settings, readonly=True), settings, size=1)
    try:
        result = runner.run(runner.guard(args.query), fmt)
    except (SqlRefused, WarehouseError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sys.stdout.write(result.decode())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print the admin token for the operator (`up` shows it once, when it is made)."""
    settings = _settings(args)
    token = instance.show_token(settings)
    if not token:
        print(f"no admin token yet in {settings.data_dir}: `funnelhouse up` makes one",
              file=sys.stderr)
        return 1
    print(token)
    return 0


def _pretty(doc: dict) -> str:
    columns = [m["name"] for m in doc.get("meta", [])]
    rows = [[str(row.get(c, "")) for c in columns] for row in doc.get("data", [])]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def cmd_plan_check(args: argparse.Namespace) -> int:
    from funnelhouse.cli.plan_check import plan_check

    settings = _settings(args)
    return plan_check(Path(args.plan_dir) if args.plan_dir else settings.plan_dir,
                      Path(args.sample) if args.sample else None)


def cmd_plan_coverage(args: argparse.Namespace) -> int:
    """Which planned events and properties arrived, never arrived or are failing."""
    from funnelhouse.analyses.coverage import render_table

    settings = instance.with_local_credentials(_settings(args))
    url = None if settings.clickhouse_url else instance.running_url(settings)
    if url:
        import httpx

        response = httpx.get(f"{url}/v1/plan/coverage", timeout=600,
                             params={"days": args.days, "source": args.source or ""},
                             headers={"Authorization": f"Bearer {settings.admin_token}"})
        if response.status_code != 200:
            print(response.text, file=sys.stderr)
            return 1
        doc = response.json()
    else:
        from funnelhouse.analyses.coverage import CoverageError, coverage
        from funnelhouse.collector.plan import TrackingPlan
        from funnelhouse.warehouse.base import WarehouseError
        from funnelhouse.warehouse.open import open_warehouse

        plan = TrackingPlan.load(Path(args.plan_dir) if args.plan_dir else settings.plan_dir)
        warehouse = open_warehouse(settings, readonly=True)
        try:
            doc = coverage(warehouse, plan, days=args.days, source=args.source)
        except (CoverageError, WarehouseError) as exc:
            print(str(exc).splitlines()[0], file=sys.stderr)
            return 1
        finally:
            warehouse.close()
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json
          else render_table(doc))
    return 0


def cmd_replay_invalid(args: argparse.Namespace) -> int:
    settings = instance.with_local_credentials(_settings(args))
    url = None if settings.clickhouse_url else instance.running_url(settings)
    if url:
        response = instance.call(settings, url, "/v1/admin/replay-invalid", {})
        if response.status_code != 200:
            print(response.text, file=sys.stderr)
            return 1
        result = response.json()
    else:
        from funnelhouse.collector.plan import TrackingPlan
        from funnelhouse.jobs.replay import replay_invalid
        from funnelhouse.warehouse.open import open_warehouse

        result = dataclasses.asdict(replay_invalid(open_warehouse(settings), settings,
                                                   TrackingPlan.load(settings.plan_dir)))
    print(f"examined {result['examined']}, moved to events_raw {result['moved']}, "
          f"still invalid {result['still_invalid']}, skipped {result.get('skipped', 0)}")
    # A dead letter that can never be replayed is skipped with its reason, once.
    for row in result.get("skipped_rows", []):
        print(f"skipped {row['source']}:{row['message_id']}: {row['reason']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from funnelhouse.demo.send import run_demo

    settings = instance.with_local_credentials(_settings(args))
    url = args.url or instance.running_url(settings)
    if not url:
        print("no running funnelhouse for this data folder: start `funnelhouse up` or pass "
              "--url and --write-key", file=sys.stderr)
        return 1
    server_keys = [k.key for k in settings.write_keys if k.kind == "server"]
    write_key = args.write_key or (server_keys[0] if server_keys else settings.write_keys[0].key)
    print(f"sending {args.people} visitors over {args.days} days to {url} …")
    result = run_demo(url, write_key, people=args.people, days=args.days, seed=args.seed)
    print(f"sent {result.sent:,} events in {result.seconds:.1f}s: accepted {result.accepted:,}, "
          f"rejected {result.rejected:,} (see events_invalid), duplicates {result.duplicates:,}")
    return 0


def cmd_models_run(args: argparse.Namespace) -> int:
    settings = instance.with_local_credentials(_settings(args))
    body = {"full_refresh": args.full_refresh, "since": args.since,
            "select": args.select or None}
    url = None if settings.clickhouse_url else instance.running_url(settings)
    if url:
        response = instance.call(settings, url, "/v1/admin/models/run", body)
        if response.status_code != 200:
            print(response.text, file=sys.stderr)
            return 1
        for line in response.json()["log"]:
            print(line)
        return 0
    from datetime import date

    from funnelhouse.models.run import run_models
    from funnelhouse.warehouse.migrate import migrate
    from funnelhouse.warehouse.open import open_warehouse

    warehouse = open_warehouse(settings)
    migrate(warehouse, settings.sql_dir / "migrations")
    run_models(warehouse, settings, full_refresh=args.full_refresh,
               since=date.fromisoformat(args.since) if args.since else None,
               select=args.select or None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funnelhouse",
                                     description="Event collector and funnel warehouse")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data-dir", dest="data_dir", default=None,
                       help="data folder (default ./.funnelhouse or $FUNNELHOUSE_DATA_DIR)")
        p.set_defaults(handler=handler)
        return p

    up = command("up", cmd_up, "run collector, queue, loader and warehouse in one process")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--with-kafka", action="store_true",
                    help="start a local Apache Kafka broker and run the queue through it")

    collector = command("collector", cmd_collector,
                        "production collector (uvicorn workers; queue from env: Kafka or log)")
    collector.add_argument("--host", default=None)
    collector.add_argument("--port", type=int, default=None)
    collector.add_argument("--workers", type=int, default=None)
    for p in (up, collector):
        p.add_argument("--tls-cert", dest="tls_cert", default=None,
                       help="PEM certificate (chain) to serve HTTPS (env FUNNELHOUSE_TLS_CERT)")
        p.add_argument("--tls-key", dest="tls_key", default=None,
                       help="its PEM private key (env FUNNELHOUSE_TLS_KEY)")

    command("loader", cmd_loader, "production loader: queue → warehouse, /metrics on "
            "$FUNNELHOUSE_LOADER_PORT")

    command("migrate", cmd_migrate, "apply the raw-layer migrations")

    token = command("token", cmd_token, "print the admin token kept in the data folder")
    token.add_argument("action", choices=["show"])

    sql = command("sql", cmd_sql, "run read-only SQL (through the running instance if any)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["pretty", "csv", "json", "tsv"], default="pretty")

    plan = sub.add_parser("plan", help="tracking plan tools")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True)
    check = plan_sub.add_parser("check", help="validate the plan and a sample payload file")
    check.add_argument("--plan-dir", default=None)
    check.add_argument("--sample", default=None, help="a JSON message, batch or list")
    check.add_argument("--data-dir", dest="data_dir", default=None)
    check.set_defaults(handler=cmd_plan_check)
    plan_coverage = plan_sub.add_parser(
        "coverage", help="planned events and properties seen, never seen or failing")
    plan_coverage.add_argument("--days", type=int, default=30, help="window of arrival (days)")
    plan_coverage.add_argument("--source", default=None, help="one source only")
    plan_coverage.add_argument("--json", action="store_true", help="the full audit as JSON")
    plan_coverage.add_argument("--plan-dir", default=None)
    plan_coverage.add_argument("--data-dir", dest="data_dir", default=None)
    plan_coverage.set_defaults(handler=cmd_plan_coverage)

    command("replay-invalid", cmd_replay_invalid,
            "re-validate dead-lettered events against the current plan and load the valid ones")

    models = sub.add_parser("models", help="the eight tables")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_run = models_sub.add_parser(
        "run", help="build the models in dependency order (incremental by day with look-back)")
    models_run.add_argument("--full-refresh", action="store_true",
                            help="rebuild every table from all of events_raw")
    models_run.add_argument("--since", default=None, help="rebuild days from DATE (YYYY-MM-DD)")
    models_run.add_argument("--select", action="append", default=[],
                            help="run only this model (repeatable)")
    models_run.add_argument("--data-dir", dest="data_dir", default=None)
    models_run.set_defaults(handler=cmd_models_run)

    demo = command("demo", cmd_demo, "send realistic demo traffic through the HTTP API")
    demo.add_argument("--url", default=None, help="collector URL (default: the local instance)")
    demo.add_argument("--write-key", default=None,
                      help="a server write key (default: the local instance's)")
    demo.add_argument("--people", type=int, default=3000)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--seed", type=int, default=7)

    from funnelhouse.cli import people as cli_people  # segment, signals, export, forget

    cli_people.register(sub)

    from funnelhouse.cli import analyses as cli_analyses  # funnel, retention, paths, timeline

    cli_analyses.register(sub, command)

    bench = sub.add_parser("bench", help="the one-command benchmark (load-tests/bench.py)")
    bench.add_argument("--quick", action="store_true", help="small sizes, short runs (≈3 min)")
    bench.add_argument("--out", default=None, help="write every figure as JSON here")
    bench.add_argument("--markdown", default=None, help="write the summary table here")
    bench.add_argument("--only", default=None, help="collector,pipeline,models,analyses,segments")
    bench.add_argument("--no-kafka", action="store_true", help="skip the Kafka measurements")
    bench.add_argument("--work-dir", default=None, help="scratch folder (removed unless given)")
    bench.set_defaults(handler=cmd_bench)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    from funnelhouse.config import REPO_ROOT

    script = REPO_ROOT / "load-tests" / "bench.py"
    if not script.exists():
        print(f"{script} not found: the benchmark runs from a checkout of the repository",
              file=sys.stderr)
        return 1
    argv = [sys.executable, str(script)]
    argv += ["--quick"] if args.quick else []
    argv += ["--no-kafka"] if args.no_kafka else []
    for name in ("out", "markdown", "only", "work_dir"):
        if getattr(args, name):
            argv += [f"--{name.replace('_', '-')}", getattr(args, name)]
    return subprocess.call(argv, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    # Every file any command makes (queue, chdb, credentials, exports) is private.
    instance.private_files()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
