"""The command line: every command's --help, and the same answer on the data folder itself
as through a running `funnelhouse up` (a real process) for every command that has both ways."""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from funnelhouse.cli.main import build_parser, main
from funnelhouse.cli.progress import Status
from funnelhouse.collector.enrich.time import correct_timestamp, parse_timestamp
from funnelhouse.demo.generator import iter_rows
from funnelhouse.demo.send import demo_messages
from tests.conftest import Funnelhouse, wait_until
from tests.test_security_http import certificate  # noqa: F401 - the fixture, made per run

# Out of the way during the test: the instance's own refreshes would change what we compare.
QUIET = {"FUNNELHOUSE_MODELS_INTERVAL_SECONDS": "3600",
         "FUNNELHOUSE_SEGMENTS_INTERVAL_MINUTES": "600"}
AS_OF = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                  ) -> Iterator[tuple[str, ...]]:
    """Every command and sub-command the parser knows, as argv prefixes."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from command_paths(child, (*prefix, name))


ALL_COMMANDS = sorted(command_paths(build_parser()))


def test_the_parser_knows_every_command() -> None:
    top = {path[0] for path in ALL_COMMANDS}
    assert {"up", "collector", "loader", "serve", "migrate", "token", "sql", "plan",
            "replay-invalid", "models", "demo", "segment", "signals", "export", "forget",
            "funnel", "retention", "paths", "timeline", "bench"} <= top
    assert ("models", "run") in ALL_COMMANDS and ("segment", "members") in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
                                ) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: funnelhouse {' '.join(path)}"), out[:200]


def test_the_module_and_the_script_run_the_same_command_line() -> None:
    script = Path(sys.executable).with_name("funnelhouse")
    for argv in ([sys.executable, "-m", "funnelhouse.cli", "--help"], [str(script), "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "replay-invalid" in result.stdout and "timeline" in result.stdout


def clean_env(registry: Path, **extra: str) -> dict[str, str]:
    """No data folder named, and a registry of running instances of this test's own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FUNNELHOUSE_DATA_DIR", "FUNNELHOUSE_CLICKHOUSE_URL",
                        "FUNNELHOUSE_CONFIG")}
    return {**env, "FUNNELHOUSE_INSTANCES_DIR": str(registry), **extra}


