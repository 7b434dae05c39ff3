"""Transaction: several writes that reach the log as one batch record, or not at all.

README.md, "Transactions", describes what users see.
"""

from __future__ import annotations

import enum
import reprlib
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Generic, Protocol, TypeVar, overload

from ._codec import Codec
from ._errors import StoreClosedError
from ._records import Write, removal
from ._types import MISSING, K, KeyBytes, Stored, V, _Missing

T = TypeVar("T")

Hold = Generator[None, None, None]
"""What a transaction holds its store by: closing it lets the store go. A generator,
so that dropping it (a KeyboardInterrupt before anyone stored it) lets go too."""


def started(make: Callable[[], Hold]) -> Hold:
    """Return the hold ``make`` returns, run to its first ``yield``, where it holds what
    it took; whatever arrives before the return (a KeyboardInterrupt included) closes it,
    which lets go, and propagates."""
    hold = None
    try:
        hold = make()
        next(hold)
        return hold
    except BaseException:
        if hold is not None:  # taken, then interrupted before the return
            hold.close()
        raise


class _State(enum.Enum):
    NEW = enum.auto()
    OPEN = enum.auto()
    ENDED = enum.auto()


class TransactionHost(Protocol[K]):
    """What a transaction needs from its store: take it, write to it once, let it go."""

    def _begin_transaction(self) -> tuple[Hold | None, Mapping[K, Stored]]:
        """Take the store: other threads wait until the hold returned is closed (None:
        nothing to let go). Return it and the store's entries, to read."""

    def _commit(self, writes: Sequence[Write[K]]) -> None:
        """Write ``writes`` as one batch record and apply them to memory at once."""


OTHER_THREAD = (
    "a transaction ends in the thread that began it: it holds the store's lock, which only "
    "that thread can release; nothing was written, and it is still open"
)
"""Why ending a transaction in another thread is refused: the commit would wait for
the lock forever, and letting the hold go from there cannot release it."""


