"""gpub_runner: the in-container task runtime (``python -m gpub_runner``)."""

from gpub_runner.api import Failure, Handler, Item, Output, Result

__all__ = ["Failure", "Handler", "Item", "Output", "Result"]
__version__ = "0.1.0"
