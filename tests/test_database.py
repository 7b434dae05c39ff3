"""Databases: named, typed collections in one log (README.md, "Databases")."""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, BeforeValidator

from tests.models import Point, User
from tests.test_faults import FaultyOS
from tests.test_store import _signal_at, _signal_handler_restored
from typedstore import (
    Collection,
    Database,
    PostgresEngine,
    SchemaMismatchError,
    StoreClosedError,
    TypedStore,
    _fs,
)
from typedstore._format import decode_header, frame_body, read_frame
from typedstore._records import Write


class Order(BaseModel):
    """An order of a user."""

    user: str
    total: int
    paid: bool = False


class Shop(Database):
    """Users and orders in one log."""

    users: Collection[str, User]
    orders: Collection[int, Order]


class Users(Database):
    """Only the users of a shop's log: its orders are kept, undeclared."""

    users: Collection[str, User]


ADA = User(name="Ada", age=36)


Place = Path | PostgresEngine
"""Where a database's log is: a file, or a store in PostgreSQL."""


@pytest.fixture(params=["file", "postgres"])
def place(request: pytest.FixtureRequest, log_path: Path) -> Place:
    """Run the test on a log file and (``postgres``) on store ``shop`` in PostgreSQL, in
    the test's own schema: the core cases, whose tests do not look at the log's bytes."""
    if request.param == "postgres":
        return PostgresEngine(request.getfixturevalue("pg_dsn"), name="shop")
    return log_path


def fill(place: Place) -> None:
    """Write a user and an order to a shop at ``place``."""
    with Shop.open(place) as shop:
        shop.users["ada"] = ADA
        shop.orders[1] = Order(user="ada", total=30)


def pay(order: Order) -> Order:
    """Return ``order`` paid."""
    return order.model_copy(update={"paid": True})


def older(user: User) -> User:
    """Return ``user`` one year older."""
    return user.model_copy(update={"age": user.age + 1})


def fail_in_transaction(shop: Shop) -> None:
    """Write to both collections in a transaction, then raise KeyError("boom")."""
    with shop.transaction() as tx:
        tx.orders.modify(1, pay)
        tx.users["bob"] = ADA
        raise KeyError("boom")


def record_bodies(path: Path) -> list[bytes]:
    """Return the body of every record of the log at ``path``, in order."""
    buf = path.read_bytes()
    _, offset = decode_header(buf)
    bodies = []
    while offset < len(buf):
        end = read_frame(buf, offset)
        bodies.append(bytes(frame_body(buf, offset, end)))
        offset = end
    return bodies


class TestCollections:
    def test_collections_reopen_with_their_entries(self, place: Place) -> None:
        """Each collection of a database reopens with exactly its own entries."""
        fill(place)
        with Shop.open(place) as shop:
            assert dict(shop.users) == {"ada": ADA}
            assert dict(shop.orders) == {1: Order(user="ada", total=30)}

    def test_same_key_in_two_collections_is_two_entries(self, place: Place) -> None:
        """Collections are separate mappings: one key may be in both, with its own value."""

        class Twins(Database):
            left: Collection[str, int]
            right: Collection[str, int]

        with Twins.open(place) as twins:
            twins.left["k"], twins.right["k"] = 1, 2
            del twins.left["k"]
        with Twins.open(place) as twins:
            assert (dict(twins.left), dict(twins.right)) == ({}, {"k": 2})

    def test_functional_form_returns_the_same_collection(self, place: Place) -> None:
        """collection() with the same name and types twice returns the same object."""
        with Database.open(place) as database:
            assert database.collection("users", str, User) is database.collection(
                "users", str, User
            )

    def test_functional_form_reads_a_declared_log(self, place: Place) -> None:
        """A collection written through a declared class reads back through collection()."""
        fill(place)
        with Database.open(place) as database:
            assert database.collection("orders", int, Order)[1].total == 30

    def test_functional_form_refuses_other_types_for_a_name(self, place: Place) -> None:
        """collection() with a name already declared with other types raises ValueError."""
        with Shop.open(place) as shop, pytest.raises(ValueError, match="other types"):
            shop.collection("users", int, User)

    @pytest.mark.parametrize("name", ["", "a\nb", "x" * 256])
    def test_bad_collection_name_is_refused(self, log_path: Path, name: str) -> None:
        """An empty, control-character or over-long name raises ValueError, nothing written."""
        with Database.open(log_path) as database:
            size = log_path.stat().st_size
            with pytest.raises(ValueError, match="collection name"):
                database.collection(name, str, int)
        assert log_path.stat().st_size == size

    def test_closed_database_refuses_its_collections(self, place: Place) -> None:
        """A collection of a closed database raises StoreClosedError."""
        shop = Shop.open(place)
        users = shop.users
        shop.close()
        with pytest.raises(StoreClosedError, match="closed"):
            users.get("ada")

    def test_one_reading_block_covers_every_collection(self, place: Place) -> None:
        """``db.reading()`` looks at the log once for all collections: what another
        instance wrote to each before the block is seen inside it, what it wrote during
        the block is seen by the reads after it."""
        with Shop.open(place, shared=True) as shop, Shop.open(place, shared=True) as other:
            other.users["ada"] = ADA
            other.orders[1] = Order(user="ada", total=30)
            with shop.reading():
                assert dict(shop.users) == {"ada": ADA}
                assert shop.orders[1].total == 30
                other.users["bo"] = ADA
                other.orders[2] = Order(user="bo", total=5)
                assert (len(shop.users), len(shop.orders)) == (1, 1)
                assert shop.collection_names() == ["users", "orders"]
            assert (sorted(shop.users), sorted(shop.orders)) == (["ada", "bo"], [1, 2])

    def test_second_collection_writes_collection_records(self, log_path: Path) -> None:
        """The first collection's single writes stay bare records; another's are kind 05."""
        with Shop.open(log_path) as shop:
            shop.users["ada"] = ADA
            shop.orders[1] = Order(user="ada", total=30)
        kinds = [body[0] & 0x07 for body in record_bodies(log_path)]
        assert kinds[-2:] == [1, 5]


