"""The server's delivery sweeper: one thread per running app charges batches past their ack deadline.

Sent means billed: a batch the buyer never acknowledged is posted at its deadline even if the buyer
never comes back, so the sweep cannot wait for the next request. The app starts the thread when it
starts (its lifespan, :func:`ciyuan.api.app.create_app`) and stops it when it stops; ``ciyuan
delivery sweep`` runs the same :func:`ciyuan.delivery.stream.sweep` once by hand.
"""

from __future__ import annotations

import logging
import threading

from ciyuan.config import Settings
from ciyuan.delivery import stream

log = logging.getLogger(__name__)


class Sweeper:
    """A background thread calling ``stream.sweep`` every quarter of the hold timeout (at least 1 s)."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        self.period = max(1.0, s.hold_timeout_s / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ciyuan-delivery-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end and wait for a sweep in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                stream.sweep(s=self.settings)
            except Exception:  # a busy or restarting database: try again next round
                log.warning("delivery sweep failed", exc_info=True)
