"""temporal_ray.core.pairs: hand-made score tables -> DPO pairs, checked against method.md.

Self-Rewarding (Baseline): chosen = best, rejected = worst of M_i's samples, ties dropped.
Temporal phase 1 (steps 3-5): chosen = best M_i sample, rejected = worst over M_i and M0.
Temporal phase 2 (steps 9-11): M_f's best replaces the chosen only when max(s_f) > max(s_i);
the rejected stays the phase-1 rejected. A prompt with < 2 scored responses yields no pair.
"""

from __future__ import annotations

from temporal_ray.core.pairs import (
    NO_SCORED_PRESENT,
    SAME_TEXT,
    TIE,
    TOO_FEW_SCORED,
    anchored_rejection,
    best_vs_worst,
    future_guided,
)


def rows(prompt_id: str, role: str, scores: list[float | None], system: str = "") -> list[dict]:
    """One prompt's candidates from one model; sample i has scores[i] (None: unscored)."""
    return [
        {"prompt_id": prompt_id, "prompt": f"prompt {prompt_id}", "system": system, "role": role,
         "sample_index": i, "response": f"{role}-{prompt_id}-{i}", "score": score}
        for i, score in enumerate(scores)
    ]


def nonzero(dropped) -> dict[str, int]:
    """The drop counts that are not zero (a Counter may hold a reason with count 0)."""
    return {reason: count for reason, count in dropped.items() if count}


def by_prompt(pair_set) -> dict[str, dict]:
    return {pair["prompt_id"]: pair for pair in pair_set.pairs}


# ---------------------------------------------------------------- best_vs_worst (baseline)


def test_best_vs_worst_picks_highest_and_lowest():
    result = best_vs_worst(rows("a", "present", [3, 5, 1, 4]))
    assert result.pairs == [{
        "prompt_id": "a", "prompt": "prompt a", "system": "",
        "chosen": "present-a-1", "rejected": "present-a-2",
        "chosen_score": 5.0, "rejected_score": 1.0,
        "chosen_role": "present", "rejected_role": "present",
    }]
    assert sum(result.dropped.values()) == 0


def test_best_vs_worst_fractional_averages():
    # Averages of 3 judge samples: 11/3 > 10/3, so the pair is kept.
    result = best_vs_worst(rows("a", "present", [10 / 3, 11 / 3]))
    pair = by_prompt(result)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("present-a-1", "present-a-0")
    assert pair["chosen_score"] > pair["rejected_score"]


def test_best_vs_worst_equal_extremes_break_by_lowest_sample_index():
    result = best_vs_worst(rows("a", "present", [2, 5, 2, 5]))
    pair = by_prompt(result)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("present-a-1", "present-a-0")


def test_best_vs_worst_all_equal_is_a_tie():
    result = best_vs_worst(rows("a", "present", [3, 3, 3, 3]))
    assert result.pairs == []
    assert nonzero(result.dropped) == {TIE: 1}


def test_best_vs_worst_ignores_unscored_samples():
    result = best_vs_worst(rows("a", "present", [None, 4, None, 2]))
    pair = by_prompt(result)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("present-a-1", "present-a-3")
    assert (pair["chosen_score"], pair["rejected_score"]) == (4.0, 2.0)


def test_best_vs_worst_score_zero_is_a_score_not_missing():
    result = best_vs_worst(rows("a", "present", [None, 0, 1]))
    pair = by_prompt(result)["a"]
    assert (pair["chosen_score"], pair["rejected_score"]) == (1.0, 0.0)


def test_best_vs_worst_too_few_scored():
    table = (rows("one", "present", [4])
             + rows("one_scored", "present", [None, 4, None])
             + rows("none_scored", "present", [None, None]))
    result = best_vs_worst(table)
    assert result.pairs == []
    assert nonzero(result.dropped) == {TOO_FEW_SCORED: 3}


def test_best_vs_worst_counts_drops_by_reason_and_sorts_pairs():
    table = (rows("c", "present", [1, 4])          # kept: 4 vs 1
             + rows("a", "present", [2, 5, 0])     # kept: 5 vs 0
             + rows("b", "present", [3, 3])        # tie
             + rows("d", "present", [None, 2])     # one scored
             + rows("e", "present", [4, None, 4])) # two scored, equal: tie
    result = best_vs_worst(table)
    assert [p["prompt_id"] for p in result.pairs] == ["a", "c"]
    assert by_prompt(result)["a"]["chosen_score"] == 5.0
    assert by_prompt(result)["a"]["rejected_score"] == 0.0
    assert by_prompt(result)["c"]["chosen_score"] == 4.0
    assert by_prompt(result)["c"]["rejected_score"] == 1.0
    assert nonzero(result.dropped) == {TIE: 2, TOO_FEW_SCORED: 1}