class TestTransactions:
    def test_transaction_spans_collections(self, log_path: Path) -> None:
        """A transaction's writes to two collections are one batch record, both applied."""
        fill(log_path)
        before = len(record_bodies(log_path))
        with Shop.open(log_path) as shop:
            with shop.transaction() as tx:
                tx.orders.modify(1, pay)
                tx.users.modify("ada", older)
            assert shop.orders[1].paid
            assert shop.users["ada"].age == 37
        bodies = record_bodies(log_path)
        assert len(bodies) == before + 1
        assert bodies[-1][0] & 0x07 == 3

    def test_exception_writes_nothing_in_any_collection(self, log_path: Path) -> None:
        """An exception in the block leaves every collection as it was, in memory and on disk."""
        fill(log_path)
        size = log_path.stat().st_size
        with Shop.open(log_path) as shop:
            with pytest.raises(KeyError, match="boom"):
                fail_in_transaction(shop)
            assert not shop.orders[1].paid
            assert "bob" not in shop.users
        assert log_path.stat().st_size == size

    def test_views_see_the_transactions_writes(self, place: Place) -> None:
        """Reads, len and iteration through a view see the transaction's own writes."""
        fill(place)
        with Shop.open(place) as shop, shop.transaction() as tx:
            tx.users["bob"] = ADA
            del tx.orders[1]
            assert list(tx.users) == ["ada", "bob"]
            assert len(tx.orders) == 0
            assert shop.users.get("bob") is None

    def test_functional_view_in_a_transaction(self, place: Place) -> None:
        """tx.collection(...) stages its writes in the transaction too."""
        with Database.open(place) as database:
            points = database.collection("points", int, Point)
            with database.transaction() as tx:
                tx.collection("points", int, Point)[1] = Point(x=1, y=2)
                assert 1 not in points
            assert points[1] == Point(x=1, y=2)

    def test_nested_transaction_is_refused(self, place: Place) -> None:
        """Starting a transaction inside one raises RuntimeError."""
        with (
            Shop.open(place) as shop,
            shop.transaction(),
            pytest.raises(RuntimeError, match="transaction is open"),
        ):
            shop.transaction().__enter__()

    def test_view_after_the_block_is_refused(self, place: Place) -> None:
        """A transaction view used after its block raises StoreClosedError."""
        with Shop.open(place) as shop:
            with shop.transaction() as tx:
                pass
            with pytest.raises(StoreClosedError, match="ended"):
                tx.users["ada"] = ADA

    def test_direct_write_inside_the_block_is_refused(self, place: Place) -> None:
        """Writing to the database's own collection inside its transaction raises RuntimeError."""
        with (
            Shop.open(place) as shop,
            shop.transaction(),
            pytest.raises(RuntimeError, match="write through it"),
        ):
            shop.users["ada"] = ADA

    def test_other_threads_wait_for_the_transaction(self, place: Place) -> None:
        """Another thread's write waits until the transaction ends, and lands after it."""
        with Shop.open(place) as shop:
            started = threading.Event()

            def write() -> None:
                started.set()
                shop.orders[2] = Order(user="bob", total=1)

            with shop.transaction() as tx:
                thread = threading.Thread(target=write)
                thread.start()
                started.wait()
                thread.join(0.2)
                tx.orders[1] = Order(user="ada", total=1)
            thread.join()
            assert list(shop.orders) == [1, 2]


