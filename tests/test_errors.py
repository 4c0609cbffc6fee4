"""Errors that do not depend on a store: the classes, URLs, masking, missing extras."""

from __future__ import annotations

import pytest

import dataknobs_pd as dk


def test_all_errors_derive_from_base():
    for cls in (
        dk.TableExistsError,
        dk.TableNotFoundError,
        dk.KeyRequiredError,
        dk.BatchError,
        dk.UnsupportedDtypeError,
        dk.BackendUnavailableError,
        dk.SchemaMismatchError,
    ):
        assert issubclass(cls, dk.DataKnobsError)


def test_unknown_scheme_lists_valid_ones():
    with pytest.raises(dk.BackendUnavailableError, match=r"'nosuch'.*memory://.*sqlite://"):
        dk.connect("nosuch://x")
    with pytest.raises(dk.BackendUnavailableError, match="not a store URL"):
        dk.connect("just-a-path.db")


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    from dataknobs_pd import backends

    monkeypatch.setitem(backends.BUILTIN, "fancy", ("dataknobs_pd_missing_module:Backend", "fancy", "test"))
    with pytest.raises(dk.BackendUnavailableError, match=r"pip install 'dataknobs-pd\[fancy\]'"):
        dk.connect("fancy://x")


def test_password_is_masked():
    from dataknobs_pd.store import mask

    assert mask("postgresql://bob:s3cr%40t@host:5432/db") == "postgresql://bob:***@host:5432/db"
    assert mask("sqlite:///a.db") == "sqlite:///a.db"
    # unescaped "/" and "@" in a password: everything up to the last "@" is the password
    assert mask("postgresql://u:s3c/r3t@h/db") == "postgresql://u:***@h/db"
    assert mask("postgresql://u:s3c@r3t@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask("postgresql://u:a/b@c@h/db?x=1") == "postgresql://u:***@h/db?x=1"
    for url in ("nosuch://u:s3c/r3t@h/db", "nosuch://u:s3c@r3t@h/db"):
        with pytest.raises(dk.BackendUnavailableError) as info:
            dk.connect(url)
        assert "r3t" not in str(info.value) and "s3c" not in str(info.value)
    with pytest.raises(dk.BackendUnavailableError) as info:
        dk.connect("nosuch://bob:hunter2@host/db")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["memory://opts", "sqlite:///:memory:", "parquet:///tmp/dk-opts"])
def test_unknown_connect_options_name_the_valid_ones(url):
    with pytest.raises(dk.InvalidArgumentError, match=r"\['colour'\].*valid"):
        dk.connect(url, colour="red")


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("sqlite+pysqlite:///a.db", "sqlite"),
        ("duckdb+duckdb:///x.duckdb", "duckdb"),
        ("SQLite:///a.db", "sqlite"),
    ],
)
def test_urls_with_a_driver_part_name_the_same_store(url, scheme):
    from dataknobs_pd.urls import scheme_of

    assert scheme_of(url) == scheme


def test_a_sqlalchemy_style_sqlite_url_opens_the_same_file(tmp_path):
    import pandas as pd

    pd.DataFrame({"id": [1, 2]}).dk.save(f"sqlite:///{tmp_path}/a.db", "t")
    assert dk.load(f"sqlite+pysqlite:///{tmp_path}/a.db", "t")["id"].tolist() == [1, 2]
