"""The HTTP edge under attack: slow clients, malformed credentials and parameters,
orphaned workers, TLS (issue 13, findings 9, 10, 11 and 14).

Socket-level tests run the real `funnelhouse collector` (uvicorn, httptools) on a
free port; the credential and parameter fuzz runs every route of `up`'s app.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.conftest import (
    ADMIN_TOKEN,
    BROWSER_KEY,
    every_handle_closed,
    free_port,
    make_settings,
    queued_rows,
    track,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- a real collector process ----------------------------------------------------------------

class CollectorProcess:
    """`funnelhouse collector` in a subprocess, its output in a log file."""

    def __init__(self, tmp_path: Path, *, workers: int = 1, port: int | None = None,
                 tls: tuple[Path, Path] | None = None, nofile: int | None = None,
                 **env: str) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"collector-{self.port}-{time.monotonic_ns()}.log"
        self.env = {**os.environ, "FUNNELHOUSE_DATA_DIR": str(tmp_path / "data"),
                    "FUNNELHOUSE_WRITE_KEYS": f"{BROWSER_KEY}:web",
                    "FUNNELHOUSE_ADMIN_TOKEN": ADMIN_TOKEN, **env}
        args = [sys.executable, "-m", "funnelhouse.cli", "collector", "--port", str(self.port),
                "--workers", str(workers)]
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]

        def limit_files() -> None:  # runs in the child before exec
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                            preexec_fn=limit_files)

    def client(self) -> httpx.Client:
        verify: Any = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
        return httpx.Client(base_url=self.url, timeout=10, verify=verify)

    def wait_ready(self, timeout: float = 60) -> CollectorProcess:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"collector exited:\n{self.log()[-3000:]}")
            try:
                with self.client() as client:
                    return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, interval=0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@pytest.fixture
def slow_edge(tmp_path: Path) -> Iterator[CollectorProcess]:
    """A collector with 1 s header and body timeouts (the defaults are 10 s and 30 s)."""
    collector = CollectorProcess(tmp_path, FUNNELHOUSE_HEADER_TIMEOUT_SECONDS="1",
                                 FUNNELHOUSE_BODY_TIMEOUT_SECONDS="1").wait_ready()
    yield collector
    collector.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the socket; and how long that took."""
    sock.settimeout(timeout)
    started = time.monotonic()
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {timeout}s; got {received[:200]!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


TRACK_BODY = orjson.dumps(track())
HALF_HEADERS = (b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nX-Wri")


# -- finding 9: slow clients ---------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\n", HALF_HEADERS,
                                  b"GET /heal"], ids=["nothing", "request-line", "half-headers",
                                                      "half-request-line"])
def test_headers_that_never_finish_are_cut_off(slow_edge: CollectorProcess, sent: bytes) -> None:
    with connect(slow_edge.port) as sock:
        sock.sendall(sent)
        received, took = read_until_closed(sock, timeout=15)
    assert took < 5, f"held {took:.1f}s with a 1 s header timeout"
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b'"reason":"request_timeout"' in received


@pytest.mark.timeout(120)
def test_headers_dripped_byte_by_byte_are_cut_off(slow_edge: CollectorProcess) -> None:
    # Each byte resets nothing: the deadline is for the whole header block.
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    with connect(slow_edge.port) as sock:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 5:
                break
        if not closed:
            received, _ = read_until_closed(sock, timeout=5)
            assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert time.monotonic() - started < 6


