"""Where jobs run: the controller talks to a `Backend`; `LocalBackend` is the engine on a
worker thread of this process. Another backend (a Ray cluster) slots in behind the same
interface without touching the panels or the controller."""

from studio.ui.backends.base import UNKNOWN_FRACTION, Backend
from studio.ui.backends.local import EngineFactory, LocalBackend

__all__ = ["UNKNOWN_FRACTION", "Backend", "EngineFactory", "LocalBackend"]
