"""IndexedTransaction: a transaction of a collection with indexes.

Each staged write is checked against the transaction's own view of the indexes
(``IndexSet.check_staged``): a write that breaks a rule raises at its call and is not
staged. Its commit goes through the database's write path like any write, where the
net result is planned and checked again. README.md, "Indexes", says what users see.
"""

from __future__ import annotations

from typing import TypeVar

from ._codec import Codec
from ._index import Index, IndexView
from ._index_set import IndexSet, StagedIndexes
from ._records import Write
from ._txn import Transaction, TransactionHost
from ._types import MISSING, K, V

T = TypeVar("T")


class IndexedTransaction(Transaction[K, V]):
    """A :class:`Transaction` whose writes are checked against its view of the indexes."""

    def __init__(self, host: TransactionHost[K], codec: Codec[K, V], indexes: IndexSet[K, V]):
        super().__init__(host, codec)
        self._indexes = indexes
        self._staged_indexes: StagedIndexes[K] = indexes.begin()

    def _stage(self, write: Write[K]) -> None:
        key, _, stored, blob = write
        new = MISSING if blob is None else self._codec.thaw(stored)
        self._indexes.check_staged(self._staged_indexes, key, new)  # raises: nothing staged
        super()._stage(write)

    def index_view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        """Return the lookups of ``index`` as this transaction sees them."""
        self._check_open()
        return IndexView(self._indexes, index, staged=self._staged_indexes, read=self.__getitem__)
