"""Pausing Python's cyclic garbage collector around one bounded piece of work.

Why: a 10,000-notice batch keeps a few hundred thousand young objects alive until it ends
(the parsed requests, the rows, the response). The collections their allocations trigger find
no garbage among them but scan and promote them again and again; measured in-process, that was
up to a fifth of a batch's CPU. Reference counting frees them all when the batch ends; the
rare reference cycle made meanwhile waits for the next collection.

The collector is process-wide, so the pause is too: :func:`gc_paused` counts the threads
inside it, and the collector comes back when the last one leaves (and only if it was on when
the first one came in). Pause only work whose size is bounded, such as one batch request.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_inside = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the ``with`` block with automatic garbage collection off (see the module doc)."""
    global _inside, _was_enabled
    with _lock:
        if _inside == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _was_enabled:
                gc.enable()