class TestCatalog:
    def test_undeclared_collection_is_kept_through_compaction(self, log_path: Path) -> None:
        """A collection the opening code does not declare keeps its records' bytes."""
        fill(log_path)
        orders_before = [b for b in record_bodies(log_path) if b[0] & 0x07 == 5]
        with Users.open(log_path) as users:
            users.users["bob"] = ADA
            users.compact()
        assert [b for b in record_bodies(log_path) if b[0] & 0x07 == 5] == orders_before
        with Shop.open(log_path) as shop:
            assert shop.orders[1] == Order(user="ada", total=30)

    def test_undeclared_collection_listed(self, place: Place) -> None:
        """collection_names() lists every collection of the log, declared or not."""
        fill(place)
        with Users.open(place) as users:
            assert users.collection_names() == ["users", "orders"]

    def test_dropped_collection_is_gone(self, place: Place) -> None:
        """dropped_collections removes a collection and its entries, durably."""
        fill(place)
        Users.open(place, dropped_collections=("orders",)).close()
        with Shop.open(place) as shop:
            assert len(shop.orders) == 0
            assert shop.users["ada"] == ADA

    def test_dropping_an_absent_collection_is_refused(self, log_path: Path) -> None:
        """Dropping a collection the log lacks raises ValueError, nothing written."""
        fill(log_path)
        before = log_path.read_bytes()
        with pytest.raises(ValueError, match="no collection 'nope'"):
            Shop.open(log_path, dropped_collections=("nope",))
        assert log_path.read_bytes() == before

    def test_readonly_open_refuses_a_drop(self, place: Place) -> None:
        """A read-only open with dropped_collections raises ValueError."""
        fill(place)
        with pytest.raises(ValueError, match="writable open"):
            Shop.open(place, readonly=True, dropped_collections=("orders",))

    def test_renamed_collection_keeps_its_entries(self, place: Place) -> None:
        """renamed_collections moves a collection's entries to its new name."""
        fill(place)

        class Renamed(Database):
            users: Collection[str, User]
            purchases: Collection[int, Order]

        with Renamed.open(place, renamed_collections={"orders": "purchases"}) as shop:
            assert shop.purchases[1].total == 30
        with Renamed.open(place) as shop:
            assert shop.purchases[1].total == 30
            assert shop.collection_names() == ["users", "purchases"]

    def test_typed_store_log_opens_as_database(self, place: Place) -> None:
        """A TypedStore's log opens as a Database, its collection named "default"."""
        with TypedStore.open(place, str, User) as store:
            store["ada"] = ADA
        with Database.open(place) as database:
            assert database.collection_names() == ["default"]
            assert database.collection("default", str, User)["ada"] == ADA

    def test_database_adopting_a_typed_store_log_keeps_it(self, place: Place) -> None:
        """A database that adds a collection to a TypedStore log keeps the store's entries."""
        with TypedStore.open(place, str, User) as store:
            store["ada"] = ADA
        with Shop.open(place) as shop:
            shop.orders[1] = Order(user="ada", total=1)
        with Database.open(place) as database:
            assert database.collection("default", str, User)["ada"] == ADA

    def test_typed_store_refuses_a_log_of_several_collections(self, log_path: Path) -> None:
        """A TypedStore open of a log with two collections raises SchemaMismatchError."""
        fill(log_path)
        before = log_path.read_bytes()
        with pytest.raises(SchemaMismatchError, match=r"'users', 'orders'.*as a Database"):
            TypedStore.open(log_path, str, User)
        assert log_path.read_bytes() == before

    def test_typed_store_opens_a_database_of_one_collection(self, place: Place) -> None:
        """A database log with exactly one collection opens as a TypedStore of it."""
        with Users.open(place) as users:
            users.users["ada"] = ADA
        with TypedStore.open(place, str, User) as store:
            store["bob"] = ADA
        with Users.open(place) as users:
            assert list(users.users) == ["ada", "bob"]

    def test_per_collection_migration(self, place: Place) -> None:
        """A collection's version bump runs its own migrations, leaving others alone."""
        fill(place)

        class Renaming(Collection[str, User], version=2, migrations={1: lambda d: d}):
            pass

        class Shop2(Database):
            users: Renaming
            orders: Collection[int, Order]

        with Shop2.open(place) as shop:
            assert shop.users["ada"] == ADA
            assert shop.users.schema_version == 2
        with Shop2.open(place) as shop:
            assert shop.orders[1].total == 30

    def test_per_collection_schema_mismatch(self, place: Place) -> None:
        """A collection declared with types its records do not fit raises SchemaMismatchError."""
        fill(place)

        class Wrong(Database):
            orders: Collection[int, Point]

        with pytest.raises(SchemaMismatchError, match="does not validate"):
            Wrong.open(place)

    def test_functional_schema_mismatch_changes_nothing(self, place: Place) -> None:
        """collection() on kept entries that do not validate raises, and keeps them."""
        fill(place)
        with Users.open(place) as users:
            with pytest.raises(SchemaMismatchError, match="does not validate"):
                users.collection("orders", int, Point)
            assert users.collection("orders", int, Order)[1].total == 30


