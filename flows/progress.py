"""Progress for long commands: a bar on a terminal, plain periodic lines in logs and pipes."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


class Progress:
    """`with Progress(total, "train") as p: p.update(1, loss=0.1)`; total 0 means unknown."""

    def __init__(self, total: int, desc: str, *, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done, self._last = 0, 0.0
        self._start = time.perf_counter()
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = tqdm(total=total or None, desc=desc, file=self.stream, dynamic_ncols=True) if is_tty else None

    def update(self, n: int = 1, **fields: object) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix({k: _fmt(v) for k, v in fields.items()}, refresh=False)
            return
        now = time.perf_counter()
        finished = 0 < self.total <= self.done
        if now - self._last >= self.every_s or finished:
            self._last = now
            count = f"{self.done}/{self.total}" if self.total else str(self.done)
            extra = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            print(f"{self.desc}: {count} ({now - self._start:.0f}s) {extra}".rstrip(), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
