"""delta:// — one Delta Lake table per table name, through deltalake (delta-rs): every Delta reader
(Spark, DuckDB, Polars, Trino) reads them with natural types, and dk.load gets the exact dtypes back.

Layout: ROOT/<table>/ is a Delta table (table names percent-encoded into folder names, as in the
file stores). The dk schema rides in the commit info of every commit this package makes
(`dataknobs_pd.schema`); delta-rs refuses custom keys in the table configuration. A Delta
table written by another tool is read with a schema of its natural types, and is written with
its own columns, types and partitions (no column is added to it). What Delta lacks
(unsigned ints, durations, nanoseconds, zone names, units): physical.py. A keyless table keeps
insertion order by the names of its files (order.py).

One call = one Delta commit. A call's rows are checked and staged in memory (staging.py;
savepoints only drop what was staged since); when its transaction ends, the staged changes
become ONE commit (commit.py): a new table or a replaced one is one write (overwrite keeps the
history); rows appended to a table that nothing else changes are one append; updates and deletes
rewrite the data files holding the touched rows: the new files are written by delta-rs into a
stage folder of the table (with their statistics), and one commit adds them and removes the
files they replace. New columns (new_columns="add") join Delta's schema in that same commit;
files written before lack them and read as nulls. A crash, an error or a dry run before the
commit leaves the table, its schema and its history at their last version; readers read whole
versions.

Modules: backend.py (the catalogue, transactions, writes, reads), staging.py (what a transaction
holds), commit.py, checks.py (CHECK and NOT NULL on staged rows), reading.py, history.py
(versions, time travel), physical.py (types), order.py (insertion order), location.py (paths
for fsspec and delta-rs, on the store's folder: ../folder.py, shared with the file stores).

Row isolation happens before the commit: which keys exist comes from one read of the table's
keys (file and row of each), so an append's existing keys and an update's missing keys are
facts, not failures of the commit; the table's CHECK constraints and NOT NULL columns are
evaluated on the staged rows (checks.py) and a refusal is a WriteError the engine narrows down.

Concurrency: every commit carries a Delta app transaction (txn action) of "dataknobs_pd", so
that Delta's conflict check fails any commit of ours that another of ours got in before
(delta-rs commits each log entry put-if-absent, on S3 with a conditional put). The loser's
ConcurrentWriteError makes the engine run the call again on the new version: every row is
written once or reported.
"""

from .backend import DeltaBackend

__all__ = ["DeltaBackend"]
