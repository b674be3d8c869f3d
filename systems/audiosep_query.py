"""AudioSep's text query: LAION-CLAP's RoBERTa tower with AudioSep's own tokenisation.

The official query encoder (Audio-AGI/AudioSep ``models/clap_encoder.py``, ``CLAP_Encoder``) is
LAION-CLAP HTSAT-base + RoBERTa built from ``music_speech_audioset_epoch_15_esc_89.98.pt``; at
inference only its text half runs (``_get_text_embed``, L78-90):

* tokens: ``RobertaTokenizer('roberta-base')`` with ``padding="max_length", truncation=True,
  max_length=512`` (``tokenizer``, L108-116), not LAION-CLAP's 77 tokens;
* ``RobertaModel(...).pooler_output`` -> ``text_projection`` (Linear 768-512, ReLU, Linear
  512-512) -> L2 normalisation (``models/CLAP/open_clip/model.py`` ``encode_text`` L658-665,
  ``get_text_embedding`` L732-752). The 512-d result conditions the FiLM layers.

A single text is doubled into a batch of two and the first row kept (L79-89): rows do not
interact, so it is not reproduced. :class:`QueryTextEncoder` keeps the attribute names of
:class:`hsm_bench.embedders.laion_clap.LaionCLAPModel` (``text_branch``, ``text_projection``) and
its ``encode_text``, so LAION-CLAP tensors load by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hsm_bench.embedders.laion_clap import LaionCLAPModel, _mlp

MAX_TOKENS = 512

# roberta-base's architecture (its config.json), for random-weight models built offline
ROBERTA_BASE = {"vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}  # fmt: skip


class QueryTextEncoder(nn.Module):
    encode_text = LaionCLAPModel.encode_text

    def __init__(self, text_config: Any, joint_dim: int = 512):
        super().__init__()
        from transformers import AutoModel

        self.text_branch = AutoModel.from_config(text_config)
        self.text_projection = _mlp(int(text_config.hidden_size), int(joint_dim))

    def tokens(self, tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        return tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt")

    def embed(self, tokenizer: Any, texts: list[str]) -> torch.Tensor:
        """``[N, joint_dim]`` L2-normalised query embeddings."""
        device = next(self.parameters()).device
        tok = self.tokens(tokenizer, texts)
        out = self.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        return torch.nn.functional.normalize(out, dim=-1)


def check_text_config(config: Any, folder: Any) -> None:
    """The text folder must hold a RoBERTa with room for 512 tokens (RoBERTa's positions start
    after the padding index)."""
    from hsm_bench.weights import WeightsError

    if getattr(config, "model_type", None) != "roberta":
        raise WeightsError(f"{folder} holds a {getattr(config, 'model_type', None)!r} model; AudioSep's query encoder is RoBERTa (roberta-base)")
    room = int(config.max_position_embeddings) - int(config.pad_token_id) - 1
    if room < MAX_TOKENS:
        raise WeightsError(f"{folder}: its RoBERTa config has {config.max_position_embeddings} positions, too few for "
                           f"AudioSep's {MAX_TOKENS}-token queries (roberta-base has 514)")  # fmt: skip


