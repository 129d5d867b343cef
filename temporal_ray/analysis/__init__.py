"""Analysis of any finished run: the paper's measurements (metrics.py), how far chosen and
rejected are apart per iteration (collapse.py), how methods look in tables and plots
(style.py), and means over seeds with bootstrap intervals (bootstrap.py)."""
