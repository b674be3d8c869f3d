"""Audio Flamingo embedders for AFSim: pooled hidden states of the LLM under a captioning prompt.

HSM-TSS defines AFSim's embedding as "the feature from the penultimate (last second) layer
[of Audio Flamingo] using the captioning prompt, mean-pooled", a 2048-d vector. hsm-bench
computes, for a mono clip x:

1. x is peak-normalised (x / max|x|; Audio Flamingo 1 and 2 always do this, and it makes the
   metric gain-invariant) unless ``peak_normalize=False``;
2. the model runs on one user turn holding the clip and ``prompt`` (default: Audio Flamingo
   1's captioning prompt "Describe the sound in a sentence."), formatted by the checkpoint's
   own chat template with the generation prompt appended, as the model sees it before it
   answers;
3. h(x) = mean over the pooled token positions of ``hidden_states[layer]`` (default -2: the
   output of the second-to-last decoder block, before the final norm), in float64.

``pooling`` picks the positions: ``post_audio`` (default: from the first audio token to the
end, i.e. the audio tokens and the prompt text after them; earlier positions cannot attend
to the audio under causal masking, so they are the same for every clip and would only pull
AFSim toward 1), ``all`` (every position, the literal "mean over tokens"), or ``audio`` (the
audio-token positions only). The choice, the layer, the prompt, the dtype and the number of
pooled tokens are recorded with the features.

Versions:

* ``audio-flamingo-3``: transformers' ``AudioFlamingo3ForConditionalGeneration`` loaded from a
  local copy of ``nvidia/audio-flamingo-3-hf`` (weights ``audio-flamingo-3-hf``). Its LLM is
  Qwen2.5-7B, so h(x) is 3584-d, not the paper's 2048-d. Clips are grouped by length and run
  ``batch_size`` at a time, the last batch filled with copies, so no clip is ever padded and
  an embedding does not depend on the content of the other clips of its batch (its row in
  the batch, the batch size and the thread count may still change it at float32 rounding
  level).
* ``audio-flamingo-1``: the 2048-d model the paper describes (OPT-IML-MAX-1.3B with Flamingo
  cross-attention), in :mod:`hsm_bench.embedders.audio_flamingo1`; AFSim's default.
* ``audio-flamingo-2`` (Qwen2.5-3B, also 2048-d): not implemented; constructing it raises
  :class:`NotImplementedError` saying so (no silent substitute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsm_bench import weights
from hsm_bench.embedders.base import Embedder, cpu_float32

CAPTION_PROMPT = "Describe the sound in a sentence."
POOLINGS = ("post_audio", "all", "audio")
DTYPES = ("float32", "bfloat16", "float16")


def peak_normalize(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def pooling_mask(input_ids, attention_mask, audio_token_id: int, pooling: str):
    """Boolean ``[B, T]`` mask of the positions ``pooling`` averages over."""
    import torch

    valid = attention_mask.bool()
    is_audio = input_ids == audio_token_id
    if pooling == "all":
        return valid
    if pooling == "audio":
        return valid & is_audio
    if not bool(is_audio.any(dim=1).all()):
        raise ValueError("post_audio pooling: a prompt holds no audio token")
    first = is_audio.float().argmax(dim=1)  # index of the first audio token per row
    pos = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    return valid & (pos >= first[:, None])


def folder_config(folder: Path, model_type: str, needed: str, weights_name: str):
    """The transformers config of ``folder``, or a one-line error if it is not a ``model_type`` model."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - no or unreadable config.json
        raise weights.WeightsError(f"{folder}: not a transformers model folder ({type(exc).__name__}: {exc})") from exc
    if config.model_type != model_type:
        raise weights.WeightsMismatchError(
            f"{folder} holds a {config.model_type!r} model, not {needed} ({model_type!r}); "
            f"fetch it with `hsm-bench download-weights {weights_name}`"
        )
    return config


class AudioFlamingoEmbedder(Embedder):
    af_version: ClassVar[str] = ""

    def __init__(
        self,
        prompt: str = CAPTION_PROMPT,
        pooling: str = "post_audio",
        layer: int = -2,
        dtype: str = "float32",
        peak_normalize: bool = True,
        batch_size: int = 1,
        **params: Any,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"{self.name}: pooling must be one of {POOLINGS}, got {pooling!r}")
        if dtype not in DTYPES:
            raise ValueError(f"{self.name}: dtype must be one of {DTYPES}, got {dtype!r}")
        if int(batch_size) < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1")
        super().__init__(prompt=prompt, pooling=pooling, layer=int(layer), dtype=dtype,
                         peak_normalize=bool(peak_normalize), batch_size=int(batch_size), **params)  # fmt: skip
        self.prompt, self.pooling, self.layer, self.dtype = prompt, pooling, int(layer), dtype
        self.peak_normalize, self.batch_size = bool(peak_normalize), int(batch_size)
        self.hidden_size: int | None = None

    def info(self) -> dict[str, Any]:
        return {**super().info(), "af_version": self.af_version, "hidden_size": self.hidden_size}


