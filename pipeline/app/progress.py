"""Progress on a terminal for the long-running commands, and nothing anywhere else.

A command reports phases ("reading", "writing partitions") with a total, and how far each
phase has come; :class:`TerminalProgress` draws them with tqdm (bytes with their rate,
percentage and ETA), and stays silent when stderr is not a terminal, so logs and pipes get
the summary only.  Commands take a :class:`Progress` so tests can record what they report.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO, Any, Protocol


class Progress(Protocol):
    def phase(self, name: str, total: int, unit: str) -> None:
        """Start a phase of ``total`` units (``"B"`` for bytes; 0 when not known); ends the previous one."""
        ...

    def update(self, done: int, note: str = "") -> None:
        """How many units of the current phase are done (absolute, not a delta), and a short note."""
        ...

    def close(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def phase(self, name: str, total: int, unit: str) -> None:
        pass

    def update(self, done: int, note: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class TerminalProgress:
    """tqdm bars on ``stream`` when it is a terminal (``enabled`` forces either way)."""

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._lock = threading.Lock()  # updates come from a watcher thread and the main one

    def phase(self, name: str, total: int, unit: str) -> None:
        with self._lock:
            self._close_bar()
            if not self._enabled:
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=total or None,  # 0: not known in advance (a count without a percentage)
                desc=name,
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1024 if unit == "B" else 1000,
                file=self._stream,
                dynamic_ncols=True,
                mininterval=0.2,
                leave=True,
            )

    def update(self, done: int, note: str = "") -> None:
        with self._lock:
            bar = self._bar
            if bar is None:
                return
            bar.n = min(done, bar.total) if bar.total else done
            if note:
                bar.set_postfix_str(note, refresh=False)
            bar.refresh()

    def close(self) -> None:
        with self._lock:
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until stopped (and once more then)."""

    def __init__(self, tick: Callable[[], None], interval: float = 0.25) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then tick once more (so the last state is shown)."""
        self._stop.set()
        self._thread.join()
        self._tick()

    def __enter__(self) -> Ticker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()
