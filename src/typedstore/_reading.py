"""Reading blocks: a thread's reads that look at the log once, when the block begins.

README.md, "Reading many keys at once", describes what users see. A shared, read-only
or PostgreSQL store looks at its log before every operation, to see the writes other
processes acknowledged before it began (one ``lseek``, or one round trip to the
server). Inside ``with store.reading():`` the block's start looks once, catching up
if the log grew, and the thread's reads then use memory as it is: each sees every
write acknowledged before the block began, and whatever this process applied since.

A block marks its thread in the core's ``readers`` (the thread's mark, :func:`mark`, to
how many blocks deep), which the read path tests (:func:`inside`, from
``_core._FollowingLock.acquire`` and ``_core._KeysWhileUnchanged``). The mark is an
object of the thread's own, not its ident: a block kept open past its thread's end (a
generator suspended inside it) must not mark a new thread given that ident. The mark
is taken and let go by a generator, as a transaction's hold is (``_txn.Hold``): a
KeyboardInterrupt anywhere between taking it and the ``with`` block holding it drops
the generator, whose ``finally`` then lets go, so that a thread is never left marked,
its reads looking at the log no more.
"""

from __future__ import annotations

import _thread
import functools
from collections.abc import Callable
from types import TracebackType

from ._txn import Hold, started

_THREAD = _thread._local()
"""Each thread's mark, made on its first block: gone with the thread, never shared."""


def mark() -> object:
    """Return this thread's mark, an object no other thread, alive or later, gets."""
    try:
        own: object = _THREAD.mark
    except AttributeError:
        own = _THREAD.mark = object()
    return own


def inside(readers: dict[object, int]) -> bool:
    """Whether this thread is inside a reading block of the core ``readers`` belongs to."""
    return bool(readers) and mark() in readers


def begin(look: Callable[[], None], readers: dict[object, int]) -> Hold:
    """Call ``look`` (catch up with the log; raises if the store is closed), then mark
    this thread in ``readers`` until the returned hold is closed."""
    return started(functools.partial(_marked, look, readers))


def _marked(look: Callable[[], None], readers: dict[object, int]) -> Hold:
    look()
    ident = mark()
    depth = readers.get(ident, 0)
    # No call from the marking to the end of the finally: a Ctrl-C cannot land between
    # marking and the try, nor midway through letting go.
    readers[ident] = depth + 1
    try:
        yield
    finally:
        depth = readers[ident] - 1
        if depth:
            readers[ident] = depth
        else:
            del readers[ident]


class Reading:
    """One ``with`` block of ``reading()``: entered once, in any thread, and left there."""

    __slots__ = ("_hold", "_look", "_readers", "_used")

    def __init__(self, look: Callable[[], None], readers: dict[object, int]) -> None:
        self._look = look
        self._readers = readers
        self._hold: Hold | None = None
        self._used = False

    def __enter__(self) -> None:
        if self._used:
            raise RuntimeError("a reading() block is used for one with block; call reading() again")
        self._used = True
        # Straight into the attribute: a KeyboardInterrupt before it holds the hold
        # drops it, which lets the mark go (see begin).
        self._hold = begin(self._look, self._readers)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        hold, self._hold = self._hold, None  # no call first: dropped, it lets go too
        if hold is not None:
            hold.close()
