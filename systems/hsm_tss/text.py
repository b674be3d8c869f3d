"""HSM-TSS's text side: the frozen FLAN-T5-base encoder and the task tokens (paper III-F, IV-C).

* Caption: tokenised by T5's tokenizer (with its end-of-sequence token, as T5 is trained),
  encoded by ``T5EncoderModel``; the states ``[B, N, d_model]`` and their mask go to Q-Audio's
  text branch (hierarchical model) or straight to the separator (single-stage variant,
  "FLAN-T5 without Q-Audio", paper V-A).
* Task: "encoded using pretrained token representations from T5's vocabulary": the rows of
  T5's shared input embedding for the task word's tokens (no end token), ``[B, L, d_model]``.
  The words are "extraction" and "removal", the paper's names for the two task types
  (Fig. 4); the exact word is an assumption.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

TASK_WORDS = {"extract": "extraction", "remove": "removal"}
MAX_TOKENS = 128  # longer captions are cut (FLAN-T5 was trained on 512; AudioCaps captions are < 40)


class TextEncoder:
    """FLAN-T5 tokenizer and encoder from a local transformers folder, frozen, in eval mode."""

    def __init__(self, model, tokenizer, source: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.device = torch.device("cpu")

    @classmethod
    def from_folder(cls, folder: str | Path) -> TextEncoder:
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        from hsm_bench.weights import WeightsError

        hf_logging.disable_progress_bar()  # one bar per weight file on every load; the run has its own
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder}: cannot load FLAN-T5 from it ({' '.join(str(exc).split())[:200]}); it must be a "
                               "transformers T5 folder (config.json, weights, tokenizer)") from None  # fmt: skip
        return cls(model, tokenizer, str(folder))

    @property
    def d_model(self) -> int:
        return int(self.model.config.d_model)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def to(self, device) -> TextEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _ids(self, texts: list[str], special: bool) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                             add_special_tokens=special, return_tensors="pt")  # fmt: skip
        ids, valid = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device).bool()
        if ids.shape[1] == 0 or not valid.any(1).all():
            raise ValueError(f"empty text after tokenisation among {texts!r}")
        return ids, valid

    @torch.no_grad()
    def captions(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, N, d_model] encoder states, [B, N] bool valid)``."""
        ids, valid = self._ids(texts, special=True)
        states = self.model(input_ids=ids, attention_mask=valid.long()).last_hidden_state
        return states * valid[..., None], valid

    @torch.no_grad()
    def token_embeddings(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T5's vocabulary embeddings of ``texts``: ``(embeds, ids, valid)`` (with the end token)."""
        ids, valid = self._ids(texts, special=True)
        return self.model.get_input_embeddings()(ids) * valid[..., None], ids, valid

    @torch.no_grad()
    def tasks(self, tasks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Task tokens ``([B, L, d_model], [B, L] valid)`` for "extract"/"remove"."""
        bad = sorted(set(tasks) - set(TASK_WORDS))
        if bad:
            raise ValueError(f"unknown task(s) {bad}: HSM-TSS performs {sorted(TASK_WORDS)}")
        ids, valid = self._ids([TASK_WORDS[t] for t in tasks], special=False)
        return self.model.get_input_embeddings()(ids) * valid[..., None], valid


def local_t5_folder(folder: str | Path, d_model: int = 32, layers: int = 2, heads: int = 4, d_ff: int = 64,
                    seed: int = 0, words: Iterable[str] | None = None) -> Path:  # fmt: skip
    """A T5 encoder folder made here, for tests and timing without the Hub: random weights
    (``d_model`` etc.; FLAN-T5-base is 768/12/12/2048) and a word-level tokenizer over a
    small English vocabulary plus letters (other words become ``<unk>``), with T5's
    special tokens ``<pad>`` (0), ``</s>`` (1), ``<unk>`` (2). Not FLAN-T5: random outputs.

    ``words``: more vocabulary, appended after the built-in words in the order given (the
    built-in ids do not change); each is one token as the tokenizer splits text (on spaces and
    punctuation, case kept), e.g. the demo preset's words (training/preset.py)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = Path(folder)
    builtin = ("a an the of and in on with while then sound sounds noise dog dogs bark barks barking man woman child speaks "
               "speaking music plays playing water rain wind car engine bird birds chirp chirping bell bells piano guitar "
               "violin drum drums people talk talking crowd cheering siren train door footsteps clock ticking extraction "
               "removal background loud quiet distant").split()  # fmt: skip
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in [*builtin, *"abcdefghijklmnopqrstuvwxyz0123456789", ".", ",", "'", "-", "!", "?", *(words or ())]:
        vocab.setdefault(str(w), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                      num_heads=heads, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    T5EncoderModel(config).save_pretrained(str(folder))
    return folder
