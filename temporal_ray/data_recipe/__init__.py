"""The paper's data recipe: IFT, EFT and per-iteration prompt files built from Open Assistant
and UltraFeedback in their published formats (`temporal-ray prepare-data`).

oasst.py: Open Assistant messages -> first-turn pairs. ultrafeedback.py: UltraFeedback rows ->
scored completions. sources.py: the tables an input path stands for. split.py: the pure
choice of IFT, EFT and prompt rows. publish.py: the output directory, written whole or not at
all. prepare.py: the command's steps. arguments.py: its options.
"""
