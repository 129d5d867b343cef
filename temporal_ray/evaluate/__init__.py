"""Evaluation of checkpoints: pairwise win rates against a reference model (winrate.py)."""
