"""One loop shape for the long-running consumers of the system (the relay and the cache worker), in the
manner of getsentry/arroyo's StreamProcessor: `run()` loops `_run_once()` until `signal_shutdown()`,
and closes in `finally`. A signal handler only sets the flag; waits end early when it is set, so a
stop is seen within a moment and in-flight work is finished, never abandoned halfway.
"""
from __future__ import annotations

import signal
import threading


class StreamProcessor:
    def __init__(self) -> None:
        self._shutdown = threading.Event()

    def signal_shutdown(self) -> None:
        """Ask the loop to stop after the work in hand (only sets a flag: safe in a signal handler)."""
        self._shutdown.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True, and at once, when a shutdown was signalled."""
        return self._shutdown.wait(seconds)

    def run(self) -> None:
        try:
            while not self._shutdown.is_set():
                self._run_once()
        finally:
            self.close()

    def _run_once(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def run_until_signalled(processor: StreamProcessor) -> None:
    """The body of a process's main(): SIGTERM and SIGINT signal the shutdown, then it runs."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: processor.signal_shutdown())
    processor.run()
