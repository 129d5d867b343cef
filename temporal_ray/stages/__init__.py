"""Stages: each turns files into files (path -> path), and knows nothing of methods.

generate.py   prompts -> K sampled candidates per prompt and role
judge.py      candidates -> the same rows with a score
dpo.py        pairs + start model -> a new checkpoint (a Ray Train + DeepSpeed job)
sft.py        examples + base model -> M0 (the same machinery, another loss)
"""