def with_texts(candidates: list[dict], texts: list[str]) -> list[dict]:
    """The candidates with these responses (one model sampling the same answer twice)."""
    return [{**row, "response": text} for row, text in zip(candidates, texts, strict=True)]


def test_best_vs_worst_rejected_is_never_the_chosen_text():
    # "A" sampled twice and scored 5 and 1 by the sampled judge: the pair (A, A) has no DPO
    # gradient, so the rejected is the worst other text, B (3).
    table = with_texts(rows("a", "present", [5, 1, 3]), ["A", "A", "B"])
    pair = by_prompt(best_vs_worst(table))["a"]
    assert (pair["chosen"], pair["rejected"]) == ("A", "B")
    assert (pair["chosen_score"], pair["rejected_score"]) == (5.0, 3.0)


def test_best_vs_worst_one_text_is_dropped_as_same_text():
    table = (with_texts(rows("a", "present", [5, 1, 3, 2]), ["A"] * 4)
             + rows("b", "present", [4, 1]))
    result = best_vs_worst(table)
    assert [p["prompt_id"] for p in result.pairs] == ["b"]
    assert nonzero(result.dropped) == {SAME_TEXT: 1}


def test_best_vs_worst_other_text_scoring_as_high_is_a_tie():
    table = with_texts(rows("a", "present", [4, 1, 4]), ["A", "A", "B"])
    result = best_vs_worst(table)
    assert result.pairs == [] and nonzero(result.dropped) == {TIE: 1}


# ----------------------------------------------------- anchored_rejection (temporal phase 1)


def test_anchored_chosen_from_present_rejected_from_both_pools():
    # The past model's 5 is higher than the present's best, but the chosen comes from M_i only;
    # the past model's 1 is the lowest over both pools.
    selections, d1 = anchored_rejection(rows("a", "present", [4, 2, 3]),
                                        rows("a", "past", [1, 5, 2]))
    pair = by_prompt(d1)["a"]
    assert (pair["chosen"], pair["chosen_role"], pair["chosen_score"]) == \
        ("present-a-0", "present", 4.0)
    assert (pair["rejected"], pair["rejected_role"], pair["rejected_score"]) == \
        ("past-a-0", "past", 1.0)
    assert selections["a"].present_best == 4.0
    assert selections["a"].chosen["response"] == "present-a-0"
    assert selections["a"].rejected["response"] == "past-a-0"


def test_anchored_rejected_is_present_when_present_wrote_worse():
    _, d1 = anchored_rejection(rows("a", "present", [4, 0, 3]), rows("a", "past", [2, 3, 1]))
    pair = by_prompt(d1)["a"]
    assert (pair["rejected"], pair["rejected_role"], pair["rejected_score"]) == \
        ("present-a-1", "present", 0.0)


def test_anchored_equal_minimum_prefers_past_model():
    # Present sample 0 and past sample 2 both score 1: the past one is rejected, although the
    # present one has the lower sample index.
    _, d1 = anchored_rejection(rows("a", "present", [1, 4]), rows("a", "past", [3, 2, 1]))
    pair = by_prompt(d1)["a"]
    assert (pair["rejected"], pair["rejected_role"]) == ("past-a-2", "past")
    assert (pair["chosen"], pair["chosen_score"]) == ("present-a-1", 4.0)


def test_anchored_equal_minimum_within_past_prefers_lowest_index():
    _, d1 = anchored_rejection(rows("a", "present", [1, 4]), rows("a", "past", [3, 1, 1]))
    assert by_prompt(d1)["a"]["rejected"] == "past-a-1"


def test_anchored_unscored_samples_ignored():
    _, d1 = anchored_rejection(rows("a", "present", [None, 3, None]),
                               rows("a", "past", [None, 2]))
    pair = by_prompt(d1)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("present-a-1", "past-a-1")


def test_anchored_one_present_and_one_past_is_enough():
    _, d1 = anchored_rejection(rows("a", "present", [4]), rows("a", "past", [2]))
    pair = by_prompt(d1)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("present-a-0", "past-a-0")


