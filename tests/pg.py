"""A real PostgreSQL server for the tests: one database for the session, one schema per store.

The server comes from DK_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
The session database is created on first use and dropped when the session ends; a server that
cannot be reached fails the tests that need it (never skips them).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

ENV = "DK_TEST_POSTGRES_URL"
DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"

_session: dict = {}  # name, url and admin connection of the session database


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT


def with_database(url: str, database: str, schema: str | None = None) -> str:
    """`url` pointed at another database, optionally with a search_path of one schema."""
    parts = urlsplit(url)
    query = parts.query
    if schema:
        query = "&".join(x for x in [query, "options=" + quote(f"-csearch_path={schema}")] if x)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, ""))


def admin(url: str | None = None):
    """An autocommit ADBC connection (to the server's own database unless `url` says otherwise)."""
    import adbc_driver_postgresql.dbapi as pgdb

    from dataknobs_pd.store import mask

    target = url or server_url()
    try:
        return pgdb.connect(target.replace("postgres://", "postgresql://", 1), autocommit=True)
    except Exception as e:
        raise RuntimeError(
            f"no PostgreSQL server reachable at {mask(target)} ({e}); start one or set {ENV}") from e


def execute(conn, sql: str, params=None) -> list:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception:  # noqa: BLE001 - statements without a result
            return []
    finally:
        cur.close()


def session_database() -> str:
    """The URL of this test session's own database (created on first call)."""
    if "url" not in _session:
        name = f"dk_test_{uuid.uuid4().hex[:12]}"
        conn = admin()
        try:
            execute(conn, f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        _session["name"], _session["url"] = name, with_database(server_url(), name)
    return _session["url"]


def new_store_url(tmp_path=None) -> str:
    """A fresh, empty schema in the session database, as a store URL (a factory of tests/stores.py)."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    if "admin" not in _session:  # one connection for the session: connecting costs more than the schema
        _session["admin"] = admin(session_database())
    execute(_session["admin"], f'CREATE SCHEMA "{schema}"')
    return with_database(server_url(), _session["name"], schema)


def drop_session_database() -> None:
    """Drop the session database, closing what is still connected to it."""
    if "name" not in _session:
        return
    from dataknobs_pd.store import _close_all

    _close_all()
    if "admin" in _session:
        _session.pop("admin").close()
    conn = admin()
    try:
        execute(conn, f'DROP DATABASE IF EXISTS "{_session.pop("name")}" WITH (FORCE)')
    finally:
        conn.close()
    _session.pop("url", None)
