"""Progress reporting for long steps: a tqdm bar for people, a callback for programs.

Library functions take ``progress: ProgressFn | None``; the CLI shows bars, the server passes a
callback that records ``(stage, fraction)`` for its job table.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: Called with (stage name, fraction done in 0..1).
ProgressFn = Callable[[str, float], None]


def bars_enabled(show: bool | None = None) -> bool:
    """Bars show on a terminal, or when LIPDUB_PROGRESS=1; LIPDUB_PROGRESS=0 hides them."""
    if show is not None:
        return show
    env = os.environ.get("LIPDUB_PROGRESS", "").lower()
    if env in ("0", "false", "no"):
        return False
    return env == "1" or sys.stderr.isatty()


class Progress:
    """One long step: a tqdm bar plus an optional callback, updated together."""

    def __init__(self, total: int | None, stage: str, unit: str = "frame",
                 callback: ProgressFn | None = None, show: bool | None = None):
        self.total = total
        self.stage = stage
        self.done = 0
        self.callback = callback
        self._bar = tqdm(total=total, desc=stage, unit=unit, disable=not bars_enabled(show),
                         dynamic_ncols=True, leave=False, file=sys.stderr)

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        self._bar.update(n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        if self.callback is not None and self.total:
            self.callback(self.stage, min(1.0, self.done / self.total))

    def close(self) -> None:
        self._bar.close()
        if self.callback is not None:
            self.callback(self.stage, 1.0)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
        if exc[0] is None and self.callback is not None:
            self.callback(self.stage, 1.0)


def track(items: Iterable[T], total: int | None, stage: str, unit: str = "frame",
          callback: ProgressFn | None = None) -> Iterator[T]:
    """Iterate with a progress bar (and callback)."""
    with Progress(total, stage, unit, callback) as p:
        for item in items:
            yield item
            p.update(1)
