"""Test fixture: ClickHouse's HTTP interface in front of chdb, enough for clickhouse-connect."""

# No ClickHouse server can be installed on the development machines, so the server
# backend (warehouse/server.py, clickhouse-connect) is tested against this stand-in:
# the same engine as chdb, spoken to over the HTTP protocol a real server speaks.
# It runs in a process of its own (`start_fixture`): chdb serves one data folder per
# process and in-process connections share one engine, so the tests' own chdb
# warehouses and this one must not live in the same process.
#
# What it implements: POST and GET on any path with the query in the `query` URL
# argument and/or the body (joined by a newline, as ClickHouse does), multipart form
# bodies (clickhouse-connect sends long query parameters that way), `param_<name>`
# query parameters, `database`, `default_format`, `query_id`, every other URL argument
# applied as a setting to that request only (a fresh chdb connection per request,
# `readonly` set last so the others can still be set), GET as read-only (readonly=2,
# as on a server), `INSERT … FORMAT <fmt>` followed by data (streamed to chdb's
# insert), request bodies compressed with gzip/deflate/lz4/zstd/br, `/ping`, the
# response headers clickhouse-connect reads (X-ClickHouse-Summary, -Query-Id, -Format,
# -Timezone) and errors as a non-200 status, X-ClickHouse-Exception-Code and the
# engine's error text.
# What it refuses: sessions (`session_id`), ClickHouse's own block compression
# (`compress=1`/`decompress=1`) and external data. Responses are never compressed
# (an Accept-Encoding is a preference; clickhouse-connect reads identity bodies).
# User and password are accepted and ignored.

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import orjson

# URL arguments that steer the HTTP exchange rather than the query; they are not
# settings, or are settings about the HTTP transport this fixture does not vary.
TRANSPORT_ARGS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "close_session", "compress",
    "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version", "role",
    "stacktrace", "enable_http_compression", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
    "http_response_buffer_size", "http_wait_end_of_query",
})
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# `INSERT INTO t [(cols)] [SETTINGS …] FORMAT Fmt` then the data, as a client sends it.
_INSERT_WITH_DATA = re.compile(rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+(\w+)[ \t]*(?:\r?\n)?",
                               re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)+", re.DOTALL)
