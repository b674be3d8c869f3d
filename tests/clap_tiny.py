"""Tiny local stand-ins for the Hub folders the CLAP embedders read (tests, benchmarks).

Nothing here downloads: tokenizers are trained on a few sentences with ``tokenizers``
(byte-level BPE for GPT-2 and RoBERTa, WordPiece for BERT), models are built from small
configs with random weights and saved with ``save_pretrained``. The ids are not the real
ones; the layouts (special tokens, GPT-2's ``'!'`` = id 0, RoBERTa's ``<s>/<pad>/</s>``
= 0/1/2, BERT's ``[PAD]`` = 0) are.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "a dog barks while cars pass by on a busy street!",
    "birds are chirping and a man speaks in the distance",
    "rain falls on a metal roof and thunder rumbles",
    "a woman sings with a piano, people clap and cheer",
    "an engine idles, then a vehicle accelerates away",
    "water flows in a stream; wind blows through the trees",
    "a cat meows twice. a door creaks open and slams shut",
    "glass breaks, an alarm rings, footsteps run on wood",
    "the sound of a violin, a guitar and a harmonic tone hums",
    "noise hisses, static crackles, a bell rings 3 times",
] * 4


def load_local(cls, folder: Path):
    """``cls.from_pretrained`` restricted to a local folder (tests must never download)."""
    return cls.from_pretrained(str(folder), local_files_only=True)


def gpt2_folder(path: Path, n_embd: int = 32, n_layer: int = 1, n_head: int = 2, vocab_size: int = 400, seed: int = 0) -> Path:
    """A GPT-2 folder: byte-level BPE with ``'!'`` at id 0 and ``<|endoftext|>``, random ``GPT2Model``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    path = Path(path)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    bpe.add_special_tokens(["<|endoftext|>"])
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")  # fmt: skip
    if tok.convert_tokens_to_ids("!") != 0:
        raise RuntimeError("tiny GPT-2 tokenizer: '!' is not id 0")
    tok.save_pretrained(str(path))
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=128,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    GPT2Model(cfg).save_pretrained(str(path))
    return path


def bert_folder(path: Path, hidden: int = 32, layers: int = 1, heads: int = 2, vocab_size: int = 300, seed: int = 0) -> Path:
    """A BERT-uncased folder: WordPiece with ``[PAD]`` = 0, random ``BertModel``."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, show_progress=False,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])  # fmt: skip
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                            cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True)  # fmt: skip
    tok.save_pretrained(str(path))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    BertModel(cfg).save_pretrained(str(path))
    return path


def roberta_tokenizer(vocab_size: int = 400):
    from systems.random_init import local_roberta_tokenizer

    return local_roberta_tokenizer(CORPUS, vocab_size)


def roberta_folder(path: Path, hidden: int = 32, layers: int = 1, heads: int = 2, seed: int = 0) -> Path:
    """A roberta-base stand-in: byte-level BPE with ``<s>``/``<pad>``/``</s>`` = 0/1/2, random ``RobertaModel``."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    path = Path(path)
    tok = roberta_tokenizer()
    tok.save_pretrained(str(path))
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, type_vocab_size=1)  # fmt: skip
    RobertaModel(cfg).save_pretrained(str(path))
    return path


def clap_hf_folder(path: Path, seed: int = 0) -> Path:
    """A transformers ``ClapModel`` folder (tiny HTSAT + RoBERTa, unfused) with its ``ClapProcessor``."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    path = Path(path)
    tok = roberta_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)  # fmt: skip
    audio = dict(patch_embeds_hidden_size=8, depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], hidden_size=64,
                 enable_fusion=False, num_classes=5)  # fmt: skip
    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16))
    model.save_pretrained(str(path))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tok).save_pretrained(str(path))
    return path


# small HTSAT / Cnn14 geometry for tests: real front end and token grid, tiny widths
TINY_HTSAT = {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "num_classes": 5}
TINY_CNN14 = {"channels": 4, "out_emb": 32, "classes_num": 5}


def randomise_statistics(model, seed: int = 0) -> None:
    """Random BatchNorm statistics, LayerNorm biases and relative-position tables (which
    random initialisation leaves at 0/1), so round trips exercise every tensor."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_mean", "relative_position_bias_table", "logit_scale")) or (
                "norm" in name and name.endswith("bias")
            ):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))


def msclap_checkpoint(path: Path, version: str, text_folder: Path, arch: dict | None = None, seed: int = 0) -> Path:
    """A random ``{"model": state_dict}`` MS-CLAP file (official key names) for ``arch``."""
    import torch

    from hsm_bench.embedders.msclap import MSCLAP2022, MSCLAP2023

    emb = (MSCLAP2023 if version == "2023" else MSCLAP2022)(arch=arch)
    torch.manual_seed(seed)
    model = emb.build(Path(text_folder))
    randomise_statistics(model, seed)
    torch.save({"model": model.state_dict()}, path)
    return Path(path)


def laion_checkpoint(path: Path, text_folder: Path, arch: dict | None = None, base: bool = False, seed: int = 0) -> Path:
    """A random LAION-CLAP ``.pt`` (``{"state_dict": {"module." + key}}``, with the
    ``text_branch.embeddings.position_ids`` the published files carry)."""
    import torch

    from hsm_bench.embedders.laion_clap import (
        LaionClap630kAudioset,
        LaionClapMusicSpeechAudioset,
    )

    emb = (LaionClapMusicSpeechAudioset if base else LaionClap630kAudioset)(arch=arch)
    torch.manual_seed(seed)
    model = emb.build(Path(text_folder))
    randomise_statistics(model, seed)
    sd = model.state_dict()
    n_pos = model.text_branch.config.max_position_embeddings
    sd["text_branch.embeddings.position_ids"] = torch.arange(n_pos)[None]
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    return Path(path)
