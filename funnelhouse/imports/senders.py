"""Where imported messages go: a running collector's /v1/import, or the collector's own
Ingestor in this process writing to the configured queue (or validating only).

Both ways, every row meets the same plan validation, enrichment, dead letter and dedup
as an event sent over HTTP — the Ingestor is the one path. Through a running collector
its dedup window, metrics and tagging QA see the import, and the process that owns the
queue writes it; in process, the rows are made durable in the same queue (the embedded
log in the data folder, or Kafka) and the next loader run loads them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from funnelhouse.collector.ingest import Ingestor, Outcome, RequestInfo
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.sinks.base import QueueUnavailable, Sink
from funnelhouse.config import Settings, WriteKey

__all__ = ["Answer", "ImportFailed", "LocalSender", "RemoteSender", "Sender"]

IMPORT_PATH = "/v1/import"
USER_AGENT = "funnelhouse-import"
# A collector answers 429 (rate limit) and 503 (queue down) with Retry-After: wait and
# resend the same batch (its message ids make a resend harmless), this many times.
RETRIES = 8
MAX_WAIT_SECONDS = 30.0


class ImportFailed(Exception):
    """The import stopped: a batch could not be sent or stored (what was sent is kept)."""


@dataclass
class Answer:
    accepted: int = 0
    duplicates: int = 0
    # (index in the batch, reason, errors) of each refused message
    rejected: list[tuple[int, str, list[dict[str, str]]]] = field(default_factory=list)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Answer:
        return cls(int(doc.get("accepted", 0)), int(doc.get("duplicates", 0)),
                   [(int(r["index"]), str(r["reason"]), list(r.get("errors") or []))
                    for r in doc.get("rejected") or []])

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> Answer:
        return cls.of(outcome.as_json())


class Sender(Protocol):
    where: str   # said in the report

    def send(self, messages: list[Any]) -> Answer: ...

    def close(self) -> None: ...


class RemoteSender:
    """POST /v1/import of a running collector, with the write key as X-Write-Key."""

    def __init__(self, url: str, write_key: str, http: httpx.Client | None = None) -> None:
        self.where = url
        self._key = write_key
        self._http = http or httpx.Client(base_url=url, timeout=120)

    def send(self, messages: list[Any]) -> Answer:
        body = orjson.dumps({"batch": messages})
        headers = {"Content-Type": "application/json", "X-Write-Key": self._key,
                   "User-Agent": USER_AGENT}
        for _ in range(RETRIES):
            try:
                response = self._http.post(IMPORT_PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise ImportFailed(f"the collector at {self.where} did not answer: {exc}"
                                   ) from exc
            doc = _json(response)
            if response.status_code in (429, 503):
                time.sleep(_retry_after(response))
                continue
            # A 4xx whose body lists the refused events is a batch refused event by event
            # (every one of them dead-lettered); any other answer stops the import.
            if response.status_code == 200 or "rejected" in doc:
                return Answer.of(doc)
            raise ImportFailed(f"{self.where}{IMPORT_PATH} answered {response.status_code}: "
                               f"{doc.get('code', '')} {doc.get('message', response.text)}")
        raise ImportFailed(f"{self.where} kept answering {response.status_code} "
                           f"({doc.get('message', '')}); run the import again later")

    def close(self) -> None:
        self._http.close()


class LocalSender:
    """The collector's Ingestor in this process, over the sink the collector would use
    (`sink=None`: validate only, store nothing — a dry run)."""

    def __init__(self, settings: Settings, key: WriteKey, sink: Sink | None,
                 where: str) -> None:
        self.where = where
        self._key = key
        self._sink = sink
        self._ingestor = Ingestor(settings, TrackingPlan.load(settings.plan_dir), sink)
        self._loop = asyncio.new_event_loop()
        if sink is not None:
            self._loop.run_until_complete(sink.start())

    def send(self, messages: list[Any]) -> Answer:
        info = RequestInfo(write_key=self._key, ip="", user_agent=USER_AGENT,
                           received_at=time.time())
        if self._sink is None:
            return Answer.of_outcome(self._ingestor.process(messages, info))
        try:
            outcome = self._loop.run_until_complete(self._ingestor.ingest(messages, info))
        except QueueUnavailable as exc:
            raise ImportFailed(f"rows could not be stored in {self.where}: {exc}") from exc
        return Answer.of_outcome(outcome)

    def close(self) -> None:
        try:
            if self._sink is not None:
                self._loop.run_until_complete(self._sink.stop())
        finally:
            self._ingestor.dedup.close()   # the ids of this import, for the next run
            self._loop.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_WAIT_SECONDS, max(0.5, float(response.headers.get("retry-after", 1))))
    except ValueError:
        return 1.0
