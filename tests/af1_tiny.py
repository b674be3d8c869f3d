"""Tiny random-weight stand-ins for the three Audio Flamingo 1 downloads.

* :func:`opt_folder`: an ``facebook/opt-iml-max-1.3b``-like folder: an OPT config at toy
  sizes, random weights and a word-level tokenizer with OPT's special tokens (``<s>``,
  ``<pad>``, ``</s>``, ``<unk>`` = 0-3, BOS ``</s>`` prepended like the real GPT-2 BPE
  tokenizer does), all via ``save_pretrained``. As in the real folder, the embedding matrix
  has more rows than the tokenizer has tokens.
* :func:`clapcap_checkpoint`: ``{"model": {...}}`` with ``clap.*`` = an MS-CLAP 2023 audio
  encoder (tiny HTS-AT) and stand-ins for the captioner's ``clap_project.*`` / ``gpt.*``.
* :func:`foundation_checkpoint`: ``{"model_state_dict": {...}}`` whose key names and shapes
  are written out here from the official module definitions (``helpers.py``, ``flamingo.py``,
  ``flamingo_lm.py``), not taken from hsm-bench's modules, with non-zero gates so the
  cross-attention matters.
"""

from __future__ import annotations

from pathlib import Path

WORDS = "the task is audio captioning describe sound in a sentence answer . : dog barks".split()
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
TINY_ARCH = {"n_head": 2, "n_layers": 2, "d_inner": 24, "max_num_media": 128, "xattn_heads": 2, "xattn_dim_head": 8,
             "ff_mult": 4, "clap": {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "num_classes": 5,
                                    "d_proj": 16}}  # fmt: skip
AUDIO_DIM = 16
EXTRA_ROWS = 5  # OPT's embedding matrix is larger than its tokenizer (50272 vs 50265 rows)


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(WORDS)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def opt_config(hidden: int = 32, layers: int = 3):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=len(SPECIALS) + len(set(WORDS)) + EXTRA_ROWS, hidden_size=hidden, num_hidden_layers=layers,
                     ffn_dim=2 * hidden, num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=hidden,
                     pad_token_id=1, bos_token_id=2, eos_token_id=2, do_layer_norm_before=True)  # fmt: skip


def opt_folder(dest: Path, hidden: int = 32, layers: int = 3, seed: int = 0) -> Path:
    import torch
    from transformers import OPTForCausalLM

    dest = Path(dest)
    torch.manual_seed(seed)
    model = OPTForCausalLM(opt_config(hidden, layers)).eval()
    with torch.no_grad():  # LayerNorms away from 1/0 so every tensor matters
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(dest))
    tokenizer().save_pretrained(str(dest))
    return dest


def clapcap_checkpoint(path: Path, seed: int = 0) -> Path:
    import torch

    from hsm_bench.embedders.msclap import MSCLAP2023
    from tests.clap_tiny import randomise_statistics

    torch.manual_seed(seed)
    model = MSCLAP2023(arch=TINY_ARCH["clap"]).build(None, text_config=_gpt2_config())
    randomise_statistics(model, seed)
    state = {"clap." + k[len("audio_encoder.") :]: v for k, v in model.state_dict().items() if k.startswith("audio_encoder.")}
    state["clap_project.linear.weight"] = torch.randn(8, AUDIO_DIM)
    state["gpt.transformer.wte.weight"] = torch.randn(10, 8)
    torch.save({"model": state}, path)
    return Path(path)


def _gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=20, n_positions=80, bos_token_id=0, eos_token_id=0)