def test_unclosed_database_warns(log_path: Path) -> None:
    """A database dropped without close() warns with a ResourceWarning and closes."""
    with pytest.warns(ResourceWarning, match="unclosed database"):
        drop_open_shop(log_path)
    Shop.open(log_path).close()


def drop_open_shop(path: Path) -> None:
    """Open a shop and let it go without closing it."""
    shop: Any = Shop.open(path)
    del shop
    gc.collect()


class OrderV2(BaseModel):
    """Version 2 of an order: the total is in cents."""

    user: str
    cents: int
    paid: bool = False


def to_cents(data: dict[str, object]) -> dict[str, object]:
    """Migrate an order's data from version 1 to 2."""
    total = data.pop("total")
    assert isinstance(total, int)
    return {**data, "cents": total * 100}


class OrdersV2(Collection[int, OrderV2], version=2, migrations={1: to_cents}):
    """The orders at schema version 2."""


class ShopV2(Database):
    """The shop after the orders' version bump."""

    users: Collection[str, User]
    orders: OrdersV2


def test_kept_collection_of_two_schemas_compacts_each_under_its_own(log_path: Path) -> None:
    """An undeclared collection whose entries were written under two schemas keeps both
    through compaction: each still reads back under its own."""
    fill(log_path)
    with ShopV2.open(log_path) as shop:
        shop.orders[2] = OrderV2(user="bo", cents=250)
    with Users.open(log_path) as users:
        users.compact()
    with ShopV2.open(log_path) as shop:
        assert dict(shop.orders) == {
            1: OrderV2(user="ada", cents=3000),
            2: OrderV2(user="bo", cents=250),
        }


def test_bad_attribute_name_is_refused_at_class_creation() -> None:
    """A declared collection whose name is over 255 bytes raises ValueError at class creation."""
    with pytest.raises(ValueError, match="at most 255"):
        type("Huge", (Database,), {"__annotations__": {"x" * 256: "Collection[str, int]"}})


def test_renaming_a_declared_collection_keeps_it_under_the_new_name(log_path: Path) -> None:
    """Code that renames a collection it declares gets a new, empty one under the old name;
    the entries, kept through a compaction, are the new name's."""
    fill(log_path)

    class Renamed(Database):
        purchases: Collection[int, Order]

    with Shop.open(log_path, renamed_collections={"orders": "purchases"}) as shop:
        assert len(shop.orders) == 0
        shop.compact()
    with Renamed.open(log_path) as renamed:
        assert renamed.purchases[1] == Order(user="ada", total=30)


class Recorder:
    """A write hook (the place indexes plug in) that records what it is shown."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.seen: list[tuple[str, list[object]]] = []

    def before(self, writes: Sequence[Write[Any]]) -> None:
        keys = [write[0] for write in writes]
        if self.refuse in keys:
            raise ValueError(f"{self.refuse} refused")
        self.seen.append(("before", keys))

    def after(self, writes: Sequence[Write[Any]]) -> None:
        self.seen.append(("after", [write[0] for write in writes]))


def test_write_hooks_see_each_write_before_and_after(log_path: Path) -> None:
    """A collection's write hooks see single and transaction writes before and after them."""
    with Shop.open(log_path) as shop:
        recorder = Recorder()
        shop.users._hooks = (recorder,)
        shop.users["ada"] = ADA
        with shop.transaction() as tx:
            tx.users["bo"] = ADA
            tx.orders[1] = Order(user="bo", total=1)
    assert recorder.seen == [
        ("before", ["ada"]),
        ("after", ["ada"]),
        ("before", ["bo"]),
        ("after", ["bo"]),
    ]


def order_for_bo(shop: Shop) -> None:
    """Add bo and an order of bo's in one transaction."""
    with shop.transaction() as tx:
        tx.orders[1] = Order(user="bo", total=1)
        tx.users["bo"] = ADA


def test_write_hook_refusal_writes_nothing(log_path: Path) -> None:
    """A write hook that raises before a transaction's record refuses it whole."""
    with Shop.open(log_path) as shop:
        shop.users._hooks = (Recorder(refuse="bo"),)
        shop.flush()
        size = log_path.stat().st_size
        with pytest.raises(ValueError, match="bo refused"):
            order_for_bo(shop)
        assert log_path.stat().st_size == size
        assert 1 not in shop.orders


