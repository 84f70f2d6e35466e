"""Other vendors' server libraries, unmodified and pinned (npm, PyPI, Maven Central), talk to
a live funnelhouse as their READMEs configure them, with only the host and write key changed.

Each library sends the same scenario: track, page, screen, identify, alias, group, an event
three days old and a refused `Order Completed` in one batch, then a refused event alone.
Every valid call must land in events_raw as the library sent it; each refused event must be
dead-lettered exactly once: a library that retried the refusal would dead-letter it again
(refused events are not deduplicated). The node and java programs live in clients/ and are
installed by their clients/*/setup; the Python libraries run in this process.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import rudderstack.analytics as rudder_analytics
from prometheus_client.parser import text_string_to_metric_families
from rudderstack.analytics.client import Client as RudderClient
from rudderstack.analytics.request import APIError as RudderAPIError
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError

from tests.conftest import ADMIN_TOKEN, SERVER_KEY, Funnelhouse, wait_until

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "clients"
NODE_DIR = CLIENTS_DIR / "node"
JAVA_DIR = CLIENTS_DIR / "java"
# Below pytest's 300 s: a client that hangs is reported with what it printed.
CLIENT_TIMEOUT_SECONDS = 280


# ---- the scenario ---------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One library call (Segment's parameter names) and what events_raw must then hold."""

    call: str
    params: dict[str, Any]
    expected: dict[str, Any]


def scenario(run: str) -> tuple[list[Call], list[Call]]:
    """(one batch of valid calls plus a refused one, a batch of only a refused event)."""
    user = f"user-{run}"
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    order = {"order_id": f"o-{run}", "revenue": 59.9, "currency": "EUR",
             "products": [{"product_id": "sku-1", "price": 29.95, "quantity": 2}]}
    stored_order = {**{k: v for k, v in order.items() if k != "products"},
                    "items": order["products"]}  # Segment's `products` are the plan's `items`
    mixed = [
        Call("track", {"userId": user, "event": "Order Completed", "properties": order},
             {"type": "track", "event": "purchase", "properties": stored_order}),
        Call("page", {"userId": user, "name": "Boots", "category": "Shop",
                      "properties": {"url": "https://shop.example/boots", "title": "Boots"}},
             {"type": "page", "event": "page_view", "page_url": "https://shop.example/boots",
              "page_title": "Boots"}),
        Call("screen", {"userId": user, "name": "Cart",
                        "properties": {"previous_screen": "Home"}},
             {"type": "screen", "event": "screen_view", "screen_name": "Cart",
              "properties": {"previous_screen": "Home"}}),
        Call("identify", {"userId": user, "traits": {"email": "ann@example.com", "plan": "pro"}},
             {"type": "identify", "event": "identify",
              "traits": {"email": "ann@example.com", "plan": "pro"}}),
        Call("alias", {"userId": user, "previousId": f"anon-{run}"},
             {"type": "alias", "event": "alias", "previous_id": f"anon-{run}"}),
        Call("group", {"userId": user, "groupId": f"acme-{run}",
                       "traits": {"name": "Acme", "employees": 120}},
             {"type": "group", "event": "group", "group_id": f"acme-{run}",
              "traits": {"name": "Acme", "employees": 120}}),
        Call("track", {"userId": user, "event": "Signed In", "timestamp": three_days_ago,
                       "properties": {"method": "password"}},
             {"type": "track", "event": "login", "properties": {"method": "password"},
              "timestamp": three_days_ago}),
        Call("track", {"userId": user, "event": "Order Completed",
                       "properties": {"order_id": f"o-{run}-2", "revenue": 10}},
             {"refused": "schema_violation"}),  # no currency, no items
    ]
    alone = [Call("track", {"userId": user, "event": "Order Completed",
                            "properties": {"order_id": f"o-{run}-3", "revenue": -5}},
                  {"refused": "schema_violation"})]
    for batch_name, batch in (("mixed", mixed), ("alone", alone)):
        for n, call in enumerate(batch):
            call.params["messageId"] = f"{run}-{batch_name}-{n}-{call.call}"
    return mixed, alone


def message_id(call: Call) -> str:
    return str(call.params["messageId"])


def write_scenario(path: Path, batches: tuple[list[Call], ...]) -> Path:
    path.write_bytes(orjson.dumps(
        {"batches": [[{"call": c.call, "params": c.params} for c in b] for b in batches]}))
    return path


# ---- running each library ---------------------------------------------------------------

