"""What the command line and the long-running library helpers print on stderr: one ``[hrnet-fast]`` message
line (:func:`say`) and a progress bar (:class:`ProgressBar`). Neither imports torch."""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "say"]


def say(msg: str) -> None:
    """Print ``[hrnet-fast] msg`` on stderr, at once (progress and warnings; stdout stays the results)."""
    print(f"[hrnet-fast] {msg}", file=sys.stderr, flush=True)


class ProgressBar:
    """tqdm when installed (images/s and persons/s), else a line every 10% of ``total`` images.

    ``enabled=False`` shows nothing but still counts, for :meth:`summary`. Skipped items (unreadable files)
    advance the bar but are counted apart, not as images."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.images = self.persons = self.skipped = 0
        self.start = time.perf_counter()
        self.bar = None
        self._next_line = 0.1
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="img", desc=desc, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, images: int, persons: int, skipped: int = 0) -> None:
        self.images += images
        self.persons += persons
        self.skipped += skipped
        if not self.enabled:
            return
        dt = max(time.perf_counter() - self.start, 1e-9)
        done = self.images + self.skipped
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.persons / dt:.1f} persons/s", refresh=False)
            self.bar.update(images + skipped)
        elif self.total and done >= self._next_line * self.total:
            self._next_line = (int(10 * done / self.total) + 1) / 10
            say(f"{self.desc}: {done}/{self.total} images, {self.images / dt:.1f} images/s, "
                f"{self.persons / dt:.1f} persons/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self) -> str:
        """``N images, M persons in T s (... images/s, ... persons/s)``, then ``; K unreadable file(s) skipped``."""
        dt = max(time.perf_counter() - self.start, 1e-9)
        return (f"{self.images} images, {self.persons} persons in {dt:.1f} s ({self.images / dt:.1f} images/s, "
                f"{self.persons / dt:.1f} persons/s)" + (f"; {self.skipped} unreadable file(s) skipped" if self.skipped else ""))
