"""The paper in miniature (`temporal-ray miniature`, `make run`): one experiment, on top of
everything else, that nothing below it knows of.

config.py        its config section, and the full config with it (what the CLI loads)
tasks.py         the synthetic task domain with exact ground truth
toy_data.py      its data files: IFT, EFT, prompts, held-out tasks, judge checks
tiny_model.py    the tiny Llama and tokenizer built on the spot (also `temporal-ray tiny-model`)
rules.py         a rule judge for the tiny model
ground_truth.py  held-out accuracy and judge agreement per checkpoint
report.py        the comparison report: tables, findings, plot
recipe.py        the recipe: data, M0, both methods, checks, report
study.py         `temporal-ray study`: the recipe over N seeds, resumable per seed
study_summary.py means and 95% intervals over seeds, the paired comparison, the claims
study_report.py  study.md and study.png
"""