class AudioFlamingo3(AudioFlamingoEmbedder):
    """Audio Flamingo 3 through transformers (see the module docstring)."""

    name = "audio-flamingo-3"
    version = "1"
    af_version = "3"
    sample_rate = 16000
    weights = ("audio-flamingo-3-hf",)

    def load(self, device: str = "cpu") -> None:
        import torch
        from transformers import AudioFlamingo3ForConditionalGeneration, AutoProcessor

        folder = weights.resolve(self.weights[0])
        folder_config(folder, "audioflamingo3", "Audio Flamingo 3", self.weights[0])
        model, report = AudioFlamingo3ForConditionalGeneration.from_pretrained(
            str(folder), dtype=getattr(torch, self.dtype), output_loading_info=True, local_files_only=True
        )
        bad = {k: sorted(v)[:5] for k, v in report.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise weights.WeightsMismatchError(f"{folder}: weights do not match the Audio Flamingo 3 layout: {bad}")
        processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        if int(processor.feature_extractor.sampling_rate) != self.sample_rate:
            raise weights.WeightsError(
                f"{folder}: feature extractor runs at {processor.feature_extractor.sampling_rate} Hz, expected {self.sample_rate}"
            )
        if not getattr(processor, "chat_template", None):
            raise weights.WeightsError(f"{folder}: the processor has no chat template (chat_template.jinja missing?)")
        self.model = model.model.eval().to(device)  # the LM head is never needed
        self.processor, self._prompt_text = processor, None
        self.audio_token_id = int(model.config.audio_token_id)
        n_layers = int(model.config.text_config.num_hidden_layers)
        if not -n_layers <= self.layer <= n_layers:
            raise ValueError(f"{self.name}: layer {self.layer} out of range for {n_layers} decoder layers")
        self.hidden_size = int(model.config.text_config.hidden_size)
        self.device = device
        self.loaded = True
        self.checkpoint_sha256 = weights.path_sha256(folder)

    def prompt_text(self) -> str:
        """The prompt with its audio placeholder, as the checkpoint's chat template formats it."""
        if getattr(self, "_prompt_text", None) is None:
            conversation = [{"role": "user", "content": [{"type": "text", "text": self.prompt}, {"type": "audio"}]}]
            self._prompt_text = self.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self._prompt_text

    def embed_audio(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray] | None] = [None] * len(clips)
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(clips):
            groups.setdefault(int(np.asarray(c).shape[-1]), []).append(i)
        for idx in groups.values():
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s : s + self.batch_size]
                batch = [clips[i] for i in chunk]
                batch += [batch[-1]] * (self.batch_size - len(batch))  # fixed shape: other clips' content has no effect
                for i, feats in zip(chunk, self._forward(batch)):
                    out[i] = feats
        return out  # type: ignore[return-value]

    def _forward(self, batch: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        audio = [np.asarray(c, dtype=np.float32).reshape(-1) for c in batch]
        if self.peak_normalize:
            audio = [peak_normalize(a) for a in audio]
        text = [self.prompt_text()] * len(audio)
        with cpu_float32():  # Whisper's log-mel in torch: under autocast it would come out bfloat16
            inputs = self.processor(text=text, audio=audio, sampling_rate=self.sample_rate, return_tensors="pt")
        dtype = getattr(torch, self.dtype)
        with torch.inference_mode():
            res = self.model(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device),
                input_features=inputs["input_features"].to(self.device, dtype),
                input_features_mask=inputs["input_features_mask"].to(self.device),
                output_hidden_states=True,
                use_cache=False,
            )
            hidden = res.hidden_states[self.layer].double()
            mask = pooling_mask(inputs["input_ids"], inputs["attention_mask"], self.audio_token_id, self.pooling).to(hidden.device)
            counts = mask.sum(dim=1)
            pooled = (hidden * mask[..., None]).sum(dim=1) / counts[:, None].clamp(min=1)
        return [
            {"embedding": pooled[b].cpu().numpy(), "n_pooled": np.array([int(counts[b])], dtype=np.int64)}
            for b in range(len(audio))
        ]

    def init_random(self, config: Any, processor: Any, seed: int = 0) -> None:
        """Use a random-weight model of ``config`` (tests and benchmarks; no checkpoint)."""
        import torch
        from transformers import AudioFlamingo3ForConditionalGeneration

        torch.manual_seed(seed)
        model = AudioFlamingo3ForConditionalGeneration(config).eval()
        self.model, self.processor, self._prompt_text = model.model, processor, None
        self.audio_token_id = int(config.audio_token_id)
        self.hidden_size = int(config.text_config.hidden_size)
        self.loaded = True
        self.checkpoint_sha256 = None


class _Unavailable(AudioFlamingoEmbedder):
    missing: ClassVar[str] = ""

    def __init__(self, **params: Any):
        raise NotImplementedError(
            f"{self.name}: {self.missing} hsm-bench does not load this model yet, so AFSim cannot use it; "
            "use backend 'audio-flamingo-1' (the paper's 2048-d model) or 'audio-flamingo-3' (3584-d)."
        )


class AudioFlamingo2(_Unavailable):
    name = "audio-flamingo-2"
    af_version = "2"
    sample_rate = 16000
    missing = ("Audio Flamingo 2 (Qwen2.5-3B + AF-CLAP + Flamingo cross-attention) needs a "
               "re-implementation of its layout, which is not written.")  # fmt: skip
