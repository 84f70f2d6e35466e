"""The running `funnelhouse up` of a data folder: how other commands find and reach it.

chdb lets one process open a data folder, so while `up` runs, `funnelhouse sql`,
`models run` and `replay-invalid` go through its HTTP API instead of the folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import httpx
import orjson

from funnelhouse.config import Settings, WriteKey


def _instance_file(settings: Settings) -> Path:
    return settings.data_dir / "instance.json"


def announce(settings: Settings, url: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _instance_file(settings).write_bytes(orjson.dumps({"url": url, "pid": os.getpid()}))


def retire(settings: Settings) -> None:
    _instance_file(settings).unlink(missing_ok=True)


def running_url(settings: Settings) -> str | None:
    """The URL of the `up` serving this data folder, if one answers."""
    path = _instance_file(settings)
    if not path.is_file():
        return None
    url = orjson.loads(path.read_bytes()).get("url")
    try:
        if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
            return url
    except httpx.HTTPError:
        pass
    return None


def call(settings: Settings, url: str, path: str, body: dict[str, Any],
         timeout: float = 600) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {settings.admin_token}"})


def with_local_credentials(settings: Settings) -> Settings:
    """Give a local data folder a browser key, a server key and an admin token.

    Configured keys and tokens win; otherwise they are made once and kept in
    <data_dir>/credentials.json so a restart keeps the same keys.
    """
    path = settings.data_dir / "credentials.json"
    if path.is_file():
        saved = orjson.loads(path.read_bytes())
    else:
        saved = {"write_key": "wk_" + secrets.token_hex(8),
                 "server_key": "sk_" + secrets.token_hex(8),
                 "admin_token": secrets.token_urlsafe(18)}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(saved, option=orjson.OPT_INDENT_2))
        path.chmod(0o600)
    changes: dict[str, Any] = {}
    if not settings.write_keys:
        changes["write_keys"] = (WriteKey(saved["write_key"], "web", "browser"),
                                 WriteKey(saved["server_key"], "server", "server"))
    if not settings.admin_token:
        changes["admin_token"] = saved["admin_token"]
    return settings.replace(**changes) if changes else settings