_RESULT_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESC", "EXISTS", "EXPLAIN", "CHECK", "(")
_CODE = re.compile(r"Code: (\d+)")
_CONTENT_TYPES = {"TabSeparated": "text/tab-separated-values; charset=UTF-8",
                  "CSV": "text/csv; charset=UTF-8", "CSVWithNames": "text/csv; charset=UTF-8",
                  "JSON": "application/json; charset=UTF-8",
                  "JSONCompact": "application/json; charset=UTF-8"}


class ClickHouseHttpError(Exception):
    """A refusal answered as ClickHouse would: an error code, an HTTP status, the text."""

    def __init__(self, message: str, code: int = 0, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _status_for(code: int) -> int:
    # The status ClickHouse's HTTP handler gives the commonest error codes.
    if code in (62, 27, 36, 41, 42, 43, 44, 46, 47, 53, 57, 115, 452, 457):
        return 400
    if code in (60, 81):  # unknown table, unknown database
        return 404
    if code in (164, 497, 516):  # readonly, access denied, authentication failed
        return 403
    return 500


def _literal(value: str) -> str:
    if _NUMBER.match(value) or value[:1] in ("{", "["):  # numbers, map and array settings
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class ChdbHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = str(data_dir)
        # Held open for the server's life: the engine stays up between requests.
        self.base = chdb.connect(self.data_dir)
        version, tz = self.base.query("SELECT version(), timezone()", "TabSeparated") \
            .bytes().decode().rstrip("\n").split("\t")
        self.version, self.timezone = version, tz
        super().__init__(address, ChdbHttpHandler)

    def server_close(self) -> None:
        super().server_close()
        self.base.close()


class ChdbHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    server: ChdbHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        query_id = str(uuid.uuid4())
        try:
            url = urlsplit(self.path)
            args = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self._read_body()
            query_id = args.get("query_id") or query_id
            if url.path.rstrip("/") == "/ping" or (method == "GET" and not args.get("query")):
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            encoding = self.headers.get("Content-Encoding")
            if encoding and encoding != "identity" and body:
                from clickhouse_connect.driver._backend.httpcommon import decompress_response

                body = decompress_response(body, encoding)
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                args.update(self._form_fields(content_type, body))
                body = b""
            status, payload, headers = self._execute(method, args, body, query_id)
            self._send(status, payload, headers)
        except ClickHouseHttpError as exc:
            self._send_error(exc, query_id)
        except Exception as exc:  # the engine's errors carry ClickHouse's code and text
            match = _CODE.search(str(exc))
            code = int(match.group(1)) if match else 1001  # STD_EXCEPTION
            self._send_error(ClickHouseHttpError(str(exc), code, _status_for(code)), query_id)

    def _form_fields(self, content_type: str, body: bytes) -> dict[str, str]:
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                raise ClickHouseHttpError("external data is not supported by this test fixture",
                                          48, 400)
            payload = part.get_payload(decode=True) or b""
            fields[str(name)] = payload.decode()
        return fields

    def _execute(self, method: str, args: dict[str, str], body: bytes, query_id: str
                 ) -> tuple[int, bytes, dict[str, str]]:
        if args.get("session_id"):
            raise ClickHouseHttpError("sessions are not supported by this test fixture", 48, 400)
        if args.get("compress") not in (None, "0") or args.get("decompress") not in (None, "0"):
            raise ClickHouseHttpError("ClickHouse block compression is not supported by this "
                                      "test fixture", 48, 400)
        query = args.get("query", "").encode()
        text = query + b"\n" + body if query and body else query or body
        if not text.strip():
            raise ClickHouseHttpError("Empty query", 62, 400)
        params = {name[6:]: value for name, value in args.items() if name.startswith("param_")}
        settings = {name: value for name, value in args.items()
                    if name not in TRANSPORT_ARGS and not name.startswith("param_")}
        for name in settings:
            if not _SETTING_NAME.match(name):
                raise ClickHouseHttpError(f"Unknown setting '{name}'", 115, 400)
        # A GET may not write, as on a server; an explicit readonly=1 stays 1.
        readonly = settings.pop("readonly", None)
        if method == "GET" and readonly in (None, "0"):
            readonly = "2"
        fmt = args.get("default_format") or "TabSeparated"

        conn = chdb.connect(self.server.data_dir)  # one per request: settings die with it
        try:
            if args.get("database"):
                conn.query(f"USE {_identifier(args['database'])}", "TabSeparated")
            for name, value in settings.items():
                conn.query(f"SET {name} = {_literal(value)}", "TabSeparated")
            if readonly is not None:
                conn.query(f"SET readonly = {_literal(readonly)}", "TabSeparated")
            insert = _INSERT_WITH_DATA.match(text)
            if insert:
                with conn.send_insert(insert.group(1).decode(), insert.group(2).decode()) as ins:
                    ins.append(text[insert.end():])
                    done = ins.finish()
                summary = {"written_rows": done.rows_written, "written_bytes": done.bytes_written,
                           "elapsed_ns": int(done.elapsed * 1e9)}
                return 200, b"", self._headers(query_id, summary, None)
            sql = text.decode()
            result = conn.query(sql, fmt, params=params or None)
        finally:
            conn.close()
        payload = result.bytes() if result is not None else b""
        summary = {} if result is None else {
            "read_rows": result.rows_read(), "read_bytes": result.bytes_read(),
            "written_rows": result.rows_written(), "written_bytes": result.bytes_written(),
            "elapsed_ns": int(result.elapsed() * 1e9)}
        statement = _COMMENTS.sub("", sql).upper()
        out_fmt = None
        if statement.startswith(_RESULT_STATEMENTS):
            explicit = _TRAILING_FORMAT.search(sql)
            out_fmt = explicit.group(1) if explicit else fmt
        return 200, payload, self._headers(query_id, summary, out_fmt)

    def _headers(self, query_id: str, summary: dict[str, int], fmt: str | None
                 ) -> dict[str, str]:
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.timezone,
            "X-ClickHouse-Server-Display-Name": "chdb-http-fixture",
            # ClickHouse writes every figure of the summary as a string.
            "X-ClickHouse-Summary": orjson.dumps({k: str(v) for k, v in summary.items()}).decode(),
            "Content-Type": _CONTENT_TYPES.get(fmt or "", "application/octet-stream"
                                               if fmt else "text/plain; charset=UTF-8"),
        }
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        return headers

    def _send_error(self, exc: ClickHouseHttpError, query_id: str) -> None:
        text = str(exc)
        if "(version " not in text:
            text += f" (version {self.server.version})"
        self._send(exc.status, (text.rstrip("\n") + "\n").encode(), {
            "X-ClickHouse-Exception-Code": str(exc.code),
            "X-ClickHouse-Query-Id": query_id,
            "Content-Type": "text/plain; charset=UTF-8",
        })

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def serve(data_dir: Path, port: int = 0) -> None:
    """Serve until stdin closes (the parent test process ended) or SIGTERM."""
    server = ChdbHttpServer(("127.0.0.1", port), data_dir)
    print(f"listening http://127.0.0.1:{server.server_address[1]}", flush=True)

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # EOF when the parent closes the pipe or dies
        server.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


@contextmanager
def start_fixture(data_dir: Path) -> Iterator[str]:
    """A fixture process serving `data_dir`; yields its base URL, stops it on exit."""
    log_path = data_dir.parent / f"{data_dir.name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.clickhouse_http_fixture", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = process.stdout.readline().decode()  # blocks until it listens or dies
        if not line.startswith("listening "):
            raise RuntimeError(f"ClickHouse HTTP fixture did not start:\n"
                               f"{log_path.read_text()[-3000:]}")
        yield line.split(" ", 1)[1].strip()
    finally:
        process.stdin.close()  # the server shuts down on EOF
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    serve(options.data_dir, options.port)


if __name__ == "__main__":
    main()
