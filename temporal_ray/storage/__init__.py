"""Storage: files on any filesystem pyarrow opens (files.py), the run directory whose stages
publish atomically (run_dir.py) with each file's size and checksum (integrity.py), the run lock
(lock.py), the checkpoint layout (checkpoints.py) and a training stage's progress record
(progress.py). Below everything that reads or writes a run; knows nothing of models."""
