"""The terminal side of the pipeline's progress hook (``callback(stage, event)``, records.py).

On a terminal: a rich spinner naming the running stage, and one line per finished stage with its
seconds. Not on a terminal (piped, logged): one plain line per finished stage, plus a "still
running" line every ``heartbeat`` seconds while a long stage runs, so logs show the run is alive.
Every line carries the wall time since the process started. Silent under ``-q``.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

from rich.console import Console
from rich.markup import escape


def _process_start() -> float:
    """``time.perf_counter()`` value of the moment the process started (Linux /proc; else now)."""
    now = time.perf_counter()
    try:
        with open("/proc/self/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return now - max(0.0, age)
    except (OSError, ValueError, IndexError):
        return now


PROCESS_START = _process_start()


def wall_seconds() -> float:
    """Seconds since this process started (interpreter start-up and model loading included)."""
    return time.perf_counter() - PROCESS_START


class StageProgress:
    """A ``ProgressCallback`` that reports stages on ``console`` (stderr); use as a context manager.

    Attributes:
        stage_seconds: seconds of every finished stage, in order (also what the lines show).
    """

    def __init__(self, console: Console, enabled: bool = True, heartbeat: float = 10.0,
                 prefix: str = "") -> None:
        self.console = console
        self.enabled = enabled
        self.tty = console.is_terminal
        self.heartbeat = heartbeat
        self.prefix = prefix
        self.stage_seconds: dict[str, float] = {}
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._status = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._last_line = time.perf_counter()

    def __enter__(self) -> StageProgress:
        if not self.enabled:
            return self
        if self.tty:
            self._status = self.console.status("starting", spinner="dots")
            self._status.start()
        elif self.heartbeat > 0:
            self._ticker = threading.Thread(target=self._tick, name="mvinvert-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._status is not None:
            self._status.stop()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)

    def __call__(self, stage: str, event: str) -> None:
        now = time.perf_counter()
        with self._lock:
            if event == "start":
                self._running[stage] = now
                if self._status is not None:
                    self._status.update(f"{escape(self.prefix)}{stage} …  [dim]{wall_seconds():.1f} s[/]")
                return
            seconds = now - self._running.pop(stage, now)
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
            if self.enabled:
                self._line(f"{self.prefix}{stage} {seconds:.1f} s")

    def note(self, text: str) -> None:
        """A progress line of the caller's own (e.g. one finished batch item)."""
        with self._lock:
            if self.enabled:
                self._line(f"{self.prefix}{text}")

    def _line(self, text: str) -> None:
        self._last_line = time.perf_counter()
        if self.tty:
            self.console.print(f"[green]✓[/] {escape(text)}  [dim]({wall_seconds():.1f} s)[/]")
        else:
            self.console.print(f"[{wall_seconds():7.1f} s] {text}", markup=False, highlight=False, soft_wrap=True)

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat)):
            with self._lock:
                if not self._running or time.perf_counter() - self._last_line < self.heartbeat:
                    continue
                stage, began = next(reversed(self._running.items()))
                self._line(f"{self.prefix}{stage} running for {time.perf_counter() - began:.0f} s")
