"""What ``load_random`` shares across systems: random weights need tokenizers that exist
without a download.

``load_random`` builds a system at full size with random weights, for benchmarks and tests
on machines without checkpoints. Its text encoders then need a tokenizer: the real
vocabularies come with the Hub folders, so these are trained here on a few sentences. Their
ids are not the real ones; timings and shapes are what they are for.
"""

from __future__ import annotations

from typing import Any, Iterable

SENTENCES = (
    "a dog barks while cars pass by on a busy street",
    "birds chirp and a man speaks in the distance",
    "rain falls on a metal roof and thunder rumbles",
    "a woman sings with a piano while people clap",
    "an engine idles then a vehicle accelerates away",
    "water flows in a stream and wind blows through trees",
    "the sound of an acoustic guitar and a violin",
)


def local_roberta_tokenizer(texts: Iterable[str] = SENTENCES, vocab_size: int = 300) -> Any:
    """A byte-level BPE tokenizer with roberta-base's special tokens (``<s>``/``<pad>``/``</s>``
    = 0/1/2) and its post-processing, trained on ``texts``."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")  # fmt: skip
