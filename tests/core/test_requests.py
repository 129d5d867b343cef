from temporal_ray.core.requests import candidate_requests, derive_seed, to_candidate

PROMPT = {"prompt_id": "p1", "prompt": "What is two plus three?"}


def test_seed_is_stable_and_depends_on_every_part():
    assert derive_seed(0, "present", "p1", 0) == derive_seed(0, "present", "p1", 0)
    seeds = {derive_seed(0, "present", "p1", 0), derive_seed(1, "present", "p1", 0),
             derive_seed(0, "past", "p1", 0), derive_seed(0, "present", "p2", 0),
             derive_seed(0, "present", "p1", 1)}
    assert len(seeds) == 5
    assert all(0 <= s < 2**31 for s in seeds)


def test_one_request_per_sample_with_its_own_seed():
    rows = candidate_requests(PROMPT, "past", samples=3, temperature=0.7, top_p=0.9,
                              max_tokens=32, seed=5)
    assert [r["sample_index"] for r in rows] == [0, 1, 2]
    assert {r["role"] for r in rows} == {"past"}
    assert all(r["messages"] == [{"role": "user", "content": PROMPT["prompt"]}] for r in rows)
    params = [r["sampling_params"] for r in rows]
    assert len({p["seed"] for p in params}) == 3
    assert params[0] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 32,
                         "seed": derive_seed(5, "past", "p1", 0)}


def test_to_candidate_keeps_identity_and_renames_engine_columns():
    row = {**candidate_requests(PROMPT, "present", 1, 1.0, 1.0, 8, 0)[0],
           "generated_text": "Five.", "num_input_tokens": 12, "num_generated_tokens": 3}
    assert to_candidate(row) == {
        "prompt_id": "p1", "prompt": PROMPT["prompt"], "system": "", "role": "present",
        "sample_index": 0, "response": "Five.", "prompt_tokens": 12, "response_tokens": 3}


def test_a_system_prompt_opens_every_request_and_stays_with_the_candidate():
    prompt = {**PROMPT, "system": "Answer in one word."}
    (request,) = candidate_requests(prompt, "past", 1, 0.7, 0.9, 8, 0)
    assert request["messages"] == [{"role": "system", "content": "Answer in one word."},
                                   {"role": "user", "content": PROMPT["prompt"]}]
    # The seed depends on the prompt's id, not its system prompt: old runs sample the same.
    assert request["sampling_params"]["seed"] == derive_seed(0, "past", "p1", 0)
    done = {**request, "generated_text": "Five.", "num_input_tokens": 20,
            "num_generated_tokens": 1}
    assert to_candidate(done)["system"] == "Answer in one word."