def test_anchored_single_present_below_past_is_a_tie():
    # chosen = the only present sample (1); the rejected is never the chosen's own text, so it
    # is the past sample (3): score(chosen) < score(rejected), dropped.
    selections, d1 = anchored_rejection(rows("a", "present", [1]), rows("a", "past", [3]))
    assert d1.pairs == []
    assert nonzero(d1.dropped) == {TIE: 1}
    assert selections["a"].rejected["response"] == "past-a-0"


def test_anchored_all_equal_is_a_tie():
    selections, d1 = anchored_rejection(rows("a", "present", [3, 3]), rows("a", "past", [3, 3]))
    assert d1.pairs == []
    assert nonzero(d1.dropped) == {TIE: 1}
    # The tie is still a selection: phase 2 starts from it.
    assert selections["a"].rejected["role"] == "past"
    assert selections["a"].present_best == 3.0


def test_anchored_no_scored_present():
    selections, d1 = anchored_rejection(rows("a", "present", [None, None]),
                                        rows("a", "past", [1, 4]))
    assert "a" not in selections
    assert d1.pairs == []
    assert nonzero(d1.dropped) == {NO_SCORED_PRESENT: 1}


def test_anchored_prompt_only_in_past():
    selections, d1 = anchored_rejection([], rows("a", "past", [1, 4]))
    assert selections == {}
    assert nonzero(d1.dropped) == {NO_SCORED_PRESENT: 1}


def test_anchored_single_present_no_past_is_too_few():
    selections, d1 = anchored_rejection(rows("a", "present", [4, None]),
                                        rows("a", "past", [None]))
    assert "a" not in selections
    assert nonzero(d1.dropped) == {TOO_FEW_SCORED: 1}


def test_anchored_counts_drops_by_reason():
    present = (rows("a", "present", [4, 2]) + rows("b", "present", [2, 2])
               + rows("c", "present", [None]) + rows("d", "present", [5])
               + rows("e", "present", [3, 1]))
    past = (rows("a", "past", [1, 3]) + rows("b", "past", [2, 3])
            + rows("c", "past", [1, 2]) + rows("d", "past", [None])
            + rows("e", "past", [0, 4]))
    selections, d1 = anchored_rejection(present, past)
    assert [p["prompt_id"] for p in d1.pairs] == ["a", "e"]
    assert by_prompt(d1)["a"]["rejected"] == "past-a-0"
    assert (by_prompt(d1)["e"]["chosen_score"], by_prompt(d1)["e"]["rejected_score"]) == (3, 0)
    assert nonzero(d1.dropped) == {TIE: 1, NO_SCORED_PRESENT: 1, TOO_FEW_SCORED: 1}
    assert sorted(selections) == ["a", "b", "e"]


# --------------------------------------------------------- future_guided (temporal phase 2)


def phase_one(present_scores, past_scores, prompt_id="a"):
    return anchored_rejection(rows(prompt_id, "present", present_scores),
                              rows(prompt_id, "past", past_scores))


def test_future_strictly_better_replaces_chosen():
    selections = phase_one([4, 2], [1, 3])
    d2 = future_guided(selections, rows("a", "future", [3, 5, 5]))
    pair = by_prompt(d2)["a"]
    assert (pair["chosen"], pair["chosen_role"], pair["chosen_score"]) == \
        ("future-a-1", "future", 5.0)
    assert (pair["rejected"], pair["rejected_role"], pair["rejected_score"]) == \
        ("past-a-0", "past", 1.0)


def test_future_equal_to_present_best_keeps_present_chosen():
    selections = phase_one([4, 2], [1, 3])
    pair = by_prompt(future_guided(selections, rows("a", "future", [4, 4])))["a"]
    assert (pair["chosen"], pair["chosen_role"], pair["chosen_score"]) == \
        ("present-a-0", "present", 4.0)


def test_future_worse_keeps_present_chosen():
    selections = phase_one([4, 2], [1, 3])
    pair = by_prompt(future_guided(selections, rows("a", "future", [3, 2])))["a"]
    assert pair["chosen"] == "present-a-0"


def test_future_compared_with_present_best_not_with_rejected():
    # Future 3.5 beats the rejected (1) but not the present best (4): no replacement.
    selections = phase_one([4, 2], [1, 3])
    pair = by_prompt(future_guided(selections, rows("a", "future", [3.5])))["a"]
    assert (pair["chosen"], pair["chosen_score"]) == ("present-a-0", 4.0)