def test_collection_named_like_a_database_attribute_is_refused_at_class_creation() -> None:
    """A declared collection named like a Database attribute (close) raises ValueError."""
    with pytest.raises(ValueError, match="'close' names a Database attribute"):
        type("Shadow", (Database,), {"__annotations__": {"close": "Collection[str, int]"}})


def test_dropping_and_renaming_one_collection_is_refused(log_path: Path) -> None:
    """Naming a collection in both dropped_collections and renamed_collections raises
    ValueError, nothing written."""
    fill(log_path)
    before = log_path.read_bytes()
    with pytest.raises(ValueError, match="'orders' is both dropped and renamed"):
        Users.open(
            log_path, dropped_collections=("orders",), renamed_collections={"orders": "bought"}
        )
    assert log_path.read_bytes() == before


def test_collection_declared_by_a_validator_of_a_failed_declaration_survives_compaction(
    log_path: Path,
) -> None:
    """A collection declared by a validator while another declaration fails keeps its
    entries through a compaction."""
    with Database.open(log_path) as database:
        database.collection("old", str, int)["a"] = 1
    database = Database.open(log_path)
    declared: list[Collection[str, int]] = []

    def declare_then_refuse(value: object) -> int:
        declared.append(database.collection("new", str, int))
        raise ValueError("not this one")

    with pytest.raises(SchemaMismatchError):
        database.collection("old", str, Annotated[int, BeforeValidator(declare_then_refuse)])
    declared[0]["b"] = 2
    database.compact()
    database.close()
    with Database.open(log_path) as database:
        assert dict(database.collection("new", str, int)) == {"b": 2}


def test_typed_store_over_a_log_of_dropped_collections_writes_a_readable_log(
    log_path: Path,
) -> None:
    """A TypedStore opened on a database log whose collections were all dropped writes a
    log that opens again."""
    fill(log_path)
    Database.open(log_path, dropped_collections=("users", "orders")).close()
    with TypedStore.open(log_path, str, User) as store:
        store["bob"] = ADA
    with TypedStore.open(log_path, str, User) as store:
        assert dict(store) == {"bob": ADA}


def test_write_from_a_key_validator_during_a_commit_is_refused(log_path: Path) -> None:
    """A write to another collection from a key validator that a transaction's commit runs
    raises RuntimeError and writes nothing."""
    refused: list[BaseException] = []
    armed: list[Collection[str, int]] = []

    def write_other(key: str) -> str:
        if armed:
            try:
                armed[0]["intruder"] = 1
            except RuntimeError as exc:
                refused.append(exc)
        return key

    with Database.open(log_path) as database:
        keyed = database.collection("keyed", Annotated[str, AfterValidator(write_other)], int)
        other = database.collection("other", str, int)
        keyed["k"] = 1
        with database.transaction() as tx:
            del tx.collection("keyed", Annotated[str, AfterValidator(write_other)], int)["k"]
            armed.append(other)
        assert dict(other) == {}
        assert any("is refused" in str(exc) for exc in refused)


def test_declaring_a_collection_from_a_signal_handler_mid_append_is_refused(
    log_path: Path,
) -> None:
    """collection() of a new name from a signal handler that interrupts a record's append
    raises RuntimeError, and the log reopens whole."""
    refused: list[RuntimeError] = []
    with Database.open(log_path) as database:
        users = database.collection("users", str, int)

        def declare(signum: int, frame: object) -> None:
            try:
                database.collection("late", str, int)["x"] = 1
            except RuntimeError as exc:
                refused.append(exc)

        with _signal_handler_restored():
            _signal_at(declare, "tag", "_format.py")
            users["a"] = 1
        database.collection("late", str, int)["y"] = 2
    assert len(refused) == 1
    with Database.open(log_path) as database:
        assert dict(database.collection("late", str, int)) == {"y": 2}


class Shop3(Database):
    """A shop that added a collection: its log may not have it yet."""

    users: Collection[str, User]
    orders: Collection[int, Order]
    notes: Collection[str, str]


def declare_in_failed_transaction(shop: Shop) -> None:
    """Declare and write a collection in a transaction, then raise KeyError("boom")."""
    with shop.transaction() as tx:
        tx.collection("notes", str, str)["a"] = "b"
        raise KeyError("boom")


