"""Transactions (README, "Transactions"): all or nothing, isolated until the block ends, one record.

Tests taking the ``settle`` fixture run twice: on the store as written ("fresh") and on the
same log closed and opened again ("reopened").

One class per promise, in file order:

- ``TestAllOrNothing``: every write applied, or none.
- ``TestIsolation``: staged writes show in the store only when the block ends.
- ``TestOneRecord``: a commit is one batch record.
- ``TestOperationsThroughTx``: tx reads and writes as the store does.
- ``TestInvalidWritesInTx``: invalid writes raise at the call and stage nothing.
- ``TestCommitOrder``: a commit leaves the order sequential writes would.
- ``TestMisuse``: use outside the block, nesting, closed and readonly stores.
- ``TestTransactionWritesValidateTheKeyFirst``: keys looked up as validated.
- ``TestValidationErrorsNameTheirKey``: a note naming the key.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest

from tests.conftest import OpenStore, Settle, frames_after
from tests.models import Account, User
from typedstore import (
    Database,
    StoreClosedError,
    StoreConfig,
    StoreReadOnlyError,
    Transaction,
    TypedStore,
)
from typedstore._format import RecordKind, frame_body

WAIT = 5.0
"""Upper bound, in seconds, on waiting for another thread to reach a point it must reach."""


class Ints(TypedStore[str, int]):
    """Immutable values."""


class Users(TypedStore[str, User]):
    """Mutable model values, handed out as copies."""


class Accounts(TypedStore[str, Account]):
    """Bank accounts, for transfers."""


class Abort(Exception):
    """Raised inside a transaction block to abort it."""


def _kind(path: Path, frame: tuple[int, int]) -> int:
    """Return the record kind byte of the frame spanning ``frame``."""
    return frame_body(path.read_bytes(), *frame)[0]


def _abc(path: Path) -> Ints:
    """Open a store holding a=1, b=2, c=3."""
    store = Ints.open(path)
    store.update({"a": 1, "b": 2, "c": 3})
    return store


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class TestAllOrNothing:
    """A block that ends normally applies every write; one that raises applies none."""

    def test_commit_applies_everything(self, log_path: Path, settle: Settle) -> None:
        """A block that ends normally applies every insert, modify and removal."""
        with _abc(log_path) as store:
            with store.transaction() as tx:
                tx["d"] = 4
                tx.modify("a", lambda value: value + 10)
                del tx["b"]
                tx.insert("c", 30)
            with settle(store) as store:
                assert list(store.items()) == [("a", 11), ("c", 30), ("d", 4)]

    def test_exception_applies_nothing(self, log_path: Path, settle: Settle) -> None:
        """An exception in the block propagates and leaves memory and file unchanged."""
        with _abc(log_path) as store:
            before = log_path.read_bytes()

            def transfer_then_fail() -> None:
                with store.transaction() as tx:
                    tx["d"] = 4
                    tx.modify("a", lambda value: value + 10)
                    del tx["b"]
                    raise Abort("abort the transaction")

            with pytest.raises(Abort, match="abort the transaction"):
                transfer_then_fail()
            assert log_path.read_bytes() == before
            with settle(store) as store:
                assert list(store.items()) == [("a", 1), ("b", 2), ("c", 3)]

    def test_empty_transaction_writes_nothing(self, log_path: Path) -> None:
        """A transaction that stages nothing leaves the file as it was."""
        with _abc(log_path) as store:
            before = log_path.read_bytes()
            with store.transaction() as tx:
                assert tx["a"] == 1
                assert tx.remove("absent") is None
            assert log_path.read_bytes() == before


class TestIsolation:
    """Inside the block tx sees its own writes; the store shows them only when the block ends."""

    def test_reads_see_own_writes_but_store_does_not(self, log_path: Path) -> None:
        """Inside the block tx sees its writes while the store still shows the old state."""
        with _abc(log_path) as store, store.transaction() as tx:
            tx["d"] = 4
            tx["a"] = 10
            del tx["b"]
            assert tx["d"] == 4
            assert tx.get("a") == 10
            assert "b" not in tx
            assert tx.get("b") is None
            assert len(tx) == 3
            assert dict(store) == {"a": 1, "b": 2, "c": 3}
            assert "d" not in store

    def test_store_changes_when_block_ends(self, log_path: Path) -> None:
        """The store shows the transaction's writes right after the block, not before."""
        with _abc(log_path) as store:
            with store.transaction() as tx:
                tx["d"] = 4
                assert store.get("d") is None
            assert store.get("d") == 4

    def test_other_thread_write_waits_for_transaction(self, log_path: Path, settle: Settle) -> None:
        """Another thread's write waits until the transaction ends, then lands after it."""
        with _abc(log_path) as store:
            started = threading.Event()
            done = threading.Event()

            def write_late() -> None:
                started.set()
                store["late"] = 100
                done.set()

            with store.transaction() as tx:
                tx["in_tx"] = 1
                thread = _in_thread(write_late)
                assert started.wait(WAIT)
                assert not done.wait(0.2), "the other thread wrote while the transaction was open"
                assert "late" not in tx
            thread.join(WAIT)
            assert done.is_set()
            with settle(store) as store:
                assert list(store)[-2:] == ["in_tx", "late"]

    def test_a_transaction_takes_the_store_only_inside_its_block(self, log_path: Path) -> None:
        """transaction() alone takes no lock: the store stays writable, and other threads go on."""
        with TypedStore.open(log_path, str, int) as store:
            txn = store.transaction()
            store["x"] = 1
            other = threading.Thread(target=lambda: store.__setitem__("y", 2))
            other.start()
            other.join(WAIT)
            assert not other.is_alive()
            assert dict(store) == {"x": 1, "y": 2}
            with txn:
                txn["z"] = 3
            assert dict(store) == {"x": 1, "y": 2, "z": 3}

    def test_concurrent_transfers_keep_total(
        self, log_path: Path, open_store: OpenStore, settle: Settle, rng: random.Random
    ) -> None:
        """Threads running transfer transactions keep the total balance, in memory and on reopen."""
        with open_store(Accounts, log_path) as store:
            owners = [f"owner-{number}" for number in range(5)]
            for owner in owners:
                store[owner] = Account(owner=owner, balance=100)

            def transfers(seed: int) -> None:
                local = random.Random(seed)
                for _ in range(50):
                    source, target = local.sample(owners, 2)
                    with store.transaction() as tx:
                        tx.modify(source, lambda a: a.model_copy(update={"balance": a.balance - 7}))
                        tx.modify(target, lambda a: a.model_copy(update={"balance": a.balance + 7}))

            threads = [
                _in_thread(functools.partial(transfers, rng.randrange(2**32))) for _ in range(4)
            ]
            for thread in threads:
                thread.join(WAIT * 4)
            assert not any(thread.is_alive() for thread in threads)
            assert sum(account.balance for account in store.values()) == 500
            with settle(store) as store:
                assert sum(account.balance for account in store.values()) == 500
                assert list(store) == owners


