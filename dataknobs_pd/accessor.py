"""The `dk` DataFrame accessor. Thin and stateless: pandas 3 builds a new one on every access."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import api
from .result import BatchResult
from .store import Store


@pd.api.extensions.register_dataframe_accessor("dk")
class DkAccessor:
    """`df.dk.save`, `df.dk.update_batch`, `df.dk.delete` and `pd.DataFrame.dk.load`: `dk.save`,
    `dk.update_batch`, `dk.delete` and `dk.load` with the frame in first place."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def save(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        if_exists: str = "fail",
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        new_columns: str = "fail",
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Write the frame to a table: create it, replace it, append to it, or upsert into it by key.

        Args:
            store: A Store, a store's URL (`"sqlite:///flights.db"`, ...: see `dk.connect`), or a connection
                you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
            table: The table's name.
            key: The key column(s), a name or a list of names, as columns or index levels. Default: the
                table's own key when it exists; else a column `id`; else `record_id`; else the named index.
            if_exists: When the table exists: `"fail"` (`TableExistsError`, nothing written), `"replace"`,
                `"append"` (a key already there fails its row) or `"upsert"` (insert new keys, update others).
            errors: `"collect"` writes every row that can be written and reports each one that cannot;
                `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
            chunksize: Rows per write (default: the store's own).
            progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
            dry_run: Do everything, asking the store too, then leave the table as it was: the result says
                what would have happened (`res.changes`); `res.commit()` runs it for real.
            track_changes: Also on a real call, record `res.changes` (each written row's action and changed
                values); it costs one read of the touched keys.
            new_columns: `"fail"` (`SchemaMismatchError` for a frame column the table lacks, nothing
                written) or `"add"` (add such columns; rows already stored read back as missing in them).
            quarantine: Keep the failed rows in the table's quarantine (`dk.quarantined` reads them back).
            max_errors: More failed rows than this and nothing is written (`BatchError`).
            max_error_rate: Failed rows above this fraction of the rows and nothing is written.
            undoable: Keep the before-images of the rows changed, for `dk.undo(store, table, res.batch_id)`.
            validate: A pandera schema to check the frame against first: failing rows fail at stage
                `validate` (see `dk.save`).

        Returns:
            The report (`BatchResult`): counts, `failures` one line per failed row, `failed_rows()`.
        """
        return api.save(
            self._df,
            store,
            table,
            key=key,
            if_exists=if_exists,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )

    def update_batch(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        insert_missing: bool = False,
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        new_columns: str = "fail",
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Change the frame's columns on the rows of the table with the same key; the other columns stay.

        Args:
            store: A Store, a store's URL (`"sqlite:///flights.db"`, ...: see `dk.connect`), or a connection
                you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
            table: The table's name.
            key: The key column(s), a name or a list of names, as columns or index levels. Default: the
                table's own key when it exists; else a column `id`; else `record_id`; else the named index.
            insert_missing: Insert the rows whose key is not in the table instead of failing them (stage
                `"missing"`).
            errors: `"collect"` writes every row that can be written and reports each one that cannot;
                `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
            chunksize: Rows per write (default: the store's own).
            progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
            dry_run: Do everything, asking the store too, then leave the table as it was: the result says
                what would have happened (`res.changes`); `res.commit()` runs it for real.
            track_changes: Also on a real call, record `res.changes` (each written row's action and changed
                values); it costs one read of the touched keys.
            new_columns: `"fail"` (`SchemaMismatchError` for a frame column the table lacks, nothing
                written) or `"add"` (add such columns; rows already stored read back as missing in them).
            quarantine: Keep the failed rows in the table's quarantine (`dk.quarantined` reads them back).
            max_errors: More failed rows than this and nothing is written (`BatchError`).
            max_error_rate: Failed rows above this fraction of the rows and nothing is written.
            undoable: Keep the before-images of the rows changed, for `dk.undo(store, table, res.batch_id)`.
            validate: A pandera schema to check the frame against first: failing rows fail at stage
                `validate` (see `dk.save`).

        Returns:
            The report (`BatchResult`): counts, `failures` one line per failed row, `failed_rows()`.
        """
        return api.update_batch(
            self._df,
            store,
            table,
            key=key,
            insert_missing=insert_missing,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )

    def delete(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Delete the rows of the table whose key is in the frame; keys not in the table fail as `"missing"`.

        Args:
            store: A Store, a store's URL (`"sqlite:///flights.db"`, ...: see `dk.connect`), or a connection
                you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
            table: The table's name.
            key: The key column(s), a name or a list of names, as columns or index levels. Default: the
                table's own key when it exists; else a column `id`; else `record_id`; else the named index.
            errors: `"collect"` writes every row that can be written and reports each one that cannot;
                `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
            chunksize: Rows per write (default: the store's own).
            progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
            dry_run: Do everything, asking the store too, then leave the table as it was: the result says
                what would have happened (`res.changes`); `res.commit()` runs it for real.
            track_changes: Also on a real call, record `res.changes` (each written row's action and changed
                values); it costs one read of the touched keys.
            quarantine: Keep the failed rows in the table's quarantine (`dk.quarantined` reads them back).
            max_errors: More failed rows than this and nothing is written (`BatchError`).
            max_error_rate: Failed rows above this fraction of the rows and nothing is written.
            undoable: Keep the before-images of the rows changed, for `dk.undo(store, table, res.batch_id)`.
            validate: A pandera schema to check the frame against first: failing rows fail at stage
                `validate` (see `dk.save`).

        Returns:
            The report (`BatchResult`): counts, `failures` one line per failed row, `failed_rows()`.
        """
        return api.delete(
            self._df,
            store,
            table,
            key=key,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )

    load = staticmethod(api.load)  # usable as pd.DataFrame.dk.load(store, table, ...)


@pd.api.extensions.register_series_accessor("dk")
class DkSeriesAccessor:
    """`series.dk.save(...)` and the other writing calls, which take DataFrames: each says to pass
    `series.to_frame()` (an InvalidArgumentError), as `dk.save(series, ...)` does."""

    def __init__(self, series: pd.Series):
        self._series = series

    def save(self, store: Store | str, table: str, **options) -> BatchResult:
        """Refused with the way to write the Series: `series.to_frame().dk.save(store, table, ...)`."""
        return api.save(self._series, store, table, **options)

    def update_batch(self, store: Store | str, table: str, **options) -> BatchResult:
        """Refused with the way to write the Series: `series.to_frame().dk.update_batch(store, table, ...)`."""
        return api.update_batch(self._series, store, table, **options)

    def delete(self, store: Store | str, table: str, **options) -> BatchResult:
        """Refused with the way to write the Series: `series.to_frame().dk.delete(store, table, ...)`."""
        return api.delete(self._series, store, table, **options)
