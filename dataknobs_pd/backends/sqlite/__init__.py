"""sqlite:/// — the embedded default, on the standard library's sqlite3.

backend.py holds the Backend (catalogue, write, delete, read in SQL); connection.py the shared
connection, its lock, transactions and savepoints, errors classified, and the ADBC read pool;
types.py the storage classes and values encoded for them and decoded back; names.py the
qualified references and the names refused; foreign.py the schema of a table made outside
this package.
"""

from .backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
