"""The hf engine called directly (no Ray): real transformers generation on the tiny model."""

import pandas as pd
import pytest
import torch

from temporal_ray.core.requests import candidate_requests
from temporal_ray.engines.hf import HFEngine, PerRowSampler, _top_p


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine(tiny_model)


def batch(prompts, samples=2, temperature=1.0, max_tokens=10, seed=0):
    rows = []
    for prompt in prompts:  # the id (and so the seeds) follows the prompt, not its position
        rows += candidate_requests({"prompt_id": prompt[:12], "prompt": prompt}, "present",
                                   samples, temperature, 0.95, max_tokens, seed)
    return pd.DataFrame(rows)


def test_outputs_have_the_vllm_stage_columns(engine):
    out = engine(batch(["Name a fruit.", "What is the opposite of cold?"]))
    assert len(out) == 4
    assert {"generated_text", "num_input_tokens", "num_generated_tokens"} <= set(out.columns)
    assert all(1 <= n <= 10 for n in out["num_generated_tokens"])
    assert all(isinstance(t, str) for t in out["generated_text"])


def test_a_row_samples_the_same_text_alone_or_in_a_padded_batch(engine):
    short, long = "Hi?", "Describe a quiet morning by the sea in a few calm words, please."
    alone = engine(batch([short], samples=2))
    mixed = engine(batch([long, short], samples=2))
    # The short prompt is left-padded in the mixed batch and shares it with other rows.
    assert list(mixed["generated_text"])[2:] == list(alone["generated_text"])


def test_a_rows_text_does_not_depend_on_the_batch_size_or_order(engine):
    """Why engine.batch_size (and the pool sizes and blocks that regroup rows) may change on
    a resume: 12 sampled rows of prompts of 1 to 12 words, cut into batches of 1, 4 and 12,
    and shuffled, give every row the same text (96 rows at batch sizes 1, 4, 16 and 96 did
    too, 2026-12-06)."""
    words = "the quiet river runs past old stones under a pale morning sky".split()
    rows = batch([f"Q{i} " + " ".join(words[: 1 + (i * 5) % 12]) + "?" for i in range(6)],
                 temperature=0.7, max_tokens=6)

    def texts(frame, size):
        out = pd.concat([engine(frame.iloc[at: at + size]) for at in range(0, len(frame), size)])
        return {(r.prompt_id, r.sample_index): r.generated_text for r in out.itertuples()}

    alone = texts(rows, 1)
    assert len(alone) == 12 and len(set(alone.values())) > 1
    assert texts(rows, 4) == alone and texts(rows, 12) == alone
    assert texts(rows.sample(frac=1.0, random_state=0), 5) == alone


def test_different_seeds_give_different_samples(engine):
    out = engine(batch(["Tell me one fact about the moon."], samples=4))
    assert len(set(out["generated_text"])) > 1


def test_temperature_zero_is_greedy(engine):
    a = engine(batch(["What is two plus three?"], samples=2, temperature=0.0, seed=1))
    b = engine(batch(["What is two plus three?"], samples=1, temperature=0.0, seed=2))
    assert len(set(a["generated_text"]) | set(b["generated_text"])) == 1


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    assert torch.allclose(_top_p(probs, 0.7), torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert torch.equal(_top_p(probs, 1.0), probs)


def test_sampler_masks_all_but_the_drawn_token():
    sampler = PerRowSampler([{"seed": 3, "temperature": 1.0, "top_p": 1.0},
                             {"seed": 3, "temperature": 0.0, "top_p": 1.0}], torch.device("cpu"))
    scores = torch.tensor([[0.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    out = sampler(torch.zeros((2, 1), dtype=torch.long), scores)
    assert (torch.isfinite(out).sum(dim=1) == 1).all()
    assert int(out[1].argmax()) == 1  # greedy row picks the arg-max


def test_rows_naming_an_adapter_generate_with_it_beside_base_rows(engine, tiny_model,
                                                                   lora_checkpoint):
    """LoRA on one base: in one batch, rows naming the adapter get what the merged checkpoint
    generates and rows naming the base what the base generates, in their original order."""
    adapter = f"{lora_checkpoint}/adapter"
    base_rows = batch(["Name a fruit.", "What is the opposite of cold?"])
    adapter_rows = batch(["Name a fruit.", "Count to three."], seed=1)
    mixed = pd.concat([adapter_rows.assign(model=adapter), base_rows.assign(model=tiny_model)]
                      ).sample(frac=1.0, random_state=0).reset_index(drop=True)

    served = HFEngine(tiny_model)(mixed)
    assert list(served["sampling_params"]) == list(mixed["sampling_params"])  # order kept
    by_seed = {p["seed"]: text for p, text in zip(served["sampling_params"],
                                                  served["generated_text"])}
    from_base = engine(base_rows)
    from_merged = HFEngine(lora_checkpoint)(adapter_rows)
    for expected in (from_base, from_merged):
        for params, text in zip(expected["sampling_params"], expected["generated_text"]):
            assert by_seed[params["seed"]] == text
    # The adapter changes what the model writes.
    assert list(from_merged["generated_text"]) != list(engine(adapter_rows)["generated_text"])
