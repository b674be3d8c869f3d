"""Tiny local stand-ins for LASS-Net's two downloads (tests, benchmarks); nothing downloads.

* :func:`bert_mini_folder`: the layout of the Hub repository ``prajjwal1/bert-mini`` (a
  ``config.json`` and an uncased WordPiece ``vocab.txt``, no tokenizer config), with a
  vocabulary trained here on a few sentences and, by default, a tiny BERT configuration.
* :func:`lass_checkpoint`: a random ``LASSNet.pt``: ``{"model": state_dict}`` with the
  DataParallel ``module.`` prefix on every key and the ``embeddings.position_ids`` buffer
  the transformers of 2022 saved, for a small U-Net (:data:`TINY_ARCH`: same key names as
  the published model, small widths).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.clap_tiny import CORPUS

TINY_ARCH = {"widths": [4, 6, 8, 10, 12, 12], "cond_dim": 16}
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64}  # fmt: skip
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocab(vocab_size: int = 300) -> list[str]:
    """An uncased WordPiece vocabulary (``[PAD]`` = 0 like BERT's) trained on :data:`CORPUS`."""
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, show_progress=False, special_tokens=SPECIALS)
    vocab = wp.get_vocab()
    return sorted(vocab, key=vocab.get)


def bert_mini_folder(path: Path, config: dict | None = None, vocab_size: int = 300) -> Path:
    """``config.json`` (BERT, :data:`TINY_BERT` unless ``config``) + ``vocab.txt``."""
    from transformers import BertConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokens = wordpiece_vocab(vocab_size)
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    cfg = BertConfig(**{"vocab_size": len(tokens), "pad_token_id": 0, **(config or TINY_BERT)})
    keep = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size", "hidden_act", "hidden_dropout_prob",
            "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps", "pad_token_id")  # fmt: skip
    # the 2020 file's plain keys (no model_type, no transformers_version)
    (path / "config.json").write_text(json.dumps({k: getattr(cfg, k) for k in keep}, indent=2))
    return path


def lass_model(bert_folder: Path, arch: dict | None = None, seed: int = 0):
    """hsm-bench's LASS-Net module for ``arch`` with random weights and BatchNorm statistics."""
    import torch
    from transformers import BertConfig

    from systems.lass_net import LassNet, randomise_statistics

    system = LassNet(arch=TINY_ARCH if arch is None else arch)
    torch.manual_seed(seed)
    model = system._build(BertConfig.from_pretrained(str(bert_folder), local_files_only=True))
    randomise_statistics(model, seed)
    with torch.no_grad():  # biases that initialisation leaves at 0 (shortcuts, output)
        g = torch.Generator().manual_seed(seed + 1)
        for name, t in model.named_parameters():
            if name.endswith("bias"):
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
    return model.eval()


def lass_checkpoint(path: Path, bert_folder: Path, arch: dict | None = None, seed: int = 0, position_ids: bool = True,
                    model=None) -> Path:  # fmt: skip
    """A random ``LASSNet.pt`` in the official container for ``arch`` (or for ``model``)."""
    import torch

    model = model if model is not None else lass_model(bert_folder, arch, seed)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    if position_ids:
        n = model.text_embedder.bert_layer.config.max_position_embeddings
        state["module.text_embedder.bert_layer.embeddings.position_ids"] = torch.arange(n)[None]
    torch.save({"model": state}, path)
    return Path(path)