@dataclass
class Sent:
    """What a library did with the scenario, as it reported it."""

    library: dict[str, str]        # context.library as the library sends it
    attempts: list[dict[str, Any]]  # HTTP attempts seen by the library (node, java)
    delivered: list[str]            # message ids it reported delivered
    failed: dict[str, Any]          # message id -> the error it gave up with


def run_program(command: list[str], cwd: Path) -> Sent:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            timeout=CLIENT_TIMEOUT_SECONDS)
    assert result.returncode == 0, (result.stdout, result.stderr[-4000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Sent(report["library"], report["attempts"], report["delivered"], report["failed"])


def send_node(library: str) -> Callable[[str, Path], Sent]:
    def send(url: str, scenario_path: Path) -> Sent:
        return run_program(["node", "send.js", library, url, SERVER_KEY, str(scenario_path)],
                           NODE_DIR)
    return send


def send_java(url: str, scenario_path: Path) -> Sent:
    return run_program(["java", "-cp", "target/classes:target/lib/*", "Send", url, SERVER_KEY,
                        str(scenario_path)], JAVA_DIR)


PYTHON_NAMES = {"userId": "user_id", "previousId": "previous_id", "groupId": "group_id",
                "messageId": "message_id"}


def python_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {PYTHON_NAMES.get(name, name): value for name, value in params.items()}
    if "timestamp" in kwargs:
        kwargs["timestamp"] = datetime.fromisoformat(kwargs["timestamp"])
    return kwargs


def send_python(library_of: Callable[[], dict[str, str]],
                client_for: Callable[[str, Callable[[Exception, list[Any]], None]], Any],
                ) -> Callable[[str, Path], Sent]:
    """A Python library in this process: one client per batch, flushed and shut down."""
    def send(url: str, scenario_path: Path) -> Sent:
        sent = Sent(library_of(), [], [], {})
        for calls in orjson.loads(scenario_path.read_bytes())["batches"]:
            errors: list[tuple[Exception, list[Any]]] = []
            client = client_for(url, lambda error, batch, errors=errors:
                                errors.append((error, batch)))
            for call in calls:
                client(call["call"], **python_kwargs(call["params"]))
            client("flush")
            client("shutdown")
            failed = {m["messageId"]: error for error, batch in errors for m in batch}
            sent.failed.update(failed)
            sent.delivered += [c["params"]["messageId"] for c in calls
                               if c["params"]["messageId"] not in failed]
        return sent
    return send


def segment_python_client(url: str, on_error: Callable[..., None]) -> Callable[..., Any]:
    client = SegmentClient(SERVER_KEY, host=url, on_error=on_error)
    return lambda method, **kwargs: getattr(client, method)(**kwargs)


def rudder_python_client(url: str, on_error: Callable[..., None]) -> Callable[..., Any]:
    """Configured through the module, as rudder-sdk-python's README does; the module's
    settings are put back after shutdown."""
    settings = pytest.MonkeyPatch()
    settings.setattr(rudder_analytics, "default_client", None)  # a client of its own
    settings.setattr(rudder_analytics, "write_key", SERVER_KEY)
    settings.setattr(rudder_analytics, "dataPlaneUrl", url)
    settings.setattr(rudder_analytics, "on_error", on_error)

    def call(method: str, **kwargs: Any) -> Any:
        try:
            return getattr(rudder_analytics, method)(**kwargs)
        finally:
            if method == "shutdown":
                settings.undo()
    return call


def library_sent_by(client: Any) -> dict[str, str]:
    """context.library of a message the library builds but does not send (send=False)."""
    _, message = client.track(user_id="u", event="e")
    return dict(message["context"]["library"])


SENDERS: dict[str, Callable[[str, Path], Sent]] = {
    "segment-node": send_node("segment"),
    "rudderstack-node": send_node("rudderstack"),
    "segment-java": send_java,
    "rudderstack-python": send_python(
        lambda: library_sent_by(RudderClient(SERVER_KEY, send=False)), rudder_python_client),
    "segment-python": send_python(
        lambda: library_sent_by(SegmentClient(SERVER_KEY, send=False)), segment_python_client),
}


def installed_version(client: str) -> str:
    """The version this checkout pins and installs, read from where each is installed."""
    if client.endswith("-node"):
        package = {"segment-node": "@segment/analytics-node",
                   "rudderstack-node": "@rudderstack/rudder-sdk-node"}[client]
        installed = orjson.loads((NODE_DIR / "node_modules" / package / "package.json")
                                 .read_bytes())["version"]
        pinned = orjson.loads((NODE_DIR / "package.json").read_bytes())["dependencies"][package]
        assert installed == pinned
        return str(installed)
    if client == "segment-java":
        pom = ElementTree.parse(JAVA_DIR / "pom.xml").getroot()
        ns = {"m": "http://maven.apache.org/POM/4.0.0"}
        for dependency in pom.iterfind("m:dependencies/m:dependency", ns):
            if dependency.findtext("m:artifactId", namespaces=ns) == "analytics":
                version = dependency.findtext("m:version", namespaces=ns)
                assert (JAVA_DIR / "target" / "lib" / f"analytics-{version}.jar").exists()
                return str(version)
        raise AssertionError("analytics-java is not in clients/java/pom.xml")
    distribution = {"rudderstack-python": "rudder-sdk-python",
                    "segment-python": "segment-analytics-python"}[client]
    return importlib.metadata.version(distribution)


# ---- the collector ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnelhouse]:
    instance = Funnelhouse(Path(tmp_path_factory.mktemp("server-clients")) / "data").start()
    yield instance
    instance.stop()


def query(collector: Funnelhouse, sql: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{collector.url}/v1/sql", json={"sql": sql, "params": params},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def metric(collector: Funnelhouse, name: str, **labels: str) -> float:
    text = httpx.get(f"{collector.url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v
                                              for k, v in labels.items()))


def batch_requests(collector: Funnelhouse) -> float:
    return metric(collector, "funnelhouse_request_seconds_count", route="batch")


def everything_before_is_loaded(collector: Funnelhouse, run: str) -> None:
    """The loader takes the queue in order: once an event refused after the library has
    finished is in events_invalid, so is everything the library's requests left."""
    barrier = f"{run}-barrier"
    response = collector.post("/v1/batch", {"batch": [
        {"type": "track", "event": "Order Completed", "userId": "barrier", "messageId": barrier,
         "properties": {}}]}, key=SERVER_KEY)
    assert [r["message_id"] for r in response.json()["rejected"]] == [barrier], response.text
    wait_until(lambda: query(collector, "SELECT 1 FROM events_invalid WHERE message_id = "
                                        "{id:String}", id=barrier), timeout=60)


@dataclass
class Run:
    client: str
    run: str
    mixed: list[Call]
    alone: list[Call]
    sent: Sent
    requests_seen: float   # batch requests that reached the collector's endpoint
    rows: dict[str, dict[str, Any]]
    dead_letters: dict[str, list[str]]  # message id -> one reason per stored copy


@pytest.fixture(scope="module", params=sorted(SENDERS))
def run(request: pytest.FixtureRequest, collector: Funnelhouse,
        tmp_path_factory: pytest.TempPathFactory) -> Run:
    client = request.param
    run_id = f"{client}-{uuid.uuid4().hex[:8]}"
    mixed, alone = scenario(run_id)
    path = write_scenario(tmp_path_factory.mktemp(client) / "scenario.json", (mixed, alone))
    before = batch_requests(collector)
    sent = SENDERS[client](collector.url, path)
    requests_seen = batch_requests(collector) - before
    everything_before_is_loaded(collector, run_id)
    rows = query(collector, """
        SELECT message_id, type, event, user_id, previous_id, group_id, source, properties,
               traits, page_url, page_title, screen_name, library_name, library_version,
               device_type, is_bot, flags, toUnixTimestamp64Milli(timestamp) AS ts
        FROM events_raw WHERE startsWith(message_id, {run:String})""", run=run_id)
    dead = query(collector, """
        SELECT message_id, groupArray(reason) AS reasons FROM events_invalid
        WHERE startsWith(message_id, {run:String}) GROUP BY message_id""", run=run_id)
    return Run(client, run_id, mixed, alone, sent, requests_seen,
               {row["message_id"]: row for row in rows},
               {row["message_id"]: list(row["reasons"]) for row in dead})


# ---- what every library must get ------------------------------------------------------------

def test_every_valid_call_lands_once_as_sent(run: Run) -> None:
    valid = [c for c in run.mixed if "refused" not in c.expected]
    assert sorted(run.rows) == sorted(message_id(c) for c in valid)
    for call in valid:
        row = run.rows[message_id(call)]
        expected = call.expected
        assert (row["type"], row["event"], row["user_id"], row["source"]) == (
            expected["type"], expected["event"], call.params["userId"], "backend"), row
        for column in ("previous_id", "group_id", "page_url", "page_title", "screen_name"):
            if column in expected:
                assert row[column] == expected[column], (column, row)
        for column in ("properties", "traits"):
            stored = orjson.loads(row[column])
            # Libraries add fields of their own (category, name): the sent ones must be there.
            assert {k: stored.get(k) for k in expected.get(column, {})} == \
                expected.get(column, {}), (column, row)
        assert list(row["flags"]) == [], row


def test_library_name_and_version_are_the_librarys_own(run: Run) -> None:
    assert run.sent.library["version"] == installed_version(run.client)
    assert {(row["library_name"], row["library_version"]) for row in run.rows.values()} == {
        (run.sent.library["name"], run.sent.library["version"])}


def test_server_events_without_a_user_agent_are_not_bots(run: Run) -> None:
    assert run.rows
    for row in run.rows.values():
        assert row["device_type"] != "bot" and row["is_bot"] == 0, row


def test_a_server_key_keeps_a_backdated_timestamp(run: Run) -> None:
    [call] = [c for c in run.mixed if "timestamp" in c.params]
    row = run.rows[message_id(call)]
    given = datetime.fromisoformat(call.params["timestamp"]).timestamp() * 1000
    # Corrected for the library's clock by sentAt: equal but for the time on the wire.
    assert abs(int(row["ts"]) - given) < 60_000, (row["ts"], given)


def test_a_refused_event_in_a_batch_is_dead_lettered_once_and_the_rest_kept(run: Run) -> None:
    [refused] = [c for c in run.mixed if "refused" in c.expected]
    assert run.dead_letters[message_id(refused)] == ["schema_violation"]
    # The batch was answered 200 (its other events are stored): delivered, to the library.
    assert message_id(refused) in run.sent.delivered
    assert message_id(refused) not in run.rows


def test_a_wholly_refused_batch_is_given_up_not_retried(run: Run) -> None:
    [refused] = run.alone
    assert run.dead_letters[message_id(refused)] == ["schema_violation"]
    error = run.sent.failed[message_id(refused)]
    if run.client.endswith("-python"):
        # Both raise their APIError from the answer's `code` and `message` (not KeyError).
        assert isinstance(error, (RudderAPIError, SegmentAPIError)), repr(error)
        assert (error.status, error.code) == (400, "schema_violation")
        assert "$.properties.currency" in error.message
    else:
        assert "400" in error or "schema_violation" in error, error
    assert set(run.sent.delivered) == {message_id(c) for c in run.mixed}


# The Python libraries report no HTTP attempts; their retries are counted by dead letters.
@pytest.mark.parametrize("run", ["rudderstack-node", "segment-java", "segment-node"],
                         indirect=True)
def test_each_attempt_the_library_saw_reached_the_collector(run: Run) -> None:
    statuses = [attempt["status"] for attempt in run.sent.attempts]
    # One answer per upload; the last, the refused batch, was not tried again.
    assert statuses[-1] == 400 and statuses.count(400) == 1, run.sent.attempts
    assert set(statuses[:-1]) == {200}, run.sent.attempts
    assert run.requests_seen == len(statuses)


# ---- what one library needed ------------------------------------------------------------

@pytest.mark.parametrize("run", ["segment-java"], indirect=True)
def test_analytics_java_posts_to_import_with_a_slash_and_is_not_redirected(
        run: Run, collector: Funnelhouse) -> None:
    # The URL that answered is the one posted to: a followed 307 (what `/v1/import/` got
    # before) would show its target, `/v1/import`, here.
    assert {a["url"] for a in run.sent.attempts} == {f"{collector.url}/v1/import/"}
    # Its messages carry no library: the name and version come from the batch's context.
    assert run.sent.library["name"] == "analytics-java"


@pytest.mark.parametrize("run", ["rudderstack-node"], indirect=True)
def test_rudder_sdk_node_gzipped_body_labelled_as_a_form_is_taken_as_json(run: Run) -> None:
    labels = {(a["contentType"], a["contentEncoding"]) for a in run.sent.attempts}
    assert labels == {("application/x-www-form-urlencoded", "gzip")}
    assert run.rows  # and what it carried was stored


def test_rudder_sdk_python_wrong_write_key_is_one_401_and_an_api_error(
        collector: Funnelhouse) -> None:
    errors: list[Exception] = []
    refused_before = metric(collector, "funnelhouse_events_rejected_total",
                            reason="unknown_write_key")
    client = RudderClient("wk_nobody", host=collector.url,
                          on_error=lambda error, batch: errors.append(error))
    client.track(user_id="user-1", event="Signed In", properties={"method": "password"})
    client.flush()
    client.shutdown()
    [error] = errors
    assert isinstance(error, RudderAPIError), repr(error)
    assert (error.status, error.code) == (401, "unknown_write_key")
    # Given up at once: one request was refused, none repeated it.
    assert metric(collector, "funnelhouse_events_rejected_total",
                  reason="unknown_write_key") - refused_before == 1
