"""Results: the column registry (columns.py), the Parquet store, the dataset, statistics,
summaries, diff, history. docs/architecture.md."""