def test_future_keeps_phase_one_rejected_even_when_future_wrote_worse():
    # A future sample scores 0, below the phase-1 rejected (1): D2's rejected is still the
    # phase-1 rejected (step 10).
    selections = phase_one([4, 2], [1, 3])
    pair = by_prompt(future_guided(selections, rows("a", "future", [0, 5])))["a"]
    assert (pair["chosen"], pair["chosen_score"]) == ("future-a-1", 5.0)
    assert (pair["rejected"], pair["rejected_role"], pair["rejected_score"]) == \
        ("past-a-0", "past", 1.0)


def test_future_unscored_or_absent_keeps_present_chosen():
    selections = anchored_rejection(rows("a", "present", [4, 2]) + rows("b", "present", [4, 2]),
                                    rows("a", "past", [1, 3]) + rows("b", "past", [1, 3]))
    d2 = future_guided(selections, rows("a", "future", [None, None]))   # no rows for "b"
    assert by_prompt(d2)["a"]["chosen"] == "present-a-0"
    assert by_prompt(d2)["b"]["chosen"] == "present-b-0"
    assert sum(d2.dropped.values()) == 0


def test_future_upgrade_rescues_a_phase_one_tie():
    # Phase 1: all scores 3 -> tie, not in D1. Phase 2: M_f's 4 > max(s_i) = 3 becomes the
    # chosen against the phase-1 rejected (past, 3): 4 > 3, so the prompt is in D2.
    selections = phase_one([3, 3], [3, 3])
    d2 = future_guided(selections, rows("a", "future", [2, 4]))
    pair = by_prompt(d2)["a"]
    assert (pair["chosen"], pair["rejected"]) == ("future-a-1", "past-a-0")
    assert (pair["chosen_score"], pair["rejected_score"]) == (4.0, 3.0)


def test_future_phase_one_tie_without_upgrade_stays_a_tie():
    selections = phase_one([3, 3], [3, 3])
    d2 = future_guided(selections, rows("a", "future", [3, 1]))
    assert d2.pairs == []
    assert nonzero(d2.dropped) == {TIE: 1}


def test_anchored_rejected_skips_past_copies_of_the_chosen_text():
    # M0 also wrote the chosen answer "A" (scored 2, the lowest): the rejected is the worst
    # other text, past "B" (3).
    present = with_texts(rows("a", "present", [4, 3.5]), ["A", "C"])
    past = with_texts(rows("a", "past", [2, 3]), ["A", "B"])
    _, d1 = anchored_rejection(present, past)
    pair = by_prompt(d1)["a"]
    assert (pair["chosen"], pair["rejected"], pair["rejected_role"]) == ("A", "B", "past")


def test_anchored_one_text_over_both_pools_is_same_text_and_stays_dropped():
    present = with_texts(rows("a", "present", [4, 3]), ["A", "A"])
    past = with_texts(rows("a", "past", [1]), ["A"])
    selections, d1 = anchored_rejection(present, past)
    assert "a" not in selections and nonzero(d1.dropped) == {SAME_TEXT: 1}
    d2 = future_guided(anchored_rejection(present, past),
                       with_texts(rows("a", "future", [5]), ["D"]))
    assert d2.pairs == [] and nonzero(d2.dropped) == {SAME_TEXT: 1}


def test_future_best_with_the_rejected_text_is_same_text():
    # M_f's best (5) is the very answer phase 1 rejected: no pair.
    present = with_texts(rows("a", "present", [4, 3]), ["A", "C"])
    past = with_texts(rows("a", "past", [1]), ["B"])
    d2 = future_guided(anchored_rejection(present, past),
                       with_texts(rows("a", "future", [5]), ["B"]))
    assert d2.pairs == [] and nonzero(d2.dropped) == {SAME_TEXT: 1}


def test_future_prompt_without_phase_one_selection_is_dropped():
    # "z" has a single scored sample in phase 1 (too few): it stays dropped in phase 2.
    selections = anchored_rejection(rows("a", "present", [4, 2]) + rows("z", "present", [5]),
                                    rows("a", "past", [1, 3]) + rows("z", "past", [None]))
    future = rows("a", "future", [5]) + rows("z", "future", [5, 1])
    d2 = future_guided(selections, future)
    assert [p["prompt_id"] for p in d2.pairs] == ["a"]
    assert nonzero(d2.dropped) == {TOO_FEW_SCORED: 1}