class TestUnwrittenCollections:
    """A declared collection is in the log's catalog from the moment it is listed."""

    def test_declared_at_open_and_never_written_survives_a_reopen(self, log_path: Path) -> None:
        """A collection an open adds to an existing log is listed after a reopen."""
        fill(log_path)
        with Shop3.open(log_path) as shop:
            assert shop.collection_names() == ["users", "orders", "notes"]
        with Database.open(log_path) as database:
            assert database.collection_names() == ["users", "orders", "notes"]

    def test_declared_by_collection_and_never_written_survives_a_reopen(
        self, log_path: Path
    ) -> None:
        """A collection asked for with collection() is listed after a reopen."""
        fill(log_path)
        with Database.open(log_path) as database:
            database.collection("notes", str, str)
        with Database.open(log_path) as database:
            assert database.collection_names() == ["users", "orders", "notes"]
            assert len(database.collection("notes", str, str)) == 0

    def test_declared_collection_is_in_the_log_before_close(self, log_path: Path) -> None:
        """The catalog reaches the log when the collection is declared: a crash (the
        database abandoned, nothing flushed) keeps it."""
        fill(log_path)
        database = Shop3.open(log_path)
        database.collection("more", int, int)
        database._core.abandon()
        with Database.open(log_path) as reopened:
            assert reopened.collection_names() == ["users", "orders", "notes", "more"]

    def test_collection_declared_in_a_failed_transaction_is_kept(self, log_path: Path) -> None:
        """A collection declared in a transaction that raised stays declared, empty."""
        fill(log_path)
        with Shop.open(log_path) as shop:
            with pytest.raises(KeyError):
                declare_in_failed_transaction(shop)
            assert shop.collection_names() == ["users", "orders", "notes"]
        with Database.open(log_path) as database:
            assert database.collection_names() == ["users", "orders", "notes"]
            assert len(database.collection("notes", str, str)) == 0

    def test_collection_declared_in_a_transaction_that_writes_to_it(self, log_path: Path) -> None:
        """A collection declared and written in one transaction reopens with its entry."""
        fill(log_path)
        with Shop.open(log_path) as shop, shop.transaction() as tx:
            tx.collection("notes", str, str)["a"] = "b"
            tx.orders.modify(1, pay)
        with Database.open(log_path) as database:
            assert dict(database.collection("notes", str, str)) == {"a": "b"}
            assert database.collection("orders", int, Order)[1].paid

    def test_collection_declared_by_a_validator_mid_write(self, log_path: Path) -> None:
        """A validator that declares a new collection during a write: the catalog record
        and the write's record both reach the log, in an order that reopens."""
        fill(log_path)
        holder: list[Database] = []

        def declare(total: int) -> int:
            if holder:
                holder.pop().collection("audit", str, int)["seen"] = total
            return total

        with Database.open(log_path) as database:
            totals = database.collection("totals", str, Annotated[int, AfterValidator(declare)])
            holder.append(database)
            totals["a"] = 5
        with Database.open(log_path) as database:
            assert database.collection_names() == ["users", "orders", "totals", "audit"]
            assert dict(database.collection("audit", str, int)) == {"seen": 5}
            assert dict(database.collection("totals", str, int)) == {"a": 5}

    def test_shared_database_writes_a_new_collection_at_once(self, log_path: Path) -> None:
        """In shared mode, collection() writes the catalog under the writer lock at once:
        another process's open (here, a read-only one) lists it."""
        fill(log_path)
        with Database.open(log_path, shared=True) as database:
            database.collection("notes", str, str)
            with Database.open(log_path, readonly=True) as reader:
                assert reader.collection_names() == ["users", "orders", "notes"]
            database.collection("users", str, User)["bob"] = ADA
        with Database.open(log_path) as database:
            assert database.collection_names() == ["users", "orders", "notes"]
            assert database.collection("users", str, User)["bob"] == ADA

    def test_readonly_open_writes_nothing_for_a_new_collection(self, log_path: Path) -> None:
        """A read-only open that declares a collection the log lacks leaves the log as is."""
        fill(log_path)
        before = log_path.read_bytes()
        with Shop3.open(log_path, readonly=True) as shop:
            assert len(shop.notes) == 0
        assert log_path.read_bytes() == before

    def test_changed_types_alone_write_nothing_until_a_write(self, log_path: Path) -> None:
        """An open whose only catalog change is a collection's types writes nothing until
        something is stored, as a TypedStore's does."""
        fill(log_path)

        class Bumped(Collection[int, Order], version=2, migrations={1: lambda d: d}):
            pass

        class Shop2(Database):
            users: Collection[str, User]
            orders: Bumped

        before = log_path.read_bytes()
        Shop2.open(log_path).close()
        assert log_path.read_bytes() == before


NFC_NAME, NFD_NAME = "caf\u00e9", "cafe\u0301"
"""Two spellings of one name: equal under Unicode NFC normalisation, unequal as str."""


