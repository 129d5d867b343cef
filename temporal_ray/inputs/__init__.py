"""The run's inputs, read from the tables users already have: tables.py opens JSONL, JSON,
Parquet and Hugging Face datasets; shapes.py reads a row's prompt (and answer) from plain
fields or chat messages; load.py checks the training prompts, SFT examples and held-out
prompts before any model work."""
