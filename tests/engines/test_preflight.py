"""M0 and prompt checks that run before any cluster work."""

import json
import shutil

import pytest

from temporal_ray.engines.preflight import ModelCheckError, check_model, drop_overlong


def test_the_tiny_model_passes(tiny_model):
    check_model(tiny_model)


def test_missing_directory_says_how_to_build_the_tiny_model(tmp_path):
    with pytest.raises(ModelCheckError, match="tiny-model"):
        check_model(str(tmp_path / "nope"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelCheckError, match="no config.json"):
        check_model(str(tmp_path))


def test_not_a_causal_lm(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelCheckError, match="ForCausalLM"):
        check_model(str(model))


def test_tokenizer_without_chat_template(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "m")
    (model / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((model / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(ModelCheckError, match="no chat template"):
        check_model(str(model))


def test_overlong_prompts_are_dropped_and_counted(tiny_model):
    rows = [{"prompt_id": "short", "prompt": "Hi?"},
            {"prompt_id": "long", "prompt": "word " * 600}]  # tiny context: 512 positions
    kept, dropped = drop_overlong(rows, tiny_model, max_new_tokens=32)
    assert [r["prompt_id"] for r in kept] == ["short"]
    assert dropped == 1


def test_truncation_keeps_the_tail_of_a_prompt_and_fits(tiny_model):
    from temporal_ray.core.rows import chat_messages as user_chat
    from temporal_ray.engines.preflight import ContextBudget

    words = " ".join(f"w{i}" for i in range(900))
    rows = [{"prompt_id": "a", "prompt": "Short question?"},
            {"prompt_id": "b", "prompt": words + " What is 2 + 2?"}]
    kept, not_fitting = drop_overlong(rows, tiny_model, max_new_tokens=16, truncate=True)
    assert not_fitting == 1 and [r["prompt_id"] for r in kept] == ["a", "b"]
    assert kept[0] == rows[0]
    cut = kept[1]["prompt"]
    assert cut.startswith("[...]") and cut.endswith("What is 2 + 2?")
    budget = ContextBudget(tiny_model, 16)
    assert budget.fits([user_chat(cut)]) == [True]
    assert budget.budget - 8 <= budget.lengths([user_chat(cut)])[0] <= budget.budget
    head = budget.shorten(words, user_chat, keep="head")
    assert head.startswith("w0 w1") and head.endswith(" [...]")
    # A model with room for nothing but the answer: nothing can be kept.
    assert ContextBudget(tiny_model, 510).shorten(words, user_chat) is None