def _sinusoid(n: int, d: int):
    import math

    import torch

    t = torch.zeros(1, n, d, dtype=torch.float64)
    for pos in range(n):
        for j in range(d):
            angle = pos / math.pow(10000, 2 * (j // 2) / d)
            t[0, pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return t.float()


def foundation_keys(n_layers: int, hidden: int, vocab_rows: int, arch: dict = TINY_ARCH, audio_dim: int = AUDIO_DIM):
    """name -> shape of the Flamingo tensors, from the official module definitions."""
    d, inner = audio_dim, arch["xattn_heads"] * arch["xattn_dim_head"]
    keys = {"audio_transformer.position_enc.pos_table": (1, arch["max_num_media"], d)}
    for j in range(arch["n_layers"]):
        p = f"audio_transformer.layer_stack.{j}."
        keys.update({p + f"slf_attn.{w}.weight": (d, d) for w in ("w_qs", "w_ks", "w_vs", "fc")})
        keys.update({p + "slf_attn.layer_norm.weight": (d,), p + "slf_attn.layer_norm.bias": (d,),
                     p + "pos_ffn.w_1.weight": (arch["d_inner"], d), p + "pos_ffn.w_1.bias": (arch["d_inner"],),
                     p + "pos_ffn.w_2.weight": (d, arch["d_inner"]), p + "pos_ffn.w_2.bias": (d,),
                     p + "pos_ffn.layer_norm.weight": (d,), p + "pos_ffn.layer_norm.bias": (d,)})  # fmt: skip
    keys.update({"audio_transformer.layer_norm.weight": (d,), "audio_transformer.layer_norm.bias": (d,)})
    ff = hidden * arch["ff_mult"]
    for i in range(n_layers):
        p = f"lang_encoder.model.decoder.layers.{i}.gated_cross_attn_layer."
        keys.update({p + "attn.norm.weight": (hidden,), p + "attn.norm.bias": (hidden,),
                     p + "attn.to_q.weight": (inner, hidden), p + "attn.to_kv.weight": (2 * inner, d),
                     p + "attn.to_out.weight": (hidden, inner), p + "attn_gate": (1,),
                     p + "ff.0.weight": (hidden,), p + "ff.0.bias": (hidden,), p + "ff.1.weight": (ff, hidden),
                     p + "ff.3.weight": (hidden, ff), p + "ff_gate": (1,)})  # fmt: skip
    keys["lang_encoder.model.decoder.embed_tokens.weight"] = (vocab_rows, hidden)
    return keys


def foundation_checkpoint(path: Path, opt: Path, seed: int = 0, with_lm: bool = True, ddp: bool = True) -> Path:
    """Random Flamingo weights for the OPT at ``opt``; ``with_lm``: also (perturbed) LM layers."""
    import torch
    from safetensors.torch import load_file
    from transformers import OPTConfig

    cfg = OPTConfig.from_pretrained(str(opt), local_files_only=True)
    vocab_rows = len(SPECIALS) + len(set(WORDS)) + 3  # + <audio>, <|endofchunk|>, <SEP>
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in foundation_keys(cfg.num_hidden_layers, cfg.hidden_size, vocab_rows).items():
        if k.endswith("pos_table"):
            state[k] = _sinusoid(shape[1], shape[2])
        elif k.endswith("_gate"):
            state[k] = torch.tensor([0.4 + 0.3 * torch.rand(1, generator=g).item()])
        elif k.endswith("norm.weight") or k.endswith("ff.0.weight"):
            state[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[k] = (0.3 if k.endswith("bias") else 1.0) * torch.randn(shape, generator=g) / max(1, shape[-1]) ** 0.5
    if with_lm:
        base = load_file(str(Path(opt) / "model.safetensors"))
        for k, v in base.items():
            if k.startswith("model.decoder.layers."):
                i, rest = k[len("model.decoder.layers.") :].split(".", 1)
                state[f"lang_encoder.model.decoder.layers.{i}.decoder_layer.{rest}"] = v + 0.05 * torch.randn(v.shape, generator=g)
        state["lang_encoder.lm_head.weight"] = state["lang_encoder.model.decoder.embed_tokens.weight"]
    if ddp:
        state = {"module." + k: v for k, v in state.items()}
    torch.save({"model_state_dict": state}, path)
    return Path(path)


def build_all(root: Path, seed: int = 0) -> dict[str, Path]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    opt = opt_folder(root / "opt-iml-max-1_3b", seed=seed)
    return {
        "opt-iml-max-1_3b": opt,
        "msclap-clapcap-2023": clapcap_checkpoint(root / "clapcap_weights_2023.pth", seed=seed + 1),
        "audio-flamingo-1-foundation": foundation_checkpoint(root / "foundation.pt", opt, seed=seed + 2),
    }
