"""Evaluation of a run's checkpoints (`temporal-ray eval`, driver.py): which checkpoints a run
has (checkpoints.py), greedy answers through the engine pools, a pairwise judge in both orders
(pairwise.py) and win rates with length control (winrate.py), HumanEval pass@1 (humaneval.py)
in a sandbox (sandbox.py, and its launcher sandbox_launch.py), the lm-evaluation-harness hook
(lm_eval_hook.py), and the table and plot (report.py)."""