def test_future_every_prompt_is_kept_or_counted():
    present = (rows("a", "present", [4, 2]) + rows("b", "present", [2, 2])
               + rows("c", "present", [5]) + rows("d", "present", [3, 3]))
    past = (rows("a", "past", [1, 3]) + rows("b", "past", [2, 3])
            + rows("c", "past", [None]) + rows("d", "past", [3, 3]))
    future = (rows("a", "future", [5, 1]) + rows("b", "future", [2, 1])
              + rows("c", "future", [5, 5]) + rows("d", "future", [4, None]))
    selections = anchored_rejection(present, past)
    assert [p["prompt_id"] for p in selections.d1.pairs] == ["a"]
    d2 = future_guided(selections, future)
    # a: future 5 > 4 replaces the chosen; b: future 2 = present best 2 -> tie with rejected 2;
    # c: no phase-1 selection; d: future 4 > 3 rescues the phase-1 tie.
    assert [p["prompt_id"] for p in d2.pairs] == ["a", "d"]
    assert by_prompt(d2)["a"]["chosen"] == "future-a-0"
    assert by_prompt(d2)["d"]["chosen"] == "future-d-0"
    assert nonzero(d2.dropped) == {TIE: 1, TOO_FEW_SCORED: 1}
    assert len(d2.pairs) + sum(d2.dropped.values()) == 4


def test_future_does_not_mutate_phase_one_selections():
    selections = phase_one([4, 2], [1, 3])
    future_guided(selections, rows("a", "future", [5]))
    assert selections.selections["a"].chosen["response"] == "present-a-0"
    assert selections.selections["a"].present_best == 4.0


def test_future_drop_reason_of_prompt_with_no_scored_present_sample():
    # Phase 1 drops "a" as no_scored_present; the same prompt's phase-2 drop is counted too.
    selections = anchored_rejection(rows("a", "present", [None, None]),
                                        rows("a", "past", [1, 4]))
    assert nonzero(selections.d1.dropped) == {NO_SCORED_PRESENT: 1}
    d2 = future_guided(selections, rows("a", "future", [5, 2]))
    assert d2.pairs == []
    assert sum(d2.dropped.values()) == 1


def test_future_drop_reason_matches_phase_one_reason():
    selections = anchored_rejection(rows("a", "present", [None, None]),
                                        rows("a", "past", [1, 4]))
    d2 = future_guided(selections, rows("a", "future", [5, 2]))
    assert nonzero(d2.dropped) == nonzero(selections.d1.dropped) == {NO_SCORED_PRESENT: 1}


def test_phase_two_from_stored_selections_equals_phase_two_from_phase_one(tmp_path):
    """Phase 2 starts from what phase 1 stored (selections and drop counts, through Parquet):
    the same D2 as from phase 1 in memory, ties rescued and drop reasons carried included."""
    from temporal_ray.core.pairs import phase_one_from, selection_rows
    from temporal_ray.storage.files import read_rows, write_rows

    present = (rows("a", "present", [4, 2], "Be brief.") + rows("b", "present", [3, 3])
               + rows("c", "present", [None]) + rows("d", "present", [2.5, 1]))
    past = (rows("a", "past", [1, 3], "Be brief.") + rows("b", "past", [3, 3])
            + rows("c", "past", [1, 2]) + rows("d", "past", [2.5]))
    future = (rows("a", "future", [5, 1], "Be brief.") + rows("b", "future", [4])
              + rows("d", "future", [2]))
    first = anchored_rejection(present, past)
    write_rows(selection_rows(first), str(tmp_path / "selections.parquet"))
    stored = phase_one_from(read_rows(str(tmp_path / "selections.parquet")),
                            dict(first.d1.dropped))
    assert sorted(stored.selections) == sorted(first.selections) == ["a", "b", "d"]
    in_memory, from_disk = future_guided(first, future), future_guided(stored, future)
    assert from_disk.pairs == in_memory.pairs and len(in_memory.pairs) == 3
    assert [p["system"] for p in from_disk.pairs] == ["Be brief.", "", ""]  # kept with its prompt
    assert nonzero(from_disk.dropped) == nonzero(in_memory.dropped) == {NO_SCORED_PRESENT: 1}