class TestNamesEqualUnderNfc:
    """Two collection names equal under NFC are refused with ValueError, nothing written."""

    def test_two_declarations_are_refused_at_class_creation(self) -> None:
        """A class declaring both spellings raises ValueError."""
        annotations = {NFC_NAME: "Collection[str, int]", NFD_NAME: "Collection[str, int]"}
        with pytest.raises(ValueError, match="equal under Unicode NFC"):
            type("Twice", (Database,), {"__annotations__": annotations})

    def test_a_subclass_declaring_the_other_spelling_is_refused(self) -> None:
        """A subclass adding the other spelling of a base's collection raises ValueError."""
        base = type("Base", (Database,), {"__annotations__": {NFC_NAME: "Collection[str, int]"}})
        with pytest.raises(ValueError, match="equal under Unicode NFC"):
            type("Sub", (base,), {"__annotations__": {NFD_NAME: "Collection[str, int]"}})

    def test_collection_is_refused(self, log_path: Path) -> None:
        """collection() with the other spelling of a collection of the log raises."""
        with Database.open(log_path) as database:
            database.collection(NFC_NAME, str, int)["a"] = 1
        before = log_path.read_bytes()
        with Database.open(log_path) as database:
            with pytest.raises(ValueError, match="equal under Unicode NFC"):
                database.collection(NFD_NAME, str, int)
            assert database.collection_names() == [NFC_NAME]
        assert log_path.read_bytes() == before

    def test_open_declaring_the_other_spelling_is_refused(self, log_path: Path) -> None:
        """An open declaring the other spelling of a collection of the log raises."""
        with Database.open(log_path) as database:
            database.collection(NFC_NAME, str, int)["a"] = 1
        before = log_path.read_bytes()
        other: type[Database] = type(
            "Other", (Database,), {"__annotations__": {NFD_NAME: "Collection[str, int]"}}
        )
        with pytest.raises(ValueError, match="equal under Unicode NFC"):
            other.open(log_path)
        assert log_path.read_bytes() == before

    def test_rename_to_the_other_spelling_of_another_is_refused(self, log_path: Path) -> None:
        """Renaming a collection to the other spelling of another's name raises."""
        with Database.open(log_path) as database:
            database.collection(NFC_NAME, str, int)["a"] = 1
            database.collection("tea", str, int)["a"] = 1
        before = log_path.read_bytes()
        with pytest.raises(ValueError, match="equal under Unicode NFC"):
            Database.open(log_path, renamed_collections={"tea": NFD_NAME})
        assert log_path.read_bytes() == before

    def test_rename_to_its_own_other_spelling_is_allowed(self, log_path: Path) -> None:
        """Renaming a collection to the other spelling of its own name is a rename."""
        with Database.open(log_path) as database:
            database.collection(NFD_NAME, str, int)["a"] = 1
        Database.open(log_path, renamed_collections={NFD_NAME: NFC_NAME}).close()
        with Database.open(log_path) as database:
            assert database.collection_names() == [NFC_NAME]
            assert database.collection(NFC_NAME, str, int)["a"] == 1


class TestRenameCycles:
    """Renames apply all at once: swaps and chains are renames like any other."""

    def test_swap(self, log_path: Path) -> None:
        """{"users": "orders", "orders": "users"} swaps the two collections, durably."""
        fill(log_path)
        Database.open(log_path, renamed_collections={"users": "orders", "orders": "users"}).close()
        with Database.open(log_path) as database:
            assert database.collection_names() == ["orders", "users"]
            assert database.collection("users", int, Order)[1].total == 30
            assert database.collection("orders", str, User)["ada"] == ADA

    def test_chain(self, log_path: Path) -> None:
        """{"orders": "purchases", "users": "orders"} moves each one along."""
        fill(log_path)
        renamed = {"orders": "purchases", "users": "orders"}
        Database.open(log_path, renamed_collections=renamed).close()
        with Database.open(log_path) as database:
            assert database.collection_names() == ["orders", "purchases"]
            assert database.collection("purchases", int, Order)[1].total == 30
            assert database.collection("orders", str, User)["ada"] == ADA

    def test_two_renamed_to_one_name_are_refused(self, log_path: Path) -> None:
        """Renaming two collections to one name raises ValueError, nothing written."""
        fill(log_path)
        before = log_path.read_bytes()
        with pytest.raises(ValueError, match="'users' and 'orders' to one name 'both'"):
            Database.open(log_path, renamed_collections={"users": "both", "orders": "both"})
        assert log_path.read_bytes() == before

    def test_rename_onto_a_collection_that_stays_is_refused(self, log_path: Path) -> None:
        """Renaming onto a collection neither renamed nor dropped raises, nothing written."""
        fill(log_path)
        before = log_path.read_bytes()
        with pytest.raises(ValueError, match=r"'orders' already.*rename or drop it too"):
            Database.open(log_path, renamed_collections={"users": "orders"})
        assert log_path.read_bytes() == before

    def test_swap_that_does_not_fit_the_declared_types_changes_nothing(
        self, log_path: Path
    ) -> None:
        """A swap whose result the opening class cannot read raises SchemaMismatchError,
        nothing written."""
        fill(log_path)
        before = log_path.read_bytes()
        with pytest.raises(SchemaMismatchError):
            Shop.open(log_path, renamed_collections={"users": "orders", "orders": "users"})
        assert log_path.read_bytes() == before


