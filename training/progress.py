"""Per-round progress for long trainings: a bar on a terminal, silence elsewhere.

The coordinator calls `start(total_rounds)`, then `update(round_index, info)` after each
boosting round, then `close()`. On a TTY the reporter redraws one line in place with
the round, a bar, elapsed time, an ETA and a few numbers from `info`. When the stream is
not a terminal (a pipe, a log file, CI) it writes nothing, unless `enabled=True`, in
which case it writes one plain line per round. Stream and clock are injectable.
(`tty=True` forces in-place redraws, for a parent process that relays a child's
stderr to its own terminal.)
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

BAR_WIDTH = 20


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _fmt_info(info: dict[str, Any] | None) -> str:
    parts = []
    for key, value in (info or {}).items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, str, bool)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


class Progress:
    """Reports boosting rounds; silent unless the stream is a terminal or enabled=True."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, label: str = "round",
                 tty: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        detected = bool(isatty()) if callable(isatty) else False
        self.tty = detected if tty is None else bool(tty)  # tty=True: redraw in place anyway
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.clock = clock
        self.label = label
        self.total: int | None = None
        self.done = 0
        self._t0: float | None = None
        self._width = 0

    def start(self, total_rounds: int | None) -> None:
        self.total = int(total_rounds) if total_rounds else None
        self.done = 0
        self._t0 = self.clock()

    def update(self, round_index: int, info: dict[str, Any] | None = None) -> None:
        """Round `round_index` (0-based) has finished."""
        if self._t0 is None:
            self.start(self.total)
        self.done = int(round_index) + 1
        if not self.enabled:
            return
        self._write(self.line(info))

    def line(self, info: dict[str, Any] | None = None) -> str:
        elapsed = self.clock() - (self._t0 or self.clock())
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(round(frac * BAR_WIDTH))
            bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            text = (f"{self.label} {self.done}/{self.total} {bar} {frac:4.0%} "
                    f"elapsed {_fmt_seconds(elapsed)} eta {_fmt_seconds(eta)}")
        else:
            text = f"{self.label} {self.done} elapsed {_fmt_seconds(elapsed)}"
        extra = _fmt_info(info)
        return f"{text} {extra}" if extra else text

    def _write(self, text: str) -> None:
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the in-place line on a terminal; nothing otherwise. Idempotent."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_progress(stream: TextIO | None = None) -> Progress:
    """The reporter `train_horizontal` uses when given none: a bar on a TTY, else silent."""
    return Progress(stream=stream)
