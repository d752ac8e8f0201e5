"""Progress for long loops: a tqdm bar on a terminal, periodic ``logging`` lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Counts steps of a loop; draws a tqdm bar when stderr is a terminal, else logs every ``every`` steps.

    ``enabled=False`` keeps it silent except for :meth:`log` at INFO (always useful in logs).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int | None,
        *,
        initial: int = 0,
        enabled: bool = True,
        every: int = 10,
    ) -> None:
        self.logger = logger
        self.what = what
        self.total = total
        self.count = initial
        self.every = max(1, every)
        self.start = time.perf_counter()
        self.initial = initial
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=what, dynamic_ncols=True, leave=False)
        self.lines = enabled and self.bar is None

    def update(self, n: int = 1, **fields: float) -> None:
        """Advance by ``n``; ``fields`` (e.g. loss, lr) go to the bar or the next log line."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            if fields:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in fields.items()}, refresh=False)
        elif self.lines and (self.count % self.every == 0 or self.count == self.total):
            self.log(**fields)

    def log(self, **fields: float) -> None:
        """One INFO line: ``what step/total (rate) key=value ...``."""
        done = self.count - self.initial
        seconds = time.perf_counter() - self.start
        rate = f"{done / seconds:.2f}/s" if seconds > 0 and done else "-"
        total = f"/{self.total}" if self.total is not None else ""
        extra = " ".join(f"{k}={v:.4g}" for k, v in fields.items())
        self.logger.info("%s %d%s (%s) %s", self.what, self.count, total, rate, extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