class TestOptionalCollections:
    """A collection annotated as Optional (or in any union) raises TypeError: a database
    always has its collections, and such an annotation was silently not a collection."""

    def test_union_with_none_is_refused_at_class_creation(self) -> None:
        """`users: Collection[str, User] | None` raises TypeError when the class is made."""
        with pytest.raises(TypeError, match=r"Maybe\.users: .*Optional"):

            class Maybe(Database):
                users: Collection[str, User] | None

    def test_optional_object_annotation_is_refused(self) -> None:
        """An annotation that is the object Optional[Collection[...]] raises too."""
        hint = Collection[str, User] | None
        with pytest.raises(TypeError, match="Optional"):
            type("Maybe", (Database,), {"__annotations__": {"users": hint}})

    def test_declared_collection_subclass_in_a_union_is_refused(self) -> None:
        """A union holding a Collection subclass raises TypeError."""

        class Orders(Collection[int, Order]):
            pass

        with pytest.raises(TypeError, match=r"Maybe\.orders"):

            class Maybe(Database):
                orders: Orders | None

    def test_forward_reference_is_refused_at_open(self, log_path: Path) -> None:
        """An annotation that cannot be resolved at class creation is checked at open,
        nothing written."""
        with pytest.raises(TypeError, match=r"MaybeLater\.later: .*Optional"):
            MaybeLater.open(log_path)
        assert not log_path.exists()


class MaybeLater(Database):
    """An Optional collection of a model defined below: checked at open."""

    later: Collection[str, Later] | None


class Later(BaseModel):
    """A model defined after the class that refers to it."""

    name: str


def add_by_open(path: Path) -> None:
    """Open a class that declares a collection the log lacks."""
    Shop3.open(path).close()


def add_by_collection(path: Path) -> None:
    """Declare a collection the log lacks with collection(), then write to it."""
    with Database.open(path) as database:
        database.collection("notes", str, str)["a"] = "b"


def swap(path: Path) -> None:
    """Swap the names of the log's two collections."""
    Database.open(path, renamed_collections={"users": "orders", "orders": "users"}).close()


@pytest.mark.slow
@pytest.mark.parametrize("change", [add_by_open, add_by_collection, swap])
def test_a_cut_at_every_byte_of_a_catalog_change_opens_before_or_after_it(
    log_path: Path, change: Callable[[Path], None]
) -> None:
    """A crash at any byte of the records a catalog change appends opens (writable, the
    torn tail cut) to the catalog before the change, or with the whole record there after
    it, every entry intact under its collection's name."""
    fill(log_path)
    before = log_path.read_bytes()
    change(log_path)
    after = log_path.read_bytes()
    assert after.startswith(before)
    with Database.open(log_path, readonly=True) as database:
        final = database.collection_names()
    assert final != ["users", "orders"]
    cut_path = log_path.with_name("cut.log")
    seen = []
    for cut in range(len(before), len(after) + 1):
        cut_path.write_bytes(after[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torn tail's
            database = Database.open(cut_path)
        with database:
            names = database.collection_names()
            seen.append(names)
            users, orders = ("orders", "users") if names == ["orders", "users"] else NAMES
            assert database.collection(users, str, User)["ada"] == ADA, cut
            assert database.collection(orders, int, Order)[1].total == 30, cut
    assert seen[0] == ["users", "orders"]
    assert seen[-1] == final
    assert all(names in (["users", "orders"], final, [*NAMES, "notes"]) for names in seen)


NAMES = ("users", "orders")


def test_collection_whose_catalog_write_fails_is_not_declared(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """collection() whose catalog record cannot be written (disk full) raises the OSError
    and leaves the collection undeclared, in memory and in the log; asking again works."""
    fill(log_path)
    with Database.open(log_path) as database:
        faulty = FaultyOS()
        monkeypatch.setattr(_fs, "os", faulty)
        fault = faulty.fail("pwrite", path=log_path)
        with pytest.raises(OSError, match="No space"):
            database.collection("notes", str, str)
        assert fault.fired
        assert database.collection_names() == ["users", "orders"]
        notes = database.collection("notes", str, str)
        notes["a"] = "b"
    with Database.open(log_path) as database:
        assert database.collection_names() == ["users", "orders", "notes"]
        assert dict(database.collection("notes", str, str)) == {"a": "b"}