class TestOneRecord:
    """A commit appends exactly one batch record, which replays whole."""

    def test_commit_writes_one_batch_record(self, log_path: Path) -> None:
        """A commit appends exactly one frame, and it is a batch record."""
        with _abc(log_path) as store:
            size = log_path.stat().st_size
            with store.transaction() as tx:
                for number in range(10):
                    tx[f"n{number}"] = number
                del tx["a"]
            frames = frames_after(log_path, size)
            assert len(frames) == 1
            assert _kind(log_path, frames[0]) == RecordKind.BATCH

    def test_modify_outside_transaction_writes_one_insert(self, log_path: Path) -> None:
        """store.modify appends a single insert record, not a batch."""
        with _abc(log_path) as store:
            size = log_path.stat().st_size
            store.modify("a", lambda value: value + 1)
            frames = frames_after(log_path, size)
            assert len(frames) == 1
            assert _kind(log_path, frames[0]) == RecordKind.INSERT

    def test_commit_under_sync_on_write(self, log_path: Path, settle: Settle) -> None:
        """With sync_on_write a transaction commits as one record like any other."""
        with Ints.open(log_path, config=StoreConfig(sync_on_write=True)) as store:
            size = log_path.stat().st_size
            with store.transaction() as tx:
                tx["a"] = 1
                tx["b"] = 2
            assert len(frames_after(log_path, size)) == 1
            with settle(store) as store:
                assert dict(store) == {"a": 1, "b": 2}

    def test_commit_that_triggers_compaction_replays_whole(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A commit followed by automatic compaction leaves a log that replays to memory."""
        config = StoreConfig(min_compact_bytes=0, compact_ratio=2.0)
        with open_store(Ints, log_path, config=config) as store:
            store.update({"a": 1, "b": 2})
            with store.transaction() as tx:
                for number in range(5):
                    tx["a"] = number
                del tx["b"]
                tx["c"] = 3
            expected = {"a": 4, "c": 3}
            assert dict(store) == expected
            with settle(store) as store:
                assert list(store.items()) == list(expected.items())


class TestOperationsThroughTx:
    """tx reads and writes as the store does, seeing its staged writes."""

    def test_tx_insert_and_remove_return_previous(self, log_path: Path) -> None:
        """tx.insert and tx.remove return the previous value as the transaction sees it."""
        with _abc(log_path) as store, store.transaction() as tx:
            assert tx.insert("a", 10) == 1
            assert tx.insert("a", 20) == 10
            assert tx.insert("new", 5) is None
            assert tx.remove("new") == 5
            assert tx.remove("new") is None
            assert tx.remove("b") == 2

    def test_tx_missing_keys_raise_keyerror(self, log_path: Path) -> None:
        """tx[k], del tx[k] and tx.modify of a missing (or staged-removed) key raise KeyError."""
        with _abc(log_path) as store, store.transaction() as tx:
            del tx["a"]
            with pytest.raises(KeyError, match="'a'"):
                tx["a"]
            with pytest.raises(KeyError, match="nope"):
                del tx["nope"]
            with pytest.raises(KeyError, match="'a'"):
                tx.modify("a", lambda value: value)

    def test_tx_get_default(self, log_path: Path) -> None:
        """tx.get returns the default for a missing or staged-removed key."""
        with _abc(log_path) as store, store.transaction() as tx:
            del tx["a"]
            assert tx.get("a", -1) == -1
            assert tx.get("nope", -1) == -1
            assert tx.get("b", -1) == 2

    def test_tx_len_follows_staged_writes(self, log_path: Path) -> None:
        """len(tx) counts the store's entries plus staged inserts minus staged removals."""
        with _abc(log_path) as store, store.transaction() as tx:
            assert len(tx) == 3
            tx["d"] = 4
            tx["a"] = 10
            assert len(tx) == 4
            del tx["b"]
            tx.remove("absent")
            assert len(tx) == 3
            tx["b"] = 20
            tx["e"] = 5
            del tx["e"]
            assert len(tx) == 4

    def test_iterating_a_transaction_follows_its_writes(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """iter(txn) gives the keys as the transaction sees them, in the order a commit gives."""
        with open_store(TypedStore, log_path, str, int) as store:
            store["a"] = 1
            store["b"] = 2
            with store.transaction() as txn:
                del txn["a"]
                txn["c"] = 3
                txn["a"] = 4
                txn["b"] = 5
                seen = list(txn)
            assert seen == list(store) == ["b", "c", "a"]

    def test_tx_modify_sees_staged_value(self, log_path: Path, settle: Settle) -> None:
        """tx.modify works on the staged value, returns the new one, and both modifies commit."""
        with _abc(log_path) as store:
            with store.transaction() as tx:
                assert tx.modify("a", lambda value: value + 1) == 2
                assert tx.modify("a", lambda value: value * 10) == 20
                assert tx["a"] == 20
            with settle(store) as store:
                assert store["a"] == 20

    def test_tx_modify_with_a_default_starts_from_it(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """tx.modify(key, fn, default=d) of an absent key stages fn(d), validated."""
        with open_store(Ints, log_path) as store:
            with store.transaction() as tx:
                assert tx.modify("hits", lambda hits: hits + 1, default=0) == 1
                assert tx.modify("hits", lambda hits: hits + 1, default=0) == 2
            with settle(store) as store:
                assert dict(store) == {"hits": 2}

    def test_tx_reads_are_copies(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """Mutating a value read through tx, or the object staged, changes nothing committed."""
        with open_store(Users, log_path) as store:
            alice = User(name="Alice", age=30, tags=["admin"])
            with store.transaction() as tx:
                staged = alice.model_copy(deep=True)
                tx["a"] = staged
                staged.tags.append("after staging")
                read = tx["a"]
                read.age = 99
                assert tx["a"] == alice
            with settle(store) as store:
                assert store["a"] == alice

    def test_tx_modify_fn_gets_private_copy(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """fn mutating its argument and then raising leaves the staged and stored value
        unchanged."""
        with open_store(Users, log_path) as store:
            alice = User(name="Alice", age=30, tags=["admin"])
            store["a"] = alice

            def mutate_then_fail(user: User) -> User:
                user.age = 99
                user.tags.append("hacked")
                raise Abort("after mutating")

            with store.transaction() as tx:
                with pytest.raises(Abort, match="after mutating"):
                    tx.modify("a", mutate_then_fail)
                assert tx["a"] == alice
                tx["b"] = alice
            with settle(store) as store:
                assert store["a"] == alice


class TestInvalidWritesInTx:
    """An invalid key or value raises at the call and stages nothing; the block goes on."""

    def test_tx_invalid_value_raises_at_call_and_tx_continues(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """An invalid value raises ValidationError at the call; the rest of the block commits."""
        with open_store(Users, log_path) as store:
            alice = User(name="Alice", age=30)
            with store.transaction() as tx:
                with pytest.raises(pydantic.ValidationError, match="age"):
                    tx["bad"] = alice.model_copy(update={"age": "old"})
                assert "bad" not in tx
                tx["good"] = alice
            with settle(store) as store:
                assert dict(store) == {"good": alice}

    def test_tx_invalid_key_raises_at_call(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """An invalid key raises ValidationError at the call and stages nothing."""
        with open_store(Ints, log_path) as store:
            with store.transaction() as tx:
                with pytest.raises(pydantic.ValidationError, match="string"):
                    tx.insert(cast(Any, 5), 1)
                assert len(tx) == 0
                tx["ok"] = 1
            with settle(store) as store:
                assert dict(store) == {"ok": 1}

    def test_tx_modify_invalid_result_stages_nothing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """tx.modify whose fn returns an invalid value raises ValidationError and stages nothing."""
        with open_store(Users, log_path) as store:
            alice = User(name="Alice", age=30)
            store["a"] = alice
            with store.transaction() as tx:
                with pytest.raises(pydantic.ValidationError, match="age"):
                    tx.modify("a", lambda user: user.model_copy(update={"age": "old"}))
                assert tx["a"] == alice
                tx["b"] = alice
            with settle(store) as store:
                assert list(store.items()) == [("a", alice), ("b", alice)]

    def test_removal_with_an_invalid_equal_key_stages_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """del tx[True] on a strict int store is a KeyError; the log stays openable."""
        with open_store(TypedStore, log_path, pydantic.StrictInt, str) as store:
            store[1] = "one"
            with store.transaction() as txn:
                with pytest.raises(KeyError, match="True"):
                    del txn[True]
                assert txn.remove(True) is None
                txn[2] = "two"
        with open_store(TypedStore, log_path, pydantic.StrictInt, str) as store:
            assert dict(store) == {1: "one", 2: "two"}


class TestCommitOrder:
    """A commit leaves the order the same writes made one by one would."""

    def test_order_within_transaction_matches_sequential(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """insert a, insert b, remove a, insert a inside a transaction orders b before a."""
        with open_store(Ints, log_path) as store:
            with store.transaction() as tx:
                tx["a"] = 1
                tx["b"] = 2
                del tx["a"]
                tx["a"] = 3
            with settle(store) as store:
                assert list(store.items()) == [("b", 2), ("a", 3)]

    def test_get_index_follows_commit(self, log_path: Path, settle: Settle) -> None:
        """get_index, used before a transaction, follows the order the commit left."""
        with _abc(log_path) as store:
            assert store.get_index(-1) == ("c", 3)
            with store.transaction() as tx:
                tx["d"] = 4
                del tx["a"]
                tx["a"] = 10
                tx["e"] = 5
            with settle(store) as store:
                expected = [("b", 2), ("c", 3), ("d", 4), ("a", 10), ("e", 5)]
                assert [store.get_index(i) for i in range(5)] == expected
                assert store.get_index(5) is None

    def test_get_index_sees_committed_inserts(self, log_path: Path) -> None:
        """get_index, used before a transaction of inserts only, finds the committed keys."""
        with _abc(log_path) as store:
            assert store.get_index(-1) == ("c", 3)
            with store.transaction() as tx:
                tx["d"] = 4
                tx["a"] = 10
            assert store.get_index(-1) == ("d", 4)
            assert store.get_index(0) == ("a", 10)
            assert store.get_index(4) is None

    def test_random_transaction_matches_dict(
        self, log_path: Path, open_store: OpenStore, settle: Settle, rng: random.Random
    ) -> None:
        """A random mix of staged inserts and removals commits to what a dict doing them gives."""
        model = {"k0": 0, "k1": 1, "k2": 2}
        with open_store(Ints, log_path) as store:
            store.update(model)
            with store.transaction() as tx:
                for step in range(60):
                    key = f"k{rng.randrange(6)}"
                    if rng.random() < 0.6:
                        tx[key] = step
                        model[key] = step
                    else:
                        assert tx.remove(key) == model.pop(key, None)
                    assert len(tx) == len(model)
            with settle(store) as store:
                assert list(store.items()) == list(model.items())
                assert [store.get_index(i) for i in range(len(model))] == list(model.items())


_TX_OPERATIONS: dict[str, Callable[[Transaction[str, int]], object]] = {
    "insert": lambda tx: tx.insert("z", 1),
    "setitem": lambda tx: tx.__setitem__("z", 1),
    "remove": lambda tx: tx.remove("a"),
    "delitem": lambda tx: tx.__delitem__("a"),
    "modify": lambda tx: tx.modify("a", lambda value: value),
    "get": lambda tx: tx.get("a"),
    "getitem": lambda tx: tx["a"],
    "contains": lambda tx: "a" in tx,
    "len": len,
}


_STORE_WRITES: dict[str, Callable[[Ints], object]] = {
    "insert": lambda store: store.insert("z", 1),
    "setitem": lambda store: store.__setitem__("z", 1),
    "remove": lambda store: store.remove("a"),
    "remove_absent": lambda store: store.remove("absent"),
    "delitem": lambda store: store.__delitem__("a"),
    "pop": lambda store: store.pop("a"),
    "popitem": lambda store: store.popitem(),
    "modify": lambda store: store.modify("a", lambda value: value + 1),
    "update": lambda store: store.update({"z": 1}),
    "setdefault": lambda store: store.setdefault("z", 1),
    "clear": lambda store: store.clear(),
    "compact": lambda store: store.compact(),
}


def _assert_lock_free(store: Ints) -> None:
    """Assert that another thread can read the store, so no transaction holds it."""
    seen: list[int] = []
    thread = _in_thread(lambda: seen.append(len(store)))
    thread.join(WAIT)
    assert not thread.is_alive(), "another thread could not read the store"
    assert seen == [len(store)]


class TestMisuse:
    """A transaction used outside its block, nested, or on a closed or readonly store raises."""

    @pytest.mark.parametrize("aborted", [False, True], ids=["committed", "aborted"])
    @pytest.mark.parametrize("operation", _TX_OPERATIONS.values(), ids=_TX_OPERATIONS.keys())
    def test_tx_after_block_raises(
        self, log_path: Path, operation: Callable[[Transaction[str, int]], object], aborted: bool
    ) -> None:
        """Using tx after its block ended, committed or aborted, raises StoreClosedError."""
        with _abc(log_path) as store:
            ended: list[Transaction[str, int]] = []

            def run_block() -> None:
                with store.transaction() as tx:
                    ended.append(tx)
                    tx["y"] = 1
                    if aborted:
                        raise Abort("aborted")

            if aborted:
                with pytest.raises(Abort, match="aborted"):
                    run_block()
            else:
                run_block()
            size = log_path.stat().st_size
            with pytest.raises(StoreClosedError, match="transaction has ended"):
                operation(ended[0])
            assert log_path.stat().st_size == size
            assert dict(store) == ({"a": 1, "b": 2, "c": 3} | ({} if aborted else {"y": 1}))

    def test_a_transaction_not_yet_entered_refuses_use(self, log_path: Path) -> None:
        """Writing through a transaction outside its block raises StoreClosedError, writes
        nothing."""
        with TypedStore.open(log_path, str, int) as store:
            txn = store.transaction()
            with pytest.raises(StoreClosedError, match="has not started"):
                txn["a"] = 1
            assert "a" not in store

    def test_a_transaction_cannot_be_entered_twice(self, log_path: Path) -> None:
        """Entering an ended transaction again raises StoreClosedError and leaves the store
        usable."""
        with TypedStore.open(log_path, str, int) as store:
            with store.transaction() as txn:
                txn["a"] = 1
            with pytest.raises(StoreClosedError, match="one with block"), txn:
                txn["b"] = 2
            store["c"] = 3
            assert dict(store) == {"a": 1, "c": 3}

    @pytest.mark.parametrize("kind", ["store", "database"])
    def test_a_transaction_ended_in_another_thread_is_refused_not_hung(
        self, log_path: Path, kind: str
    ) -> None:
        """Its thread holds the store's lock: ending it elsewhere used to wait for that
        lock forever. It raises RuntimeError, writing nothing, and its own thread can
        still end it."""
        store = TypedStore.open(log_path, str, int) if kind == "store" else None
        db = Database.open(log_path.with_suffix(".db")) if store is None else None
        ints: Any = store if db is None else db.collection("ints", str, int)
        txn: Any = ints.transaction() if db is None else db.transaction()
        view = txn.__enter__()
        target = view if db is None else view.collection("ints", str, int)
        target["a"] = 1
        errors: list[BaseException] = []

        def end() -> None:
            try:
                txn.__exit__(None, None, None)
            except BaseException as exc:  # looked at below
                errors.append(exc)

        ender = threading.Thread(target=end)
        ender.start()
        ender.join(timeout=60)  # not a measure: a hung thread must not hang the suite
        if ender.is_alive():  # waiting for the lock: let it go from here, then fail
            txn._hold.close()
            ender.join()
            pytest.fail("ending the transaction in another thread waited for the lock")
        assert len(errors) == 1
        assert isinstance(errors[0], RuntimeError)
        assert "thread that began it" in str(errors[0])
        assert ints.get("a") is None
        txn.__exit__(None, None, None)
        assert ints.get("a") == 1
        ints["b"] = 2  # the lock is free
        if db is None:
            ints.close()
            with TypedStore.open(log_path, str, int) as reopened:
                assert dict(reopened) == {"a": 1, "b": 2}
        else:
            db.close()
            with Database.open(log_path.with_suffix(".db")) as again:
                assert dict(again.collection("ints", str, int)) == {"a": 1, "b": 2}

    def test_nested_transaction_raises(self, log_path: Path, settle: Settle) -> None:
        """Starting a transaction inside one raises RuntimeError, and the outer one applies
        nothing."""
        with _abc(log_path) as store:

            def nest() -> None:
                with store.transaction() as outer:
                    outer["d"] = 4
                    with store.transaction():
                        pass

            with pytest.raises(RuntimeError, match="transaction is open"):
                nest()
            store["e"] = 5  # the store is usable again
            with settle(store) as store:
                assert dict(store) == {"a": 1, "b": 2, "c": 3, "e": 5}

    @pytest.mark.parametrize("write", _STORE_WRITES.values(), ids=_STORE_WRITES.keys())
    def test_store_write_inside_block_raises(
        self, log_path: Path, write: Callable[[Ints], object]
    ) -> None:
        """Writing through the store inside its transaction raises RuntimeError, changing
        nothing."""
        with _abc(log_path) as store:
            with store.transaction() as tx:
                with pytest.raises(RuntimeError, match="transaction is open"):
                    write(store)
                tx["t"] = 9
            assert dict(store) == {"a": 1, "b": 2, "c": 3, "t": 9}
        with Ints.open(log_path) as reopened:
            assert list(reopened.items()) == [("a", 1), ("b", 2), ("c", 3), ("t", 9)]

    @pytest.mark.file_only  # writes or reads the log's file itself
    def test_transaction_on_readonly_store_raises(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """store.transaction() on a readonly store raises StoreReadOnlyError and holds no lock."""
        _abc(log_path).close()
        with open_store(Ints, log_path, readonly=True) as reader:
            with pytest.raises(StoreReadOnlyError, match="readonly"):
                reader.transaction()
            _assert_lock_free(reader)

    def test_transaction_on_closed_store_raises(self, log_path: Path) -> None:
        """store.transaction() on a closed store raises StoreClosedError."""
        with _abc(log_path) as store:
            store.close()
            with pytest.raises(StoreClosedError, match="closed"):
                store.transaction()


class TestTransactionWritesValidateTheKeyFirst:
    """A transaction's writes look keys up as validated, as the store's own writes do."""

    def test_tx_insert_returns_the_previous_value_of_the_validated_key(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """tx.insert("1", v) with int keys returns key 1's previous value, like store.insert."""
        with open_store(TypedStore, log_path, int, str) as store:
            store[1] = "one"
            assert store.insert("1", "uno") == "one"  # type: ignore[arg-type]  # "1" is 1
            with store.transaction() as tx:
                assert tx.insert("1", "eins") == "uno"  # type: ignore[arg-type]  # as above
            assert dict(store) == {1: "eins"}


class TestValidationErrorsNameTheirKey:
    """A ValidationError raised by a transaction's write has a note naming the key."""

    def test_invalid_value_names_its_key(self, log_path: Path, open_store: OpenStore) -> None:
        """tx[k] = invalid value raises ValidationError with a note naming k."""
        with open_store(Users, log_path) as store, store.transaction() as tx:
            with pytest.raises(pydantic.ValidationError, match="age") as caught:
                tx["carol"] = User.model_construct(name="Carol", age="old")  # type: ignore[arg-type]
            assert caught.value.__notes__ == ["raised by a transaction's write of key 'carol'"]

    def test_invalid_modify_result_names_its_key(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """tx.modify(k, fn) whose fn returns an invalid value names k in a note."""
        with open_store(Ints, log_path) as store:
            store["hits"] = 1
            with store.transaction() as tx:
                with pytest.raises(pydantic.ValidationError, match="valid integer") as caught:
                    tx.modify("hits", lambda hits: "many")  # type: ignore[arg-type, return-value]
                assert caught.value.__notes__ == ["raised by a transaction's write of key 'hits'"]

    def test_invalid_key_names_itself(self, log_path: Path, open_store: OpenStore) -> None:
        """tx.insert with a key that does not validate names the key in a note."""
        with open_store(TypedStore, log_path, int, str) as store, store.transaction() as tx:
            with pytest.raises(pydantic.ValidationError, match="valid integer") as caught:
                tx.insert("one", "1")  # type: ignore[arg-type]
            assert caught.value.__notes__ == ["raised by a transaction's write of key 'one'"]
