"""Build the embedded default model: a tiny Llama and its tokenizer, made on the spot.

Nothing is downloaded. The tokenizer is a byte-level BPE trained with `tokenizers` on the text
bundled in `temporal_ray/assets/`, with a chat template; the model is a randomly initialised
Llama of about a million parameters. The result is a normal Hugging Face model directory that
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load, so every stage
treats it exactly like a real checkpoint.
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def bundled_text() -> list[str]:
    """Lines of the bundled corpus and prompts: the tokenizer's training text."""
    assets = resources.files("temporal_ray") / "assets"
    lines = (assets / "tiny_corpus.txt").read_text(encoding="utf-8").splitlines()
    for line in (assets / "tiny_prompts.jsonl").read_text(encoding="utf-8").splitlines():
        lines.append(json.loads(line)["prompt"])
    return [line for line in lines if line.strip()]


def tokenizer_text() -> list[str]:
    """The tokenizer's training text: the bundled lines plus text of the synthetic task domain
    (`miniature.tasks`: prompts, judge justifications, responses to number and digit questions,
    and whole filled judge prompts), so that the miniature experiment's prompts, and above all
    its long judge prompts, take few tokens. No reversed or sorted words: their spellings must
    not become single tokens (digits are single tokens anyway)."""
    from temporal_ray.miniature import tasks as toytask
    from temporal_ray.miniature.toy_data import eft_response, judge_prompt

    rng = random.Random(0)
    judge_template = (resources.files("temporal_ray") / "assets" / "toy_judge.txt").read_text(
        encoding="utf-8")
    lines = bundled_text()
    for task in toytask.make_tasks(2000, seed=12345, families=toytask.KNOWN_FAMILIES):
        quality = rng.choice(list(toytask.Quality))
        response = toytask.corrupt(task, rng, quality)
        lines += [task.prompt, eft_response(quality)]
        if task.family in ("add", "count", "sortd"):  # responses free of word spellings
            lines += [response, judge_prompt(task.prompt, response, judge_template)]
    return lines


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with our special tokens and chat template. Digits stay single
    tokens (as in most LLM tokenizers), which keeps arithmetic learnable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_text(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 128,
                     num_layers: int = 4) -> Path:
    """Write a tiny random Llama with its tokenizer to `out_dir` and return the path."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
