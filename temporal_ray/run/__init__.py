"""The run: a method iterated from M0, stage by stage, in a run directory that resumes.

session.py    start Ray, absolute paths, the config check on resume
iteration.py  one iteration's stages, each published once (IterationStages)
methods.py    the two methods, read line by line against method.md
driver.py     M_{i+1} = iteration(M_i) over the prompt chunks (`temporal-ray run`)
report.py     what a run prints, from the stages' manifests
compare.py    both methods at equal compute from one M0
compute.py    a method's tokens, summed over its stages' counts (equal compute, measured)
sft.py        `temporal-ray sft`: M0 from a base model
status.py     `temporal-ray status`: where a run stands, read from its directory alone
status_table.py  that status as a table
"""
