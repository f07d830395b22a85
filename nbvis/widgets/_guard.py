"""The one error guard of every view and of the Explorer: exceptions shown where the person looks."""

from __future__ import annotations

import contextlib

import traitlets

__all__ = ["ErrorGuard"]


class ErrorGuard(traitlets.HasTraits):
    """Mixin: ``error`` holds the last failure, shown under the view.

    ``with self._guard(): ...`` puts an exception of the block into ``error`` and re-raises it,
    and clears ``error`` when the block succeeds (callbacks of observers and of the browser
    would otherwise swallow what went wrong).
    """

    error = traitlets.Unicode("")

    def _report(self, exc: BaseException) -> None:
        text = str(exc)
        self.error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    @contextlib.contextmanager
    def _guard(self):
        try:
            yield
        except Exception as exc:
            self._report(exc)
            raise
        else:
            if self.error:
                self.error = ""
