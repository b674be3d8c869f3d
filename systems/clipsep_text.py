"""CLIPSep's text query: the prompt templates and the CLIP ViT-B/32 text encoder.

The official code embeds queries with OpenAI's ``clip`` package (``clip.tokenize`` +
``CLIP.encode_text``): the final LayerNorm state at the end-of-text token times the text
projection, not normalised. transformers' ``CLIPTextModelWithProjection`` computes the same
from the ``openai/clip-vit-base-patch32`` folder (``benchmarks/compare_clipsep_official.py``
checks both on shared random weights and the real BPE vocabulary).

Templates (sony/CLIPSep, ``clipsep/evaluate.py``; the README evaluates with ``--prompt_ens``):

* class labels: the mean of the unnormalised embeddings of five prompts (``get_text_prompts``,
  L140-142; "a photo of the small {}." appears twice there, so it counts twice);
* sentences: "a photo of {}" (``get_text_prompt``, L136-138; the paper's Fig. 2: "At test
  time, we instead use a text query in the form of 'a photo of [user input query]'").

Texts are cleaned as ``clip``'s tokenizer does (HTML entities unescaped twice, runs of white
space collapsed, stripped; lower-casing is the tokenizer's) except for ``ftfy.fix_text``,
which only repairs mis-decoded Unicode. Prompts longer than CLIP's 77 tokens are cut with the
end-of-text token kept last (``clip.tokenize(truncate=True)``; the default would raise).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import torch

from hsm_bench.weights import CheckpointError

CONTEXT = 77
EMBED_DIM = 512
LABEL_ENSEMBLE = ("a photo of {}.", "a photo of the small {}.", "a photo of the small {}.",
                  "a low resolution photo of a {}.", "a photo of many {}.")  # fmt: skip
CAPTION_TEMPLATE = "a photo of {}"


def templates(spec: str) -> tuple[str, ...]:
    """``"ensemble"`` -> :data:`LABEL_ENSEMBLE`; ``"a|b"`` -> several templates; else one."""
    out = LABEL_ENSEMBLE if spec == "ensemble" else tuple(spec.split("|"))
    for t in out:
        if t.count("{}") != 1:
            raise ValueError(f"query template {t!r} must hold '{{}}' once (where the caption or label goes)")
    return out


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


def prompts(text: str, forms: tuple[str, ...]) -> list[str]:
    return [clean(t.replace("{}", text)) for t in forms]


def byte_level_tokenizer():
    """A CLIP tokenizer built here: CLIP's byte alphabet (each byte also with the ``</w>``
    word-end mark) and its two special tokens, no merges, so every word is spelled out
    character by character. For speed runs and tests; the real one is the folder's."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def random_text_model(tokenizer: Any, seed: int = 0, **config: Any):
    """``CLIPTextModelWithProjection`` at the ViT-B/32 text size (or ``config``) with random weights."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(**{"projection_dim": EMBED_DIM, "bos_token_id": tokenizer.bos_token_id,
                            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, **config})  # fmt: skip
    return CLIPTextModelWithProjection(cfg).eval()


def load_text_encoder(folder: Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a transformers CLIP folder; every text weight must be there."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the vision tower's weights are reported as unused: expected
    hf_logging.disable_progress_bar()
    try:
        model, report = CLIPTextModelWithProjection.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, dtype=torch.float32
        )
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder} is not a transformers CLIP folder: {' '.join(str(exc).split())}") from exc
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    bad = sorted(report.get("missing_keys") or []) + [str(k) for k in report.get("mismatched_keys") or []]
    if bad:
        raise CheckpointError(f"{folder} lacks CLIP text-encoder weights: {len(bad)} missing or mis-shaped "
                              f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")  # fmt: skip
    if model.config.projection_dim != EMBED_DIM:
        raise CheckpointError(f"{folder}: text projection of {model.config.projection_dim} dimensions; CLIPSep's "
                              f"query network takes {EMBED_DIM} (CLIP ViT-B/32)")  # fmt: skip
    return model.eval(), tokenizer


@torch.no_grad()
def encode(model: Any, tokenizer: Any, texts: list[str], device: torch.device) -> torch.Tensor:
    """``[len(texts), 512]`` float32 embeddings, each padded to CLIP's 77 positions.

    No attention mask, as in ``encode_text``: the causal mask already keeps the padding after
    the end-of-text token from reaching it.
    """
    ids = tokenizer(texts, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")["input_ids"]
    return model(input_ids=ids.to(device)).text_embeds.float()