@pytest.mark.timeout(120)
def test_endless_header_block_is_cut_off_by_size(slow_edge: CollectorProcess) -> None:
    # Within the timeout a client could still stream gigabytes of headers into memory.
    with connect(slow_edge.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            # Up to 32 MB: far past what the kernel's socket buffers can absorb, so a
            # server that kept reading would take it all (under load the close is late).
            for _ in range(2000):
                sock.sendall(b"X-Pad: " + b"a" * 16_000 + b"\r\n")
                sent += 16_000
        except (BrokenPipeError, ConnectionResetError):
            pass
        received, _ = read_until_closed(sock, timeout=10)
    assert sent < 8_000_000, "the server kept reading"
    assert received.startswith(b"HTTP/1.1 431") or received == b"", received[:200]


@pytest.mark.timeout(120)
def test_large_but_reasonable_headers_are_served(slow_edge: CollectorProcess) -> None:
    with slow_edge.client() as client:
        response = client.get("/healthz", headers={"Cookie": "c=" + "x" * 32_000})
    assert response.status_code == 200


@pytest.mark.timeout(120)
@pytest.mark.parametrize("body_sent", [0, len(TRACK_BODY) // 2], ids=["no-body", "half-body"])
def test_body_that_never_finishes_gets_408(slow_edge: CollectorProcess, body_sent: int) -> None:
    head = (f"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Write-Key: {BROWSER_KEY}\r\nContent-Length: {len(TRACK_BODY)}\r\n\r\n").encode()
    with connect(slow_edge.port) as sock:
        sock.sendall(head + TRACK_BODY[:body_sent])
        received, took = read_until_closed(sock, timeout=15)
    assert took < 5
    assert received.startswith(b"HTTP/1.1 408"), received[:300]
    assert orjson.loads(received.split(b"\r\n\r\n", 1)[1])["reason"] == "request_timeout"
    assert "Traceback" not in slow_edge.log()


@pytest.mark.timeout(120)
def test_chunked_body_dripped_slowly_gets_408(slow_edge: CollectorProcess) -> None:
    # A byte every 0.3 s keeps each read short; the body's total time is what is bounded.
    head = (f"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Write-Key: {BROWSER_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with connect(slow_edge.port) as sock:
        sock.sendall(head)
        started = time.monotonic()
        answered = b""
        sock.settimeout(0.3)
        for byte in TRACK_BODY[:20]:
            try:
                sock.sendall(b"1\r\n" + bytes([byte]) + b"\r\n")
                answered += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answered:
                break
        if not answered:
            answered, _ = read_until_closed(sock, timeout=10)
    assert answered.startswith(b"HTTP/1.1 408"), answered[:300]
    assert time.monotonic() - started < 5


@pytest.mark.timeout(180)
def test_stalled_sockets_do_not_lock_out_normal_clients(tmp_path: Path) -> None:
    # 80 slowloris sockets against a collector allowed 64 open files: without a header
    # timeout they hold every descriptor forever and normal requests cannot connect.
    collector = CollectorProcess(tmp_path, nofile=64, FUNNELHOUSE_HEADER_TIMEOUT_SECONDS="2",
                                 FUNNELHOUSE_BODY_TIMEOUT_SECONDS="2").wait_ready()
    stalled: list[socket.socket] = []
    try:
        for _ in range(80):
            sock = socket.create_connection(("127.0.0.1", collector.port), timeout=5)
            sock.sendall(HALF_HEADERS)
            stalled.append(sock)
        started = time.monotonic()

        def served() -> bool:
            try:
                with collector.client() as client:
                    response = client.post("/v1/track", json=track(),
                                           auth=(BROWSER_KEY, ""), timeout=3)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(served, timeout=30, interval=0.5)
        # The stalled ones were let go by the header timeout, not by luck.
        assert time.monotonic() - started < 30
        for sock in stalled:
            received, _ = read_until_closed(sock, timeout=15)
            assert received in (b"",) or received.startswith(b"HTTP/1.1 408"), received[:100]
    finally:
        for sock in stalled:
            sock.close()
        collector.stop()


# -- finding 10: client disconnects are not server errors --------------------------------------

@pytest.mark.timeout(120)
def test_client_gone_mid_body_logs_no_traceback(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path).wait_ready()
    try:
        for path, key_header in (("/v1/track", f"X-Write-Key: {BROWSER_KEY}"),
                                 ("/v1/batch", f"X-Write-Key: {BROWSER_KEY}"),
                                 ("/v1/track", "X-Write-Key: nope")):
            with connect(collector.port) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             f"application/json\r\n{key_header}\r\nContent-Length: 5000\r\n\r\n"
                             .encode() + b'{"event": "cl')
                time.sleep(0.3)
        with collector.client() as client:  # still serving
            assert client.post("/v1/track", json=track(), auth=(BROWSER_KEY, "")
                               ).status_code == 200
        time.sleep(0.5)
    finally:
        collector.stop()
    log = collector.log()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


# -- finding 10: malformed credentials and parameters, every route ------------------------------

BAD_CREDENTIALS: list[dict[str, bytes]] = [
    {"authorization": b"Bearer t\xe9"},                      # latin-1 byte
    {"authorization": "Bearer té".encode()},                 # UTF-8 bytes
    {"authorization": b"Bearer \xff\xfe\x80"},
    {"authorization": b"Bearer " + b"A" * 100_000},          # huge
    {"authorization": b"Bearer " + ADMIN_TOKEN.encode() + b"\xe9"},
    {"authorization": b"Bearer"},
    {"authorization": b"bearer    "},
    {"authorization": b"Basic !!!not base64!!!"},
    {"authorization": b"Basic " + base64.b64encode(b"\xff\xfe:")},      # not UTF-8
    {"authorization": b"Basic " + base64.b64encode(b"nocolon")},
    {"authorization": b"Basic " + base64.b64encode("wk_é:x".encode())},
    {"authorization": b"Basic \xe9\xe9"},
    {"authorization": b"Digest \x80"},
    {"x-admin-token": b"\x80\xff"},
    {"x-admin-token": b"t\xe9"},
    {"x-admin-token": b"x" * 100_000},
    {"x-write-key": b"\xe9\xff"},
    {"authorization": b"Bearer t\xe9", "x-admin-token": b"\xe9"},
]


@pytest.fixture(scope="module")
def up_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """`up`'s whole app (every route) over a fresh warehouse with the models built."""
    from funnelhouse.models.run import run_models
    from funnelhouse.server.up import build_pipeline

    settings = make_settings(tmp_path_factory.mktemp("up") / "data")
    with every_handle_closed():
        pipeline = build_pipeline(settings)
        run_models(pipeline.warehouse, settings)
        with TestClient(pipeline.app, raise_server_exceptions=False) as client:
            yield client


def every_route(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) for each route of the app, path parameters filled in."""
    out = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            out.append(("GET", route.path + "/"))
            continue
        assert isinstance(route, Route)
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + ":path}", "x").replace("{" + name + ":str}", "x")
            path = path.replace("{" + name + "}", "x")
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, path))
    return out


@pytest.mark.timeout(300)
def test_malformed_credentials_never_answer_5xx_on_any_route(up_app: TestClient) -> None:
    routes = every_route(up_app)
    assert len(routes) > 40  # the whole app, not the collector's few routes
    admin_401 = 0
    failures = []
    for method, path in routes:
        for headers in BAD_CREDENTIALS:
            response = up_app.request(method, path, headers=headers, content=b"{}")
            if response.status_code >= 500:
                failures.append((method, path, headers, response.status_code,
                                 response.text[:200]))
            if response.status_code == 401:
                admin_401 += 1
                reason = (response.headers.get("x-funnelhouse-reason")
                          or response.json()["reason"])  # the pixel answers a GIF
                assert reason in ("unauthorized", "unknown_write_key")
    assert not failures, failures[:10]
    assert admin_401 > len(routes)  # the admin routes refused them, not ignored them


@pytest.mark.timeout(120)
@pytest.mark.parametrize("headers", BAD_CREDENTIALS[:4])
def test_bearer_with_odd_bytes_is_401_on_admin_routes(up_app: TestClient,
                                                      headers: dict[str, bytes]) -> None:
    for method, path in (("POST", "/v1/sql"), ("GET", "/v1/debug/events"),
                         ("GET", "/v1/segments"), ("GET", "/v1/plan/coverage")):
        response = up_app.request(method, path, headers=headers, json={"sql": "SELECT 1"})
        assert response.status_code == 401, (path, response.text)
        assert response.json()["reason"] == "unauthorized"


BAD_NUMBERS = ["5" * 5000, "9" * 30, "-1", "1.5", "NaN", "inf", "1e309", "abc", "٣",
               "１２", "\x00", " "]  # "١٢"-like: digits of other scripts, which int() reads
QUERY_PARAMS = ["limit", "offset", "version", "days", "since", "trend_campaigns", "date_from",
                "date_to", "as_of", "desc", "q", "format", "invalid"]


def routes_with_real_names(client: TestClient) -> list[tuple[str, str]]:
    """Every GET route; the signal route once per signal, so its options are parsed."""
    from funnelhouse.api.people import NUMERIC_OPTIONS
    from funnelhouse.people.signals import SIGNALS

    out = []
    for method, path in every_route(client):
        if method != "GET" or path.startswith("/console"):
            continue
        if path == "/v1/signals/x":
            out += [(method, f"/v1/signals/{name}", sorted(NUMERIC_OPTIONS))
                    for name in SIGNALS]
        else:
            out.append((method, path, QUERY_PARAMS))
    return out


@pytest.mark.timeout(600)
def test_bad_query_parameters_never_answer_5xx_on_any_route(up_app: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failures = []
    checked = 0
    for method, path, names in routes_with_real_names(up_app):
        for name in names:
            for value in BAD_NUMBERS:
                response = up_app.request(method, path, params={name: value}, headers=auth)
                checked += 1
                if response.status_code >= 500:
                    failures.append((method, path, name, value[:20], response.status_code,
                                     response.text[:200]))
    assert checked > 2000
    assert not failures, failures[:10]


@pytest.mark.parametrize("value", ["5" * 5000, "-1", "1.5", "NaN", "abc", "٣", "9" * 30])
def test_debug_limit_out_of_shape_is_400(up_app: TestClient, value: str) -> None:
    response = up_app.get("/v1/debug/events", params={"limit": value},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "bad_parameter"


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e309", "abc", "-1", "5" * 5000])
def test_debug_since_out_of_shape_is_400(up_app: TestClient, value: str) -> None:
    response = up_app.get("/v1/debug/events", params={"since": value},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "bad_parameter"


def test_debug_numbers_in_range_still_work(up_app: TestClient) -> None:
    response = up_app.get("/v1/debug/events", params={"limit": "5", "since": "1.5"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"events": []}


# -- finding 11: a killed master takes its workers with it --------------------------------------

def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def workers_of(pid: int) -> set[int]:
    """The master's uvicorn workers (multiprocessing spawn children, not its resource tracker)."""
    found = set()
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.add(child)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.timeout(180)
@pytest.mark.parametrize("trusted", ["", "127.0.0.1/32"])
def test_forwarded_for_from_loopback_is_believed_only_when_listed(tmp_path: Path,
                                                                  trusted: str) -> None:
    """The real server, not the test client: uvicorn's own proxy-header rewrite (on by
    default for loopback peers) used to put X-Forwarded-For's address in the scope before
    the app's FUNNELHOUSE_TRUSTED_PROXIES check ever saw the peer."""
    env = {"FUNNELHOUSE_TRUSTED_PROXIES": trusted} if trusted else {}
    collector = CollectorProcess(tmp_path, **env).wait_ready()
    try:
        with collector.client() as client:
            auth = base64.b64encode(f"{BROWSER_KEY}:".encode()).decode()
            answer = client.post("/v1/track", json=track(), headers={
                "Authorization": f"Basic {auth}", "X-Forwarded-For": "198.51.100.23"})
            assert answer.status_code == 200, answer.text
            # The same for the scheme and host handed to browser SDKs: a page must not be
            # told to send its events to whatever an unlisted peer's headers name.
            settings = client.get(f"/v1/projects/{BROWSER_KEY}/settings", headers={
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}).json()
            segment = settings["integrations"]["Segment.io"]
            assert (segment["protocol"], segment["apiHost"]) == (
                ("https", "evil.example/v1") if trusted
                else ("http", f"127.0.0.1:{collector.port}/v1"))
    finally:
        collector.stop()
    from funnelhouse.queue.eventlog import EventLog

    log = EventLog(tmp_path / "data" / "queue.sqlite3")
    try:
        [row] = queued_rows(log)
    finally:
        log.close()
    assert row["ip"] == ("198.51.100.0" if trusted else "127.0.0.0")


def test_sigkilled_master_leaves_no_worker_serving(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path, workers=2).wait_ready()
    workers: set[int] = set()
    try:
        workers = wait_until(lambda: len(workers_of(collector.process.pid)) == 2
                             and workers_of(collector.process.pid), timeout=30)
        with collector.client() as client:
            assert client.post("/v1/track", json=track(), auth=(BROWSER_KEY, "")
                               ).status_code == 200
        collector.process.send_signal(signal.SIGKILL)
        collector.process.wait(timeout=10)
        wait_until(lambda: not any(alive(w) for w in workers), timeout=15, interval=0.1)

        # Nothing answers on the port any more, and a new collector binds it.
        with pytest.raises(httpx.ConnectError), collector.client() as client:
            client.get("/healthz")
        again = CollectorProcess(tmp_path, workers=2, port=collector.port).wait_ready()
        try:
            with again.client() as client:
                assert client.post("/v1/track", json=track(), auth=(BROWSER_KEY, "")
                                   ).status_code == 200
        finally:
            again.stop()
        assert "Address already in use" not in again.log()
    finally:
        for worker in workers:
            if alive(worker):
                os.kill(worker, signal.SIGKILL)
        collector.stop()


# -- finding 14: TLS ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made for this run."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "funnelhouse test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def assert_plain_http_refused(port: int) -> None:
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/track", json=track(),
                              auth=(BROWSER_KEY, ""), timeout=5)
    except httpx.HTTPError:
        return
    raise AssertionError(f"plain HTTP was answered: {response.status_code} {response.text!r}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["flags", "env"])
def test_collector_serves_https_only_with_a_certificate(tmp_path: Path, how: str,
                                                        certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    if how == "flags":
        collector = CollectorProcess(tmp_path, tls=certificate)
    else:
        collector = CollectorProcess(tmp_path, FUNNELHOUSE_TLS_CERT=str(cert),
                                     FUNNELHOUSE_TLS_KEY=str(key))
        collector.tls, collector.url = certificate, f"https://127.0.0.1:{collector.port}"
    try:
        collector.wait_ready()
        with collector.client() as client:  # verifies the chain against our certificate
            response = client.post("/v1/track", json=track(), auth=(BROWSER_KEY, ""))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        assert_plain_http_refused(collector.port)
        # A client that does not trust the certificate cannot talk to it either.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{collector.url}/healthz", timeout=5)
        assert f"https://127.0.0.1:{collector.port}" in collector.log()
    finally:
        collector.stop()


@pytest.mark.timeout(60)
def test_collector_refuses_half_a_tls_configuration(tmp_path: Path,
                                                    certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    for extra in ({"FUNNELHOUSE_TLS_CERT": str(cert)},
                  {"FUNNELHOUSE_TLS_CERT": str(cert), "FUNNELHOUSE_TLS_KEY": str(cert)},
                  {"FUNNELHOUSE_TLS_CERT": str(cert), "FUNNELHOUSE_TLS_KEY": "/nonexistent"}):
        collector = CollectorProcess(tmp_path, **extra)
        try:
            assert collector.process.wait(timeout=30) == 2
        finally:
            collector.stop()  # a collector that served anyway must not outlive the test
        assert "cannot serve TLS" in collector.log()


@pytest.mark.timeout(240)
def test_up_serves_https_with_a_certificate(tmp_path: Path,
                                            certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    port = free_port()
    log_path = tmp_path / "up.log"
    env = {**os.environ, "FUNNELHOUSE_WRITE_KEYS": f"{BROWSER_KEY}:web",
           "FUNNELHOUSE_ADMIN_TOKEN": ADMIN_TOKEN, "FUNNELHOUSE_LOADER_BATCH_SECONDS": "0.1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "funnelhouse.cli", "up", "--data-dir", str(tmp_path / "data"),
             "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    verify = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{url}/healthz", verify=verify, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=120, interval=0.2)
        event = track(messageId="tls-event-1")
        response = httpx.post(f"{url}/v1/track", json=event, auth=(BROWSER_KEY, ""),
                              verify=verify, timeout=10)
        assert response.status_code == 200, response.text

        def loaded() -> bool:
            answer = httpx.post(f"{url}/v1/sql", verify=verify, timeout=30,
                                json={"sql": "SELECT count() AS n FROM events_raw "
                                             "WHERE message_id = 'tls-event-1'"},
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            return answer.status_code == 200 and int(answer.json()["data"][0]["n"]) == 1

        wait_until(loaded, timeout=30, interval=0.2)
        assert_plain_http_refused(port)
        # Other commands find it at the https address and trust its certificate.
        announced = orjson.loads((tmp_path / "data" / "instance.json").read_bytes())
        assert announced["url"] == url
        sql = subprocess.run(
            [sys.executable, "-m", "funnelhouse.cli", "sql", "--data-dir",
             str(tmp_path / "data"), "--format", "csv",
             "SELECT message_id FROM events_raw WHERE message_id = 'tls-event-1'"],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert sql.returncode == 0, sql.stderr
        assert "tls-event-1" in sql.stdout
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
