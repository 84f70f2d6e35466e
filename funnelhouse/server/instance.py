"""The data folder's own files: the running `up` of it, its credentials, its privacy.

chdb lets one process open a data folder, so while `up` runs, the commands that read
or change the data go through its HTTP API instead of the folder (funnelhouse.cli.client).
The folder holds every event and the admin token: it is kept 0700, its files 0600.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import stat
from pathlib import Path
from typing import Any

import httpx
import orjson

from funnelhouse.config import Settings, WriteKey
from funnelhouse.server import registry

log = logging.getLogger("funnelhouse")
PRIVATE_UMASK = 0o077


def private_files() -> None:
    """From now on this process creates files 0600 and folders 0700 (chdb's included).

    Called first thing by the `funnelhouse` command, so every file of the data folder,
    made by whichever part (queue, chdb, Kafka spool, exports), is private from birth.
    """
    os.umask(PRIVATE_UMASK)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data folder 0700; make an existing looser one (and its files) private.

    Files of an earlier version were made under the usual umask (0644: every local user
    could read the queue, i.e. every event); they are tightened once, with a log line.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if not mode & PRIVATE_UMASK:
        return
    log.warning("data folder %s was readable by others (%o): making it 0700 and its files "
                "0600", data_dir, mode)
    data_dir.chmod(0o700)
    for folder, _, files in os.walk(data_dir):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & PRIVATE_UMASK:
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~PRIVATE_UMASK)


def _instance_file(settings: Settings) -> Path:
    return settings.data_dir / "instance.json"


def announce(settings: Settings, url: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The certificate too: local commands pin it when they call an https `up`.
    _instance_file(settings).write_bytes(orjson.dumps(
        {"url": url, "pid": os.getpid(), "tls_cert": settings.tls_cert}))
    registry.add(settings.data_dir, url)   # so commands run elsewhere find it


def retire(settings: Settings) -> None:
    _instance_file(settings).unlink(missing_ok=True)
    registry.remove()


def running_url(settings: Settings) -> str | None:
    """The URL of the `up` serving this data folder, if one answers."""
    path = _instance_file(settings)
    if not path.is_file():
        return None
    url = orjson.loads(path.read_bytes()).get("url")
    try:
        if httpx.get(f"{url}/healthz", timeout=2, verify=_verify(settings)).status_code == 200:
            return url
    except httpx.HTTPError:
        pass
    return None


def http_client(settings: Settings, url: str, timeout: float = 3600) -> httpx.Client:
    """An HTTP client for the running instance at `url`: its admin token, its certificate
    pinned (`_verify`). The one way local commands reach it (funnelhouse.cli.client)."""
    return httpx.Client(base_url=url, timeout=timeout, verify=_verify(settings),
                        headers={"Authorization": f"Bearer {settings.admin_token}"})


def _verify(settings: Settings) -> ssl.SSLContext | bool:
    """How a local command checks the `up` it calls: when `up` serves TLS, by its own
    certificate alone (the first of the configured file, self-signed or not).

    The host name is not checked: the address is the loopback one `up` announced in
    the private data folder, and only the holder of the configured key can present
    that exact certificate. No other CA is trusted, so a cert for another name from
    the same issuer does not pass.
    """
    try:
        cert = orjson.loads(_instance_file(settings).read_bytes()).get("tls_cert") or ""
        pem = Path(cert).read_text() if cert else ""
    except (OSError, orjson.JSONDecodeError):
        return True
    end = "-----END CERTIFICATE-----"
    if end not in pem:
        return True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=pem[:pem.index(end) + len(end)])
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def credentials_path(settings: Settings) -> Path:
    return settings.data_dir / "credentials.json"


def with_local_credentials(settings: Settings) -> Settings:
    """Give a local data folder a browser key, a server key and an admin token.

    Configured keys and tokens win; otherwise they are made once and kept in
    <data_dir>/credentials.json (0600) so a restart keeps the same keys.
    """
    secure_data_dir(settings.data_dir)
    path = credentials_path(settings)
    if path.is_file():
        saved = orjson.loads(path.read_bytes())
    else:
        saved = {"write_key": "wk_" + secrets.token_hex(8),
                 "server_key": "sk_" + secrets.token_hex(8),
                 "admin_token": secrets.token_urlsafe(18)}
        _write_private(path, saved)
    changes: dict[str, Any] = {}
    if not settings.write_keys:
        changes["write_keys"] = (WriteKey(saved["write_key"], "web", "browser"),
                                 WriteKey(saved["server_key"], "server", "server"))
    if not settings.admin_token:
        changes["admin_token"] = saved["admin_token"]
    return settings.replace(**changes) if changes else settings


def _write_private(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON created 0600 from the start (never briefly readable), then rename."""
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def made_keys(settings: Settings) -> set[str]:
    """The write keys `up` made and keeps in credentials.json (not the configured ones)."""
    path = credentials_path(settings)
    if not path.is_file():
        return set()
    saved = orjson.loads(path.read_bytes())
    return {saved[k] for k in ("write_key", "server_key") if saved.get(k)}


def admin_token_first_showing(settings: Settings) -> bool:
    """Whether the admin token was made here and never shown yet; marks it shown.

    A token set by FUNNELHOUSE_ADMIN_TOKEN or the config file is the operator's own and
    is never printed; a made one is printed by the first `up` only, so it does not end
    up in the service log of every start.
    """
    path = credentials_path(settings)
    if not path.is_file():
        return False
    saved = orjson.loads(path.read_bytes())
    if saved.get("admin_token") != settings.admin_token or saved.get("admin_token_shown"):
        return False
    _write_private(path, {**saved, "admin_token_shown": True})
    return True


def admin_token_source(settings: Settings) -> str:
    """Where the admin token is (never the token itself)."""
    path = credentials_path(settings)
    if path.is_file() and orjson.loads(path.read_bytes()).get("admin_token") == \
            settings.admin_token:
        return f"in {path} (funnelhouse token show --data-dir {settings.data_dir})"
    return "as configured (FUNNELHOUSE_ADMIN_TOKEN or the config file)"


def show_token(settings: Settings) -> str | None:
    """The admin token for its operator: configured, else credentials.json; None if none."""
    if settings.admin_token:
        return settings.admin_token
    path = credentials_path(settings)
    if not path.is_file():
        return None
    return orjson.loads(path.read_bytes()).get("admin_token")