def test_sql_without_data_says_where_it_looked_and_makes_nothing(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    env = clean_env(tmp_path / "instances")
    for argv in (["sql", "SELECT 1"], ["models", "run"], ["segment", "list"],
                 ["funnel", "--step", "a", "--step", "b"], ["demo"], ["token", "show"],
                 ["import", "x.jsonl"], ["paths", "/cart"]):
        (here / "x.jsonl").write_text('{"type": "track", "event": "click"}\n')
        result = subprocess.run([sys.executable, "-m", "funnelhouse.cli", *argv], cwd=here,
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, argv
        assert str(here / ".funnelhouse") in result.stderr, (argv, result.stderr)
        assert "funnelhouse up" in result.stderr, (argv, result.stderr)   # how to start one
        assert sorted(p.name for p in here.iterdir()) == ["x.jsonl"], argv  # no .funnelhouse
    said = subprocess.run([sys.executable, "-m", "funnelhouse.cli", "sql", "SELECT 1"],
                          cwd=here, env=env, capture_output=True, text=True,
                          timeout=60).stderr
    assert "instance.json" in said and "warehouse" in said and "--data-dir" in said


def test_commands_find_the_running_instance_from_anywhere(tmp_path: Path) -> None:
    """No --data-dir, another directory: the one running `up` answers; with two, the
    command names them instead of guessing; stopped, it is forgotten."""
    registry = tmp_path / "instances"
    up = Funnelhouse(tmp_path / "data", env={**QUIET,
                                             "FUNNELHOUSE_INSTANCES_DIR": str(registry)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(registry, FUNNELHOUSE_ADMIN_TOKEN=up.env["FUNNELHOUSE_ADMIN_TOKEN"])

    def sql() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "funnelhouse.cli", "sql", "--format",
                               "csv", "SELECT 6 * 7 AS answer"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60)

    up.start()
    try:
        wait_until(lambda: any(registry.glob("*.json")))
        found = sql()
        assert found.returncode == 0, found.stderr
        assert found.stdout.splitlines() == ['"answer"', "42"]
        assert str(up.data_dir) in found.stderr    # it says which instance it used
        # A second instance of the same user (here: a folder announcing the same URL,
        # registered under this test's live process id).
        twin = tmp_path / "twin"
        twin.mkdir()
        (twin / "instance.json").write_bytes((up.data_dir / "instance.json").read_bytes())
        (registry / f"{os.getpid()}.json").write_bytes(orjson.dumps(
            {"data_dir": str(twin), "url": up.url, "pid": os.getpid()}))
        several = sql()
        assert several.returncode == 1
        assert "2 funnelhouse instances" in several.stderr
        assert f"--data-dir {up.data_dir}" in several.stderr and str(twin) in several.stderr
        (registry / f"{os.getpid()}.json").unlink()
    finally:
        assert up.stop() == 0
    assert list(registry.glob("*.json")) == []     # a stopped instance leaves the registry
    gone = sql()
    assert gone.returncode == 1 and "funnelhouse up" in gone.stderr
    assert list(elsewhere.iterdir()) == []


# -- the same answer both ways -----------------------------------------------------------

def cli(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnelhouse.cli", *args, "--data-dir",
                           str(data_dir)], env=env, capture_output=True, text=True,
                          timeout=300)


def without_timings(text: str) -> str:
    return re.sub(r"in \d+\.\d+s", "in …s", text)


def rows_of(text: str, *keys: str) -> list[dict[str, Any]]:
    return [{k: row.get(k) for k in keys} for row in orjson.loads(text)]


# (name, argv, what of the output must agree): run in this order, state changes included.
SCRIPT: list[tuple[str, list[str], Any]] = [
    ("models run", ["models", "run", "--full-refresh"], without_timings),
    ("models run --select a,b", ["models", "run", "--select", "identity_map,sessions"],
     without_timings),
    ("replay-invalid", ["replay-invalid"], str),
    ("sql csv", ["sql", "--format", "csv", "SELECT event, count() AS n FROM events_raw "
                 "GROUP BY event ORDER BY event"], str),
    ("sql pretty", ["sql", "SELECT count() AS sessions, sum(pageviews) AS views "
                    "FROM sessions"], str),
    ("sql refused", ["sql", "DROP TABLE events_raw"], str),
    ("sql failing", ["sql", "SELECT no_such_column FROM events_raw"], str),
    ("funnel refused", ["funnel", "--step", "page_view"], str),
    ("plan coverage", ["plan", "coverage", "--json"],
     # The window and the SQL's parameters hold the time of asking; the audit must agree.
     lambda out: {k: v for k, v in orjson.loads(out).items() if k in ("events", "summary")}),
    ("funnel", ["funnel", "--step", "page_view", "--step", "product_view", "--step",
                "purchase", "--window", "2d", "--as-of", AS_OF, "--format", "csv"], str),
    ("retention", ["retention", "--period", "day", "--periods", "3", "--as-of", AS_OF,
                   "--format", "csv"], str),
    ("segment from-sql", ["segment", "from-sql", "--name", "CLI buyers", "--sql",
                          "SELECT DISTINCT person_id FROM behavior_events "
                          "WHERE event = 'purchase'", "--format", "json"],
     lambda out: rows_of(out, "segment_id", "name", "kind", "version", "members")),
    ("segment list", ["segment", "list", "--format", "json"],
     lambda out: rows_of(out, "segment_id", "name", "kind", "version", "members")),
    ("segment members", ["segment", "members", "cli-buyers", "--format", "csv"],
     lambda out: [line.rsplit(",", 1)[0] for line in out.splitlines()]),  # not the time
    # A new definition alone: the name stays the segment's.
    ("segment update", ["segment", "update", "cli-buyers", "--sql",
                        "SELECT DISTINCT person_id FROM behavior_events "
                        "WHERE event = 'add_to_cart'", "--format", "json"],
     lambda out: rows_of(out, "segment_id", "name", "version", "members")),
    ("paths", ["paths", "/", "--as-of", AS_OF, "--format", "csv"], str),
    ("paths --page", ["paths", "--page", "/", "--as-of", AS_OF, "--format", "csv"], str),
    ("signals", ["signals", "co-viewed", "--as-of", AS_OF[:10], "--format", "csv"], str),
]


def run_script(data_dir: Path, env: dict[str, str], person: str) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for name, argv, agreeing in [*SCRIPT, (
            "timeline", ["timeline", person, "--limit", "25", "--format", "json"], str)]:
        result = cli(data_dir, env, *argv)
        answers[name] = (result.returncode, agreeing(result.stdout),
                         result.stderr.strip().splitlines()[-1:] if result.returncode else [])
    return answers


Twins = tuple[Funnelhouse, Path, str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    """One data folder with demo traffic in it, and its copy made while nothing held it."""
    root = tmp_path_factory.mktemp("cli")
    up = Funnelhouse(root / "data", env={**QUIET,
                                         "FUNNELHOUSE_INSTANCES_DIR": str(root / "instances")})
    up.start()
    try:
        sent = cli(up.data_dir, up.env, "demo", "--people", "60", "--days", "3")
        assert sent.returncode == 0, sent.stderr
        accepted = int(re.search(r"accepted ([\d,]+)", sent.stdout)[1].replace(",", ""))  # type: ignore[index]
        wait_until(lambda: up.sql("SELECT count() AS n FROM events_raw")[0]["n"]
                   in (accepted, str(accepted)), timeout=60)
    finally:
        assert up.stop() == 0
    twin = root / "twin"
    shutil.copytree(up.data_dir, twin, symlinks=True)   # chdb links metadata into store/
    probe = cli(twin, up.env, "sql", "--format", "csv",
                "SELECT if(user_id != '', user_id, anonymous_id) AS id FROM events_raw "
                "WHERE event = 'purchase' ORDER BY id LIMIT 1")
    assert probe.returncode == 0, probe.stderr
    person = probe.stdout.splitlines()[1].strip('"')   # a buyer, by an id they sent
    assert person
    yield up, twin, person, sent


def test_demo_is_quiet_and_leaves_the_models_built(twins: Twins) -> None:
    up, twin, _, sent = twins
    said = sent.stdout + sent.stderr
    assert "HTTP Request" not in said and "Traceback" not in said
    assert len(said.splitlines()) <= 20, said          # a few lines, not one per batch
    assert "models built" in sent.stdout, said
    built = cli(twin, up.env, "sql", "--format", "csv",
                "SELECT (SELECT count() FROM sessions) > 0, (SELECT count() FROM users) > 0, "
                "(SELECT count() FROM behavior_events) > 0")
    assert built.stdout.splitlines()[-1] == "1,1,1", built.stdout + built.stderr


def test_demo_events_never_lie_in_the_future(twins: Twins) -> None:
    """Stored times are when the events happened: none after their arrival, and the
    devices whose clock is hours off are corrected (the demo sends their sentAt)."""
    up, twin, _, _ = twins
    facts = cli(twin, up.env, "sql", "--format", "csv",
                "SELECT countIf(timestamp > received_at), "
                "countIf(has(flags, 'timestamp_clamped_future')), "
                "countIf(abs(dateDiff('second', original_timestamp, timestamp)) > 3000), "
                "count() FROM events_raw")
    ahead, clamped, skewed, total = map(int, facts.stdout.splitlines()[-1].split(","))
    assert total > 500 and ahead == 0 and clamped == 0, facts.stdout
    assert skewed > 0   # devices hours off were sent, and stored at the right time


@pytest.mark.parametrize("hour", [0.25, 7.5, 15.0, 23.9])
def test_demo_messages_end_at_now_at_any_hour(hour: float) -> None:
    """What the generator plants after `now` (evening visits in Los Angeles, orders days
    after a visit) is left out, whatever the hour of `now`; the rest is stamped so that
    the collector's clock rule stores when each event happened."""
    now = datetime(2026, 3, 10, tzinfo=UTC) + timedelta(hours=hour)
    now_ms = int(now.timestamp() * 1000)
    messages = list(demo_messages(150, 7, now=now))
    planted = list(iter_rows(seed=7, people=150, days=7,
                             start_date=(now - timedelta(days=7)).date()))
    future = [r for r in planted if parse_timestamp(r["timestamp"].replace(" ", "T") + "Z")
              * 1000 > now_ms]
    assert future, "the generator plants events after now: the filter is what this tests"
    assert len(messages) == len(planted) - len(future)
    assert max(m.happened_ms for m in messages) <= now_ms
    received = now_ms / 1000 + 3.0
    for m in messages:
        stamped = m.stamped(int(received * 1000))
        stored, *_ = correct_timestamp(parse_timestamp(stamped["timestamp"]),
                                       parse_timestamp(stamped["sentAt"]), received,
                                       key_kind="server", max_future_skew_seconds=86_400,
                                       max_past_days_browser=30)
        assert abs(stored * 1000 - m.happened_ms) <= 1, stamped


def test_each_command_answers_the_same_here_and_through_a_running_up(
        twins: Twins) -> None:
    up, twin, person, _ = twins
    here = run_script(twin, up.env, person)            # the folder itself, nothing running
    up.start()
    try:
        wait_until(lambda: (up.data_dir / "instance.json").is_file())   # announced
        there = run_script(up.data_dir, up.env, person)   # through the running `up`
        # Proof the second run went over HTTP: the folder is locked by `up` (chdb lets
        # one process hold it), so only the instance could have answered.
        assert up.process is not None and up.process.poll() is None
    finally:
        assert up.stop() == 0
    assert here.keys() == there.keys()
    for name in here:
        assert here[name] == there[name], name
    # And the answers are answers, not two identical failures.
    # Refusals and failures are said alike too: message and the API's reason.
    assert here["sql refused"][0] == 1 and "(sql_refused)" in here["sql refused"][2][0]
    assert "(query_failed)" in here["sql failing"][2][0]
    assert "(bad_spec)" in here["funnel refused"][2][0]
    failed = [name for name, (code, _, _) in here.items() if code != 0]
    assert failed == ["sql refused", "sql failing", "funnel refused"], {
        n: here[n] for n in failed}
    selected = here["models run --select a,b"][1]
    assert "identity_map" in selected and "sessions:" in selected
    assert "orders" not in selected and "users" not in selected
    assert "examined" in here["replay-invalid"][1]
    assert len(here["funnel"][1].splitlines()) > 1
    assert here["segment list"][1][0]["segment_id"] == "cli-buyers"
    assert here["segment from-sql"][1][0]["members"] > 0
    assert len(here["segment members"][1]) == here["segment from-sql"][1][0]["members"] + 1
    assert person in here["timeline"][1]
    updated = here["segment update"][1][0]
    assert (updated["name"], updated["version"]) == ("CLI buyers", 2)
    assert here["paths --page"][1] == here["paths"][1] and len(here["paths"][1].splitlines()) > 2


def test_every_way_through_an_https_up_pins_its_certificate(
        tmp_path: Path, certificate: tuple[Path, Path]) -> None:  # noqa: F811 - the fixture
    """GETs too (segments, coverage, timeline): one HTTP client, the pinned certificate."""
    cert, key = certificate
    up = Funnelhouse(tmp_path / "data", env=QUIET)
    up.url = up.url.replace("http://", "https://")
    log = open(up.log_path, "ab")  # noqa: SIM115 - closed with the process
    up.process = subprocess.Popen(
        [sys.executable, "-m", "funnelhouse.cli", "up", "--data-dir", str(up.data_dir),
         "--port", str(up.port), "--tls-cert", str(cert), "--tls-key", str(key)],
        env=up.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (up.data_dir / "instance.json").is_file(), timeout=120)
        for argv in (["sql", "--format", "csv", "SELECT 41 + 1 AS answer"],
                     ["segment", "list", "--format", "json"],
                     ["plan", "coverage", "--days", "1"],
                     ["models", "run"],
                     ["timeline", "nobody", "--format", "json"]):
            result = cli(up.data_dir, up.env, *argv)
            assert result.returncode == 0, (argv, result.stderr)
            assert "HTTP Request" not in result.stderr   # httpx's own log stays quiet
        assert cli(up.data_dir, up.env, "sql", "--format", "csv", "SELECT 41 + 1 AS answer"
                   ).stdout.splitlines() == ['"answer"', "42"]
    finally:
        assert up.stop() == 0
        log.close()


def test_progress_is_one_updating_line_on_a_terminal_and_a_few_in_a_log(
        capsys: pytest.CaptureFixture[str]) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    status = Status(terminal)
    for n in range(500):
        status.note(f"sent {n:,} events …")
    status.model_line("[1/2] sessions (incremental_by_day) …")
    status.model_line("    sessions: days 2026-11-01…2026-11-07 (1/3)")
    status.model_line("[1/2] sessions: 1,369 rows in 0.75s (incremental, 9 day(s))")
    assert "\n" not in terminal.getvalue()            # rewritten in place, then cleared
    assert terminal.getvalue().endswith("\r\x1b[2K")
    lasting = "[1/2] sessions: 1,369 rows in 0.75s (incremental, 9 day(s))\n"
    assert capsys.readouterr().out == lasting           # only the finished table lasts

    log = io.StringIO()
    status = Status(log, every=3600)
    for n in range(500):
        status.note(f"sent {n:,} events …")
    assert log.getvalue() == ""                        # nothing every batch in a log


@pytest.mark.parametrize("queue", ["embedded", "kafka"])
def test_demo_waits_until_what_it_sent_is_loaded(queue: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """Embedded: until the queue is empty. Kafka (its depth is only the spool): until
    events_raw stops growing."""
    import httpx

    from funnelhouse.cli import demo
    from funnelhouse.config import load_settings

    depths = iter([700, 250, 0])
    counts = iter(["100", "400", "900", "900", "900", "900", "950"])
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/readyz":
            depth = next(depths) if queue == "embedded" else 0
            return httpx.Response(200, json={"ready": True, "queue": queue, "depth": depth})
        return httpx.Response(200, text=next(counts) + "\n")

    monkeypatch.setattr(demo.instance, "http_client", lambda settings, url, timeout: httpx.Client(
        base_url=url, transport=httpx.MockTransport(answer)))
    demo._wait_loaded("http://fh.test", load_settings(), Status(io.StringIO()))
    if queue == "embedded":
        assert asked == ["/readyz"] * 3
    else:
        assert asked.count("/v1/sql") == 6   # 100, 400, then 900 four times in a row