class Transaction(Generic[K, V]):
    """A group of writes that commit as one record when the ``with`` block ends normally.

    Reads see the transaction's own writes; the store is unchanged until the block
    ends. An exception in the block discards every write. Using the object after its
    block ended raises ``StoreClosedError``.
    """

    def __init__(self, host: TransactionHost[K], codec: Codec[K, V]) -> None:
        self._host = host
        self._codec = codec
        self._writes: list[Write[K]] = []
        self._staged: dict[K, Write[K]] = {}
        """The last write staged for each key."""
        self._entries: Mapping[K, Stored] = {}
        """The store's entries, as they were when the block began."""
        self._state = _State.NEW
        self._hold: Hold | None = None
        self._thread = 0
        """The thread that entered the block: the only one that can end it (see __exit__)."""

    def __enter__(self) -> Transaction[K, V]:
        if self._state is not _State.NEW:
            raise StoreClosedError("a transaction is used for one with block; start a new one")
        self._thread = threading.get_ident()
        try:
            # Unpacked straight into the attributes: a KeyboardInterrupt before they
            # hold the hold drops it, which lets the store go (see Core._begin_transaction).
            self._hold, self._entries = self._host._begin_transaction()
            self._state = _State.OPEN
        except BaseException:
            if self._hold is not None:  # taken, then interrupted: the with block never runs
                self._hold.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        other = False  # no call before the try: a Ctrl-C anywhere in it lets the hold go
        try:
            other = self._hold is not None and threading.get_ident() != self._thread
            if other:
                raise RuntimeError(OTHER_THREAD)  # nothing let go: the transaction stays open
            self._state = _State.ENDED
            if exc_type is None and self._writes:
                self._host._commit(self._writes)
        finally:
            if self._hold is not None and not other:
                self._hold.close()

    def insert(self, key: K, value: V) -> V | None:
        """Validate and stage ``key = value``; return the previous value."""
        write = self._validated(key, value)
        previous = self._lookup(write[0])
        self._stage(write)
        return None if previous is MISSING else previous

    def __setitem__(self, key: K, value: V) -> None:
        self._stage(self._validated(key, value))

    def remove(self, key: K) -> V | None:
        """Stage the removal of ``key``; return its value, or None if absent."""
        found = self._codec.find_key(key)
        previous = MISSING if found is None else self._lookup(found[0])
        if found is None or previous is MISSING:
            self._check_open()
            return None
        self._stage(removal(*found))
        return previous

    def __delitem__(self, key: K) -> None:
        found = self._codec.find_key(key)
        if found is None or found[0] not in self:
            self._check_open()
            raise KeyError(key)
        self._stage(removal(*found))

    @overload
    def modify(self, key: K, fn: Callable[[V], V]) -> V: ...
    @overload
    def modify(self, key: K, fn: Callable[[V], V], *, default: V) -> V: ...
    def modify(self, key: K, fn: Callable[[V], V], *, default: object = MISSING) -> V:
        """Stage ``fn(private copy of the value)`` as the new value; return it.

        An absent key raises KeyError, or, with ``default``, starts from a validated
        copy of ``default``.
        """
        found = self._codec.find_key(key) if default is MISSING else self._key(key)
        current = MISSING if found is None else self._lookup(found[0])
        if found is not None and current is MISSING and default is not MISSING:
            current = self._codec.thaw(self._validated(found[0], default)[2])
        if found is None or isinstance(current, _Missing):
            self._check_open()
            raise KeyError(key)
        self[found[0]] = fn(current)
        staged = self._lookup(found[0])
        assert not isinstance(staged, _Missing)
        return staged

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...
    def get(self, key: K, default: object = None) -> object:
        """Return the value of ``key`` as this transaction sees it, or ``default``."""
        value = self._lookup(key)
        return default if value is MISSING else value

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        self._check_open()
        staged = self._staged.get(key)  # type: ignore[arg-type]  # any object may be asked
        if staged is None:
            return key in self._entries
        return staged[3] is not None

    def __len__(self) -> int:
        self._check_open()
        size = len(self._entries)
        for key, staged in self._staged.items():
            size += (staged[3] is not None) - (key in self._entries)
        return size

    def __iter__(self) -> Iterator[K]:
        """Iterate over the keys as this transaction sees them, in order."""
        self._check_open()
        keys = dict.fromkeys(self._entries)
        for key, _, _, blob in self._writes:  # the store's own order rules, in sequence
            if blob is None:
                keys.pop(key, None)
            else:
                keys.setdefault(key)
        return iter(list(keys))

    def _key(self, key: K) -> tuple[K, KeyBytes]:
        """Return ``key`` validated and its bytes; a ValueError gets a note naming the key."""
        self._check_open()
        try:
            return self._codec.encode_key(key)
        except ValueError as exc:  # pydantic's ValidationError, or EncodingError
            exc.add_note(_about(key))
            raise

    def _validated(self, key: K, value: object) -> Write[K]:
        """Return the insert ``key = value``, validated; a ValueError gets a note naming the key."""
        validated_key, key_bytes = self._key(key)
        try:
            validated, blob = self._codec.encode_value(value)
        except ValueError as exc:
            exc.add_note(_about(key))
            raise
        return (validated_key, key_bytes, self._codec.freeze(validated, blob), blob)

    def _stage(self, write: Write[K]) -> None:
        self._writes.append(write)
        self._staged[write[0]] = write

    def _lookup(self, key: K) -> V | _Missing:
        self._check_open()
        staged = self._staged.get(key)
        if staged is None:
            stored = self._entries.get(key, MISSING)
            return MISSING if stored is MISSING else self._codec.thaw(stored)
        return MISSING if staged[3] is None else self._codec.thaw(staged[2])

    def _check_open(self) -> None:
        if self._state is _State.NEW:
            raise StoreClosedError(
                "this transaction has not started: use it as `with store.transaction() as txn:`"
            )
        if self._state is _State.ENDED:
            raise StoreClosedError("this transaction has ended; start a new one")


def _about(key: object) -> str:
    # reprlib: a key's repr may be long, or nested too deep for repr().
    return f"raised by a transaction's write of key {reprlib.repr(key)}"
