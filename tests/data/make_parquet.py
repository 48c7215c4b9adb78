"""Writes the Parquet files tests/value_kinds.rs uploads (run from the repository root):

    python tests/data/make_parquet.py

- penguins.parquet: tests/data/penguins.csv as pandas reads it (`NA` cells are nulls),
  written by pandas with pyarrow's defaults (snappy).
- kinds.parquet: 200 generated rows of each kind a Parquet file types itself (a string
  identifier, a UTC timestamp, a date, a decimal, a boolean, a nullable integer, a float with
  NaN), in two row groups, zstd-compressed; the target `label` is text.
- nested.parquet: a list column, which an upload refuses.
- gzip.parquet: three rows written with gzip, which an upload refuses by name.
- repetitive.parquet: 20,000 rows of one 50-character text, without a dictionary, zstd: a
  file of a few KiB whose pages hold about 1 MB decoded (refused under a smaller body limit).
"""
import datetime as dt
import decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

pd.read_csv("tests/data/penguins.csv").to_parquet("tests/data/penguins.parquet", index=False)

rows = 200
ids = [f"K{i:04d}" for i in range(rows)]
start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
when = [start + dt.timedelta(hours=7 * i + i % 5) for i in range(rows)]
day = [dt.date(2023, 1, 1) + dt.timedelta(days=3 * i) for i in range(rows)]
price = [decimal.Decimal(f"{(i * 37) % 500}.{i % 100:02d}") for i in range(rows)]
flag = [i % 3 == 0 for i in range(rows)]
count = [None if i % 11 == 0 else i % 17 for i in range(rows)]
ratio = [float("nan") if i % 13 == 0 else (i % 9) / 8 for i in range(rows)]
label = ["high" if (p > 250) != f else "low" for p, f in zip(price, flag)]
table = pa.table(
    {
        "id": pa.array(ids, pa.string()),
        "when": pa.array(when, pa.timestamp("us", tz="UTC")),
        "day": pa.array(day, pa.date32()),
        "price": pa.array(price, pa.decimal128(10, 2)),
        "flag": pa.array(flag, pa.bool_()),
        "count": pa.array(count, pa.int64()),
        "ratio": pa.array(ratio, pa.float64()),
        "label": pa.array(label, pa.string()),
    }
)
pq.write_table(table, "tests/data/kinds.parquet", row_group_size=120, compression="zstd")

nested = pa.table({"x": [1.0, 2.0], "tags": [["a"], ["b", "c"]], "y": [0, 1]})
pq.write_table(nested, "tests/data/nested.parquet")

repetitive = pa.table({"note": ["x" * 50] * 20000, "y": [0, 1] * 10000})
pq.write_table(repetitive, "tests/data/repetitive.parquet", compression="zstd", use_dictionary=False)

pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}), "tests/data/gzip.parquet",
               compression="gzip")
