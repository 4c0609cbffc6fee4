"""validate= and the checks a table keeps, on tables other tools made and with pandera's own spellings."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.dataset as ds
import pytest

import dataknobs_pd as dk

NON_NEGATIVE = pa.DataFrameSchema({"x": pa.Column(float, pa.Check.ge(0))})


def test_a_table_pandas_made_keeps_checks_and_refuses_bad_rows(tmp_path):
    with sqlite3.connect(tmp_path / "f.db") as c:
        pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0]}).to_sql("t", c, index=False)
    store = dk.connect(f"sqlite:///{tmp_path}/f.db")
    store.set_validation("t", NON_NEGATIVE)
    res = pd.DataFrame({"id": [3, 4], "x": [-1.0, 4.0]}).dk.save(store, "t", if_exists="append")
    assert res.failures["code"].tolist() == ["greater_than_or_equal_to(0)"]
    assert dk.load(store, "t")["x"].tolist() == [1.0, 2.0, 4.0]


def test_a_folder_of_files_another_tool_wrote_cannot_keep_checks(tmp_path):
    data = pyarrow.table({"id": [1, 2], "x": [1.0, 2.0]})
    ds.write_dataset(data, tmp_path / "t", format="parquet")
    store = dk.connect(f"parquet://{tmp_path}")
    with pytest.raises(dk.InvalidArgumentError, match="cannot keep checks.*validate="):
        store.set_validation("t", NON_NEGATIVE)


def test_a_dataframe_model_checks_like_its_schema(tmp_path):
    class Prices(pa.DataFrameModel):
        x: float = pa.Field(ge=0)

    url = f"sqlite:///{tmp_path}/m.db"
    df = pd.DataFrame({"id": [1, 2], "x": [1.0, -2.0]})
    res = df.dk.save(url, "t", validate=Prices)
    assert res.failures["row"].tolist() == [1] and res.failures["error"].tolist() == ["Check"]
    with dk.connect(url) as store:
        store.set_validation("t", Prices)
        assert store.validation("t").to_json() == Prices.to_schema().to_json()


def test_replacing_a_table_keeps_its_checks(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    pd.DataFrame({"id": [1], "x": [1.0]}).dk.save(url, "t")
    with dk.connect(url) as store:
        store.set_validation("t", NON_NEGATIVE)
        res = pd.DataFrame({"id": [5, 6], "x": [-5.0, 6.0]}).dk.save(store, "t", if_exists="replace")
        assert res.failures["row"].tolist() == [0] and store.validation("t").to_json() == NON_NEGATIVE.to_json()
        added = pd.DataFrame({"id": [7], "x": [-7.0], "y": ["new"]}).dk.save(
            store, "t", if_exists="append", new_columns="add"
        )
        assert added.failed == 1 and store.validation("t").to_json() == NON_NEGATIVE.to_json()


def test_validate_takes_only_a_pandera_schema(tmp_path):
    with pytest.raises(dk.InvalidArgumentError, match="DataFrameSchema or DataFrameModel"):
        pd.DataFrame({"id": [1]}).dk.save(f"sqlite:///{tmp_path}/v.db", "t", validate={"x": "ge 0"})


def test_pandera_coerces_for_its_checks_only_and_the_frame_is_written_as_given(tmp_path):
    coerced = pa.DataFrameSchema({"x": pa.Column(float, pa.Check.ge(0), coerce=True)})
    df = pd.DataFrame({"id": [1, 2], "x": ["1.5", "-2"]})  # strings: pandera checks them as floats
    res = df.dk.save(f"sqlite:///{tmp_path}/c.db", "t", validate=coerced)
    assert res.failures["row"].tolist() == [1] and res.failures["code"].tolist() == ["greater_than_or_equal_to(0)"]
    assert df["x"].tolist() == ["1.5", "-2"]  # the caller's frame is left alone
    assert dk.load(f"sqlite:///{tmp_path}/c.db", "t")["x"].tolist() == ["1.5"]


def test_checks_of_the_index_fail_the_rows_whose_label_fails(tmp_path):
    checks = pa.DataFrameSchema({"x": pa.Column(float)}, index=pa.Index(int, pa.Check.lt(100), name="at"))
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.Index([5, 500, 7], name="at"))
    res = df.dk.save(f"sqlite:///{tmp_path}/i.db", "t", validate=checks)
    assert res.failures["row"].tolist() == [1] and res.failures["index"].tolist() == [500]
    assert "index" in res.failures["message"].iloc[0] and res.failures["code"].tolist() == ["less_than(100)"]


def test_without_pandera_validate_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['pandera'] = None\n"
        "import pandas as pd, dataknobs_pd as dk\n"
        "try:\n"
        f"    pd.DataFrame({{'id': [1]}}).dk.save('sqlite:///{tmp_path}/p.db', 't', validate=object())\n"
        "except dk.BackendUnavailableError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'dataknobs-pd[validate]'" in out.stdout
    assert not (tmp_path / "p.db").exists()


def test_validate_leaves_how_pyarrow_reads_time_zones_as_it_was(tmp_path):
    """Importing pandera sets PYARROW_IGNORE_TIMEZONE=1 (pyarrow then reads an aware datetime's wall time as
    UTC, in the whole process): the import validate= makes takes it back."""
    code = (
        "import os, pandas as pd, dataknobs_pd as dk\n"
        "import dataknobs_pd.checks as c\n"
        "try:\n"
        "    c.schema_of(0)\n"
        "except dk.InvalidArgumentError:\n"
        "    pass\n"
        "print(os.environ.get('PYARROW_IGNORE_TIMEZONE'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYARROW_IGNORE_TIMEZONE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "None", out.stdout + out.stderr
