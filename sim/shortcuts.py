"""The replay's speed shortcuts, switched together for the tests that compare a run with and without
them (every number must be equal): lazy release of block runs (kvcache.LAZY), kv_router pruning
(router.PRUNE), block-boundary crossings inside decode runs (engine.INLINE) and decode runs past
other workers' pass ends (replay.AHEAD). Each module reads its switch as it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import engine, kvcache, replay, router


@contextmanager
def shortcuts(on: bool) -> Iterator[None]:
    """Every shortcut on or off inside the block, restored as it was after it (also on error)."""
    saved = (kvcache.LAZY, router.PRUNE, engine.INLINE, replay.AHEAD)
    kvcache.LAZY = router.PRUNE = engine.INLINE = replay.AHEAD = on
    try:
        yield
    finally:
        kvcache.LAZY, router.PRUNE, engine.INLINE, replay.AHEAD = saved
