"""Evaluation of checkpoints: pairwise win rates against a reference model (winrate.py) and
HumanEval pass@1 in a sandbox (humaneval.py)."""
