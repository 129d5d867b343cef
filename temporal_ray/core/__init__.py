"""The core: the algorithm's pure pieces, tested on hand-worked numbers. Nothing here imports
ray, vllm or deepspeed, or names an experiment.

roles.py      past, present, future
prompts.py    the prompt file, checked, cut into iteration chunks
requests.py   prompt rows -> engine requests (with their seeds), engine outputs -> candidates
rubric.py     the LLM-as-a-Judge prompt
judging.py    judgement texts -> scores, and the counts of what failed
pairs.py      scored candidates -> DPO pairs (best-vs-worst, anchored, future-guided)
dpo_loss.py   sequence log-probs and the DPO loss variants
batching.py   tokenised pairs, length buckets, rank shards (SFT and DPO share them)
sft_data.py   SFT examples: the JSONL files, tokenising, the response-token loss
"""
