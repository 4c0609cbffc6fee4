"""postgresql:// (also postgres://) — a PostgreSQL server through ADBC's driver (libpq, binary COPY).

backend.py holds the Backend, which wires the others and chooses how each chunk is written;
catalogue.py the tables, their dk schemas and DDL; staging.py the writes through a temporary stage;
reading.py the reads; aside.py the tables loaded aside by many writers at once; session.py a
transaction's state (the pinned connection, savepoints, locks, keys added at commit); connection.py
the pool, statements and driver errors classified; types.py the column types and the Arrow sent and
read for them; foreign.py the schema of a table made outside this package.
"""

from .backend import PostgresBackend

__all__ = ["PostgresBackend"]
