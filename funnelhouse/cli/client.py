"""One client for every CLI command: through the running instance, or on the data directly.

chdb lets one process open a data folder, so while `funnelhouse up` holds it, a command
asks `up` over HTTP (admin token, its certificate pinned); otherwise it opens the folder
(or the ClickHouse server of FUNNELHOUSE_CLICKHOUSE_URL) itself. `Client.for_settings`
decides once; both ways expose the same operations and answer with the same JSON. The
local way calls the functions the HTTP API handlers call, the remote way calls the API.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from funnelhouse.config import Settings
from funnelhouse.server import instance
from funnelhouse.warehouse.base import Warehouse, WarehouseError
from funnelhouse.warehouse.lease import LeaseHeld, Leases, holder_id

P = ParamSpec("P")
R = TypeVar("R")
Progress = Callable[[str], None]


class ClientError(Exception):
    """A refusal or failure, said the same way whichever way the command went."""

    def __init__(self, message: str, reason: str = "bad_request", path: str | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} ({self.reason}" + (f" at {self.path}" if self.path else "") + ")"


class Client(ABC):
    """The operations the commands need; `for_settings` picks the way to run them."""

    settings: Settings
    where: str   # said in messages: the instance URL, the folder or the server

    @staticmethod
    def for_settings(settings: Settings) -> Client:
        """Remote when an `up` answers for this data folder, else local; ClientError when
        there is neither a running instance, nor a warehouse in the folder, nor a server."""
        if settings.clickhouse_url:
            return LocalClient(settings)
        url = instance.running_url(settings)   # reads <data_dir>/instance.json, creates nothing
        if url:
            return RemoteClient(instance.with_local_credentials(settings), url)
        if not settings.warehouse_dir.is_dir():
            # Not an empty ./.funnelhouse made by mistake: say where we looked.
            folder = settings.data_dir.resolve()
            raise ClientError(
                f"no funnelhouse data in {folder}: no running `funnelhouse up` announced "
                f"({folder / 'instance.json'}) and no warehouse ({folder / 'warehouse'}); "
                "start one with `funnelhouse up` (then `funnelhouse demo` for sample data), "
                "or pass --data-dir, set FUNNELHOUSE_DATA_DIR, or FUNNELHOUSE_CLICKHOUSE_URL "
                "for a ClickHouse server", "no_data")
        return LocalClient(instance.with_local_credentials(settings))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release connections (the warehouse handles or the HTTP client)."""

    # Each operation, one implementation per way (LocalClient, RemoteClient).
    @abstractmethod
    def sql(self, query: str, fmt: str) -> bytes:
        """One guarded read-only query; `fmt` json, csv or tsv (as POST /v1/sql)."""
        ...

    @abstractmethod
    def models_run(self, *, full_refresh: bool = False, since: str | None = None,
                   select: list[str] | None = None, progress: Progress = print
                   ) -> dict[str, Any]:
        ...

    @abstractmethod
    def replay_invalid(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def coverage(self, *, days: int, source: str | None,
                 plan_dir: Path | None = None) -> dict[str, Any]:
        ...

    @abstractmethod
    def analysis(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        """trends, funnel, retention, paths or timeline (`doc["person"]`)."""
        ...

    @abstractmethod
    def save_segment(self, analysis: str, spec: dict[str, Any], who: str, name: str,
                     live: bool = False, last_days: int | None = None) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_list(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def saved_list(self, kind: str) -> dict[str, Any]:
        """The console's saved `insights` or `dashboards` (as GET /v1/insights …)."""
        ...

    @abstractmethod
    def segment_create(self, doc: dict[str, Any], *, materialise: bool = True
                       ) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_update(self, segment_id: str, doc: dict[str, Any], *,
                       materialise: bool = True) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_show(self, segment_id: str, version: int | None = None) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_delete(self, segment_id: str) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_materialise(self, segment_id: str | None = None) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_members(self, segment_id: str, *, limit: int | None = None) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_members_csv(self, segment_id: str) -> bytes:
        ...

    @abstractmethod
    def segment_check(self, segment_id: str, any_id: str) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_history(self, segment_id: str) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_compare(self, segment_id: str, days: int, as_of: str | None
                        ) -> dict[str, Any]:
        ...

    @abstractmethod
    def segment_from_sql(self, body: dict[str, Any]) -> dict[str, Any]:
        ...

    @abstractmethod
    def signal(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        ...

    @abstractmethod
    def export(self, body: dict[str, Any], out: str | None) -> dict[str, Any]:
        """Export one day; `out` is any folder locally, one inside the export root remotely."""
        ...

    @abstractmethod
    def forget(self, user_id: str, *, requested_by: str, reason: str) -> dict[str, Any]:
        ...

    @abstractmethod
    def forget_log(self) -> dict[str, Any]:
        ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _said(value: str = "bad_request", warehouse: str = "warehouse_error"
          ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The library's exceptions as ClientError, with the reason the HTTP endpoint of the
    same operation gives (`value` for a refused request, `warehouse` for a failed query)."""
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except ClientError:
                raise
            except LeaseHeld as exc:   # as POST /v1/admin/models/run answers (409)
                raise ClientError(str(exc), "job_running") from exc
            except WarehouseError as exc:
                reason = warehouse
                if warehouse == "query_failed" and "readonly" in str(exc).lower():
                    reason = "read_only"   # as POST /v1/sql says it
                raise ClientError(_first_line(exc), reason) from exc
            except (ValueError, KeyError) as exc:  # SpecError, SegmentError, SqlRefused …
                as_json = getattr(exc, "as_json", None)
                detail = as_json() if callable(as_json) else {}
                raise ClientError(str(detail.get("error") or _first_line(exc)),
                                  str(detail.get("reason") or value),
                                  detail.get("path")) from exc
        return wrapper
    return decorate


class LocalClient(Client):
    """On the data folder (chdb) or the ClickHouse server itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.where = settings.clickhouse_url or str(settings.data_dir)
        self._reader: Warehouse | None = None
        self._writer: Warehouse | None = None
        self._people: Any = None
        self._runner: Any = None

    @property
    def reader(self) -> Warehouse:
        if self._reader is None:
            from funnelhouse.warehouse.open import open_warehouse

            self._reader = open_warehouse(self.settings, readonly=True)
        return self._reader

    @property
    def writer(self) -> Warehouse:
        """A writer, with the migrations applied (the folder may predate some)."""
        if self._writer is None:
            from funnelhouse.warehouse.migrate import migrate
            from funnelhouse.warehouse.open import open_warehouse

            self._writer = open_warehouse(self.settings)
            migrate(self._writer, self.settings.sql_dir / "migrations")
        return self._writer

    @property
    def people(self) -> Any:
        """What the people API handlers call (funnelhouse.api.people.People)."""
        if self._people is None:
            from funnelhouse.api.people import People

            self._people = People(self.settings, self.writer, reader=self.reader)
        return self._people

    def close(self) -> None:
        from funnelhouse.warehouse.sql_guard import release_limited

        if self._runner is not None:
            self._runner.close()
        if self._people is not None:
            self._people.segments.close()
        for handle in (self._reader, self._writer):
            if handle is not None:
                release_limited(handle)
                handle.close()
        self._reader = self._writer = self._people = self._runner = None

    @_said(warehouse="query_failed")
    def sql(self, query: str, fmt: str) -> bytes:
        from funnelhouse.api.sql import FORMATS
        from funnelhouse.warehouse.sql_guard import SqlRunner

        if fmt not in FORMATS:
            raise ClientError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        # The same guard and limits as POST /v1/sql: the CLI is no way around them.
        if self._runner is None:
            self._runner = SqlRunner(self.reader, self.settings, size=1)
        return bytes(self._runner.run(self._runner.guard(query), FORMATS[fmt][0]))

    @_said()
    def models_run(self, *, full_refresh: bool = False, since: str | None = None,
                   select: list[str] | None = None, progress: Progress = print
                   ) -> dict[str, Any]:
        from funnelhouse.models.run import run_models
        lines: list[str] = []

        def said(line: str) -> None:
            lines.append(line)
            progress(line)

        # A `serve` replica may be refreshing the same server warehouse: take its lease.
        leases = Leases(self.writer, holder_id("cli"), ttl_seconds=self.settings.job_lease_seconds)
        with leases.holding("models"):
            runs = run_models(self.writer, self.settings, full_refresh=full_refresh,
                              since=date.fromisoformat(since) if since else None,
                              select=select or None, progress=said)
        return {"runs": [dataclasses.asdict(r) for r in runs], "log": lines}

    @_said()
    def replay_invalid(self) -> dict[str, Any]:
        from funnelhouse.collector.plan import TrackingPlan
        from funnelhouse.jobs.replay import replay_invalid

        return dataclasses.asdict(replay_invalid(self.writer, self.settings,
                                                 TrackingPlan.load(self.settings.plan_dir)))

    @_said(value="bad_spec", warehouse="query_failed")
    def coverage(self, *, days: int, source: str | None,
                 plan_dir: Path | None = None) -> dict[str, Any]:
        from funnelhouse.analyses.coverage import coverage
        from funnelhouse.collector.plan import TrackingPlan

        plan = TrackingPlan.load(plan_dir or self.settings.plan_dir)
        return coverage(self.reader, plan, days=days, source=source)

    @_said(value="bad_spec", warehouse="query_failed")
    def analysis(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        from funnelhouse.analyses import run_analysis

        return run_analysis(name, doc, self.reader, self.settings.reporting_tz).to_dict()

    @_said(value="bad_spec", warehouse="query_failed")
    def save_segment(self, analysis: str, spec: dict[str, Any], who: str, name: str,
                     live: bool = False, last_days: int | None = None) -> dict[str, Any]:
        from funnelhouse.analyses.cohorts import save_as_segment

        return save_as_segment(analysis, spec, who, name, reader=self.reader,
                               writer=self.writer, settings=self.settings, live=live,
                               last_days=last_days)

    @_said()
    def segment_list(self) -> dict[str, Any]:
        return dict(self.people.segment_list())

    @_said()
    def saved_list(self, kind: str) -> dict[str, Any]:
        from funnelhouse.insights.store import Boards

        boards = Boards(self.writer)   # the writer: it has the migrations applied
        return {kind: boards.list_insights() if kind == "insights" else boards.list_dashboards()}

    @_said()
    def segment_create(self, doc: dict[str, Any], *, materialise: bool = True
                       ) -> dict[str, Any]:
        return dict(self.people.segment_create(doc, materialise=materialise, created_by="cli"))

    @_said()
    def segment_update(self, segment_id: str, doc: dict[str, Any], *,
                       materialise: bool = True) -> dict[str, Any]:
        return dict(self.people.segment_update(segment_id, doc, materialise=materialise))

    @_said()
    def segment_show(self, segment_id: str, version: int | None = None) -> dict[str, Any]:
        return dict(self.people.segment_show(segment_id, version))

    @_said()
    def segment_delete(self, segment_id: str) -> dict[str, Any]:
        return dict(self.people.segment_delete(segment_id))

    @_said()
    def segment_materialise(self, segment_id: str | None = None) -> dict[str, Any]:
        return dict(self.people.segment_materialise(segment_id))

    @_said()
    def segment_members(self, segment_id: str, *, limit: int | None = None) -> dict[str, Any]:
        return dict(self.people.segment_members(segment_id, limit=limit))

    @_said()
    def segment_members_csv(self, segment_id: str) -> bytes:
        return bytes(self.people.segment_members_csv(segment_id))

    @_said()
    def segment_check(self, segment_id: str, any_id: str) -> dict[str, Any]:
        return dict(self.people.segment_check(segment_id, any_id))

    @_said()
    def segment_history(self, segment_id: str) -> dict[str, Any]:
        return dict(self.people.segment_history(segment_id))

    @_said()
    def segment_compare(self, segment_id: str, days: int, as_of: str | None
                        ) -> dict[str, Any]:
        moment = datetime.fromisoformat(as_of.replace("Z", "+00:00")) if as_of else None
        return dict(self.people.segment_compare(segment_id, days=days, as_of=moment))

    @_said()
    def segment_from_sql(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.people.segment_from_sql(body))

    @_said()
    def signal(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        return dict(self.people.signal(name, dict(options)))

    @_said()
    def export(self, body: dict[str, Any], out: str | None) -> dict[str, Any]:
        # The operator's own shell works on the data itself: any folder.
        body = {**body, "out": str(Path(out).resolve()) if out else None}
        return dict(self.people.export(body, out_anywhere=True))

    @_said()
    def forget(self, user_id: str, *, requested_by: str, reason: str) -> dict[str, Any]:
        return dict(self.people.forget(user_id, requested_by=requested_by, reason=reason))

    @_said()
    def forget_log(self) -> dict[str, Any]:
        return dict(self.people.forget_log())


class RemoteClient(Client):
    """Through the HTTP API of the running `up` (or `serve`) of this data folder."""

    def __init__(self, settings: Settings, url: str, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.url = self.where = url
        self.http = http or instance.http_client(settings, url)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, *, body: Any = None,
                 params: dict[str, Any] | None = None) -> httpx.Response:
        params = {k: v for k, v in (params or {}).items() if v is not None} or None
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ClientError(f"the running funnelhouse at {self.url} did not answer: {exc}",
                              "unreachable") from exc
        if response.status_code >= 400:
            try:
                detail = response.json()
            except ValueError:
                detail = None
            if not isinstance(detail, dict):
                detail = {"error": response.text.strip()[:500] or f"HTTP {response.status_code}"}
            raise ClientError(str(detail.get("error")),
                              str(detail.get("reason") or response.status_code),
                              detail.get("path"))
        return response

    def _json(self, method: str, path: str, *, body: Any = None,
              params: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self._request(method, path, body=body, params=params).json()
        if not isinstance(doc, dict):
            raise ClientError(f"{self.url}{path} answered {type(doc).__name__}, not an object",
                              "bad_answer")
        return doc

    def sql(self, query: str, fmt: str) -> bytes:
        return self._request("POST", "/v1/sql", body={"sql": query, "format": fmt}).content

    def models_run(self, *, full_refresh: bool = False, since: str | None = None,
                   select: list[str] | None = None, progress: Progress = print
                   ) -> dict[str, Any]:
        doc = self._json("POST", "/v1/admin/models/run", body={
            "full_refresh": full_refresh, "since": since, "select": select or None})
        for line in doc.get("log", []):   # the instance's progress, once it is done
            progress(line)
        return doc

    def replay_invalid(self) -> dict[str, Any]:
        return self._json("POST", "/v1/admin/replay-invalid", body={})

    def coverage(self, *, days: int, source: str | None,
                 plan_dir: Path | None = None) -> dict[str, Any]:
        # The running instance audits against the plan it serves.
        return self._json("GET", "/v1/plan/coverage",
                          params={"days": days, "source": source or ""})

    def analysis(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        if name == "timeline":
            params = {k: v for k, v in doc.items() if k != "person"}
            return self._json("GET", f"/v1/timeline/{quote(str(doc['person']), safe='')}",
                              params=params)
        return self._json("POST", f"/v1/analyses/{name}", body=doc)

    def save_segment(self, analysis: str, spec: dict[str, Any], who: str, name: str,
                     live: bool = False, last_days: int | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/analyses/{analysis}/segment",
                          body={"spec": spec, "who": who, "name": name, "live": live,
                                "last_days": last_days})

    def segment_list(self) -> dict[str, Any]:
        return self._json("GET", "/v1/segments")

    def saved_list(self, kind: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/{kind}")

    def segment_create(self, doc: dict[str, Any], *, materialise: bool = True
                       ) -> dict[str, Any]:
        return self._json("POST", "/v1/segments", body={**doc, "materialise": materialise})

    def segment_update(self, segment_id: str, doc: dict[str, Any], *,
                       materialise: bool = True) -> dict[str, Any]:
        return self._json("PUT", f"/v1/segments/{segment_id}",
                          body={**doc, "materialise": materialise})

    def segment_show(self, segment_id: str, version: int | None = None) -> dict[str, Any]:
        return self._json("GET", f"/v1/segments/{segment_id}", params={"version": version})

    def segment_delete(self, segment_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/segments/{segment_id}")

    def segment_materialise(self, segment_id: str | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/segments/{segment_id}/materialise" if segment_id
                          else "/v1/segments/materialise")

    def segment_members(self, segment_id: str, *, limit: int | None = None) -> dict[str, Any]:
        return self._json("GET", f"/v1/segments/{segment_id}/members",
                          params={"offset": 0, "limit": limit})

    def segment_members_csv(self, segment_id: str) -> bytes:
        return self._request("GET", f"/v1/segments/{segment_id}/members",
                             params={"format": "csv"}).content

    def segment_check(self, segment_id: str, any_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/segments/{segment_id}/members/{quote(any_id, safe='')}")

    def segment_history(self, segment_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/segments/{segment_id}/history")

    def segment_compare(self, segment_id: str, days: int, as_of: str | None
                        ) -> dict[str, Any]:
        params: dict[str, Any] = {"days": days, **({"as_of": as_of} if as_of else {})}
        return self._json("GET", f"/v1/segments/{segment_id}/compare", params=params)

    def segment_from_sql(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/segments/from-sql", body=body)

    def signal(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        return self._json("GET", f"/v1/signals/{name}", params=options)

    def export(self, body: dict[str, Any], out: str | None) -> dict[str, Any]:
        # The running instance writes only under its export root: name the sub-folder.
        return self._json("POST", "/v1/exports", body={**body, "out": self._sub_folder(out)})

    def _sub_folder(self, out: str | None) -> str | None:
        if not out:
            return None
        root = self.settings.export_dir.resolve()
        folder = Path(out).resolve()
        if not folder.is_relative_to(root):
            raise ClientError(
                f"--out {out}: a running `funnelhouse up` writes exports only under its export "
                f"root {root} (FUNNELHOUSE_EXPORT_ROOT); name a folder inside it, or stop `up` "
                "to export anywhere", "path_not_allowed")
        return folder.relative_to(root).as_posix() if folder != root else None

    def forget(self, user_id: str, *, requested_by: str, reason: str) -> dict[str, Any]:
        return self._json("POST", "/v1/forget", body={"user_id": user_id, "reason": reason,
                                                      "requested_by": requested_by})

    def forget_log(self) -> dict[str, Any]:
        return self._json("GET", "/v1/forget")
