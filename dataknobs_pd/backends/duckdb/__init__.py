"""duckdb:/// — DuckDB, the embedded analytical store: `duckdb:///path/file.duckdb`, `duckdb:///:memory:`.

Columns get DuckDB's own types where they hold the values exactly (columns.py), so that other
DuckDB users query them naturally; the dk schema sits in `_dk_schema` beside the tables. Chunks
go in as Arrow (registered with DuckDB, written by INSERT/UPDATE/DELETE ... FROM the Arrow scan)
and come out as Arrow record batches, with columns, filters, order and limit in the SQL.

DuckDB has no savepoints, and a statement that fails aborts the whole transaction. So a write
finds out everything that could make it fail before it writes (checks.py): which keys exist
(one semi-join), which rows a CHECK constraint refuses (evaluated in a second connection); values
DuckDB cannot hold exactly fail at `prepare`. A statement that fails anyway ends the call with
a StorageError, nothing of it written.

DuckDB lets one process at a time open a file for writing, and holds it while open: a store
holds the file from connect() to close(). Another process's connect() waits up to `timeout`
seconds (default 5) for it, then raises StorageError; `read_only=True` lets several readers
share a file nobody writes. Threads of one process share the database, each with its own
connection; writers of one table take turns (claim).

backend.py holds the Backend: the transactions and the writes, wiring connection.py (the file opened,
a connection per thread, statements and DuckDB's errors), catalogue.py (the tables, their dk schemas
and DDL) and reading.py (the reads).
"""

from .backend import DuckDBBackend

__all__ = ["DuckDBBackend"]
