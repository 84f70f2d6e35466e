"""Progress of long work on the terminal: one updating line, not hundreds.

`note` is passing news (n of m sent, a model's day range): on a terminal it rewrites one
line on stderr; in a pipe or a log it is printed at most every `every` seconds, so a
long run still shows it is alive. `say` is a lasting line (a result), on stdout.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class Status:
    def __init__(self, stream: TextIO | None = None, every: float = 15.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._shown = ""          # the passing line now on screen (terminal only)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def note(self, text: str) -> None:
        with self._lock:
            if self.tty:
                if time.monotonic() - self._last < 0.1 and self._shown:
                    return   # ten updates a second are plenty to read
                self.stream.write("\r\x1b[2K" + text[:150])
                self.stream.flush()
                self._shown = text
                self._last = time.monotonic()
            elif time.monotonic() - self._last >= self.every:
                print(text, file=self.stream, flush=True)
                self._last = time.monotonic()

    def say(self, text: str) -> None:
        self.clear()
        print(text, flush=True)

    def clear(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._shown = ""

    def model_line(self, line: str) -> None:
        """A line of the model runner: the ones naming a finished table last, the rest
        (a table starting, its day chunks) pass."""
        if line.startswith(" ") or line.rstrip().endswith("…"):
            self.note(line.strip())
        else:
            self.say(line)

    def ticking(self, text: str) -> Callable[[], None]:
        """`text … Ns` counting up on a terminal while a request runs; call to stop."""
        if not self.tty:
            return lambda: None
        stop = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while not stop.wait(0.5):
                self.note(f"{text} {time.monotonic() - started:.0f}s")

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()

        def done() -> None:
            stop.set()
            thread.join()
            self.clear()

        return done
