"""A tiny random-weight Audio Flamingo 3 folder in the layout of ``nvidia/audio-flamingo-3-hf``.

Built offline: a word-level tokenizer made with ``tokenizers`` (the real one is Qwen2.5's
BPE), a Whisper feature extractor with AF3's settings (128 mel bins, 16 kHz, 30 s windows),
a ChatML-style chat template with the ``<sound>`` placeholder, and an
``AudioFlamingo3ForConditionalGeneration`` with the real architecture at toy sizes, all
saved with ``save_pretrained`` so the embedder loads them exactly as it loads the real folder.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("system user assistant You are a helpful assistant . Describe the sound in a sentence What is this "
         "? Caption audio").split()  # fmt: skip
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<sound>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_processor():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        AudioFlamingo3Processor,
        PreTrainedTokenizerFast,
        WhisperFeatureExtractor,
    )

    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(WORDS)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<sound>"],
    )  # fmt: skip
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, hop_length=160, n_fft=400)
    return AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_config(processor, layers: int = 3, hidden: int = 32):
    from transformers import AudioFlamingo3Config

    audio = dict(model_type="audioflamingo3_encoder", num_mel_bins=128, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, hidden_size=16, max_source_positions=1500)  # fmt: skip
    text = dict(model_type="qwen2", vocab_size=len(processor.tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                tie_word_embeddings=False)  # fmt: skip
    return AudioFlamingo3Config(audio_config=audio, text_config=text,
                                audio_token_id=processor.tokenizer.convert_tokens_to_ids("<sound>"))  # fmt: skip


def build_folder(dest: Path, seed: int = 0, layers: int = 3, hidden: int = 32) -> Path:
    import torch
    from transformers import AudioFlamingo3ForConditionalGeneration

    dest = Path(dest)
    processor = build_processor()
    torch.manual_seed(seed)
    model = AudioFlamingo3ForConditionalGeneration(build_config(processor, layers, hidden)).eval()
    model.save_pretrained(str(dest))
    processor.save_pretrained(str(dest))
    return dest
