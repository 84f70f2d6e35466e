"""Collector workers with a listening socket each (SO_REUSEPORT), and their supervisor.

uvicorn's own workers share one listening socket, and whichever worker is idle in
accept() first takes the next connection: under load one worker won 235 of 256
connections and the other sat at a fraction of a core. With SO_REUSEPORT every worker
binds its own socket to the same port and the kernel spreads new connections across
them by a hash of the client's address and port, so long-lived keep-alive connections
(what SDKs and load balancers hold) end up evenly spread.

The supervisor only starts, restarts and stops workers; it never serves. A worker
whose supervisor dies stops itself (`edge.orphan_watchdog`), so a SIGKILLed
supervisor leaves no worker holding the port.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from multiprocessing.context import SpawnProcess
from typing import Any

log = logging.getLogger("funnelhouse.collector")

# Connections the kernel queues per worker before accept(); uvicorn's default (2048).
BACKLOG = 2048
# A worker that dies this soon after it started is not restarted in a loop.
MIN_WORKER_SECONDS = 5.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that other workers may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _serve(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker: its own socket, one uvicorn server, until SIGTERM/SIGINT."""
    import uvicorn

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(app: str, *, host: str, port: int, workers: int,
                options: dict[str, Any]) -> int:
    """Serve `app` ("module:attr") from `workers` processes until SIGTERM or SIGINT.

    Returns the exit status: 0 after a requested stop, 1 when the port could not be
    bound or workers kept dying at start.
    """
    # Bound once here first: a port another program holds (without SO_REUSEPORT) fails
    # now, with its reason, instead of in every worker.
    try:
        reuse_port_socket(host, port).close()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> tuple[SpawnProcess, float]:
        process = context.Process(target=_serve, args=(app, host, port, options),
                                  name="funnelhouse-collector-worker", daemon=False)
        process.start()
        return process, time.monotonic()

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    running = [start() for _ in range(workers)]
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, (process, started) in enumerate(running):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started < MIN_WORKER_SECONDS:
                    log.error("a collector worker exited %.1f s after it started (status %s); "
                              "stopping", time.monotonic() - started, process.exitcode)
                    stopping, status = True, 1
                    break
                log.warning("collector worker %s exited (status %s); starting another",
                            process.pid, process.exitcode)
                running[index] = start()
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process, _ in running:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
