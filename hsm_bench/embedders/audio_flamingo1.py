"""Audio Flamingo 1 for AFSim: the 2048-d model the HSM-TSS paper describes.

Re-implements the inference path of NVIDIA/audio-flamingo, branch ``legacy_audio_flamingo_1``
(``inference/{data.py,inference_examples.py,configs/foundation.yaml}``, ``src/*.py``) on
torch + transformers, with three weights:

* ``audio-flamingo-1-foundation``: ``foundation.pt`` from ``nvidia/audio-flamingo``,
  ``{"model_state_dict": {...}}`` with the Flamingo keys (``audio_transformer.*``,
  ``lang_encoder.model.decoder.layers.{i}.gated_cross_attn_layer.*``, the resized token
  embeddings, and whatever LM weights were trained);
* ``opt-iml-max-1_3b``: the ``facebook/opt-iml-max-1.3b`` folder (config, tokenizer, weights);
  the official code builds the LM from it and loads the checkpoint over it non-strictly, so
  LM weights the checkpoint lacks come from here;
* ``msclap-clapcap-2023``: ``clapcap_weights_2023.pth`` from ``microsoft/msclap``, whose
  ``clap.*`` keys are MS-CLAP 2023's audio encoder (HTS-AT + projection to 1024-d).

Audio (``data.py``: ``load_audio`` + ``compute_sliding_window``). The embedder takes the
16-kHz audio of hsm-bench test sets and does what AF1 does with a 16-kHz file:

1. at most 33.25 s (16 windows of 7 s with a 1.75-s hop) are read;
2. resampling to 44.1 kHz with ``librosa.resample``'s default, soxr HQ in float64;
   peak normalisation, always, with the official rule: ``x / max(|max x|, |min x|)``, or
   ``2 x / |max x| - 1`` when no sample is negative (a silent clip, 0/0 there, is left at
   zero here; ``peak_normalize=False`` skips this step);
3. zero padding to a whole number of windows, an int16 round trip
   (``int16(clip(x, -1, 1) * 32767) / 32767``), then windows of 308700 samples every
   77175; ``n = 1 + ceil((T - 7 s) / 1.75 s)`` windows (1 for T <= 7 s, 16 from 33.25 s);
4. each window -> clapcap's audio encoder -> 1024-d; the 16 - n missing windows are
   all-zero audio (their embedding is computed once), flagged in the window mask.

Model: the window embeddings go through the 3-layer audio transformer (no mask: padded
windows take part, as in the official model), then OPT-IML-MAX-1.3B with a gated
cross-attention block before each of its 24 decoder layers (:mod:`hsm_bench.embedders.flamingo`);
every text position attends to the real windows. The tokenizer is the OPT folder's with
``<audio>``, ``<|endofchunk|>`` and ``<SEP>`` added, as the official factory does; the prompt
is ``"{bos}{prefix} <audio>{prompt}\\nanswer:{sep}"`` with ``prefix`` "The task is audio
captioning." and ``prompt`` "Describe the sound in a sentence." lower-cased (the tokenizer
adds its own BOS in front, as for the official model).

h(x) = mean over the pooled positions of ``hidden_states[layer]`` in transformers' numbering
(0 = embeddings, i = output of decoder layer i - 1, -1 = after the final LayerNorm; default
-2: the output of layer 23 of 24), in float64. ``pooling`` defaults to ``all`` here: unlike
Audio Flamingo 3, every AF1 position sees the audio through cross-attention, so the literal
"mean over tokens" is also a per-clip quantity; ``post_audio`` and ``audio`` as for AF3.

``benchmarks/compare_af1_official.py`` runs the official AF1 code (data processing, Flamingo
modules, Flamingo-ised OPT) next to this one on the same random weights: pooled hidden
states are bit-identical for 44.1-kHz and 16-kHz wav files. The one input difference: AF1
reads a float wav file in float64, the harness hands over float32 samples.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import numpy as np

from hsm_bench import weights
from hsm_bench.embedders.audio_flamingo import (
    CAPTION_PROMPT,
    AudioFlamingoEmbedder,
    folder_config,
    pooling_mask,
)

SAMPLE_RATE = 44100  # the model's (MS-CLAP's) rate
WINDOW_S, OVERLAP_S, MAX_WINDOWS = 7.0, 5.25, 16
DURATION_S = MAX_WINDOWS * (WINDOW_S - OVERLAP_S) + OVERLAP_S  # 33.25 s: what AF1 reads of a file
WINDOW = int(WINDOW_S * SAMPLE_RATE)  # 308700
OVERLAP = int(OVERLAP_S * SAMPLE_RATE)  # 231525
HOP = WINDOW - OVERLAP  # 77175
MAX_SAMPLES = MAX_WINDOWS * WINDOW - (MAX_WINDOWS - 1) * OVERLAP  # 1466325
TASK_PREFIX = "The task is audio captioning."
ADDED_TOKENS = ("<audio>", "<|endofchunk|>")

# foundation.yaml + the official module defaults; ``arch`` overrides them for tiny test models
ARCH = {"n_head": 8, "n_layers": 3, "d_inner": 2048, "max_num_media": 128, "xattn_heads": 8, "xattn_dim_head": 64,
        "ff_mult": 4, "clap": {}}  # fmt: skip

FOUNDATION, OPT, CLAPCAP = "audio-flamingo-1-foundation", "opt-iml-max-1_3b", "msclap-clapcap-2023"


def af1_peak_normalize(x: np.ndarray) -> np.ndarray:
    """AF1's ``load_audio`` normalisation (float64); a silent clip stays silent."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return x
    if x.min() >= 0:
        return 2 * x / abs(x.max()) - 1.0
    return x / max(abs(x.max()), abs(x.min()))


def librosa_resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample`` with its default ``res_type="soxr_hq"`` (librosa >= 0.10), which
    AF1 uses: soxr HQ on float64, then padded or cut to ceil(n * ratio) samples."""
    import soxr

    y = soxr.resample(np.asarray(x, dtype=np.float64), orig_sr, target_sr, quality="soxr_hq")
    n = int(np.ceil(x.shape[-1] * float(target_sr) / orig_sr))
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def window_count(n_samples: int) -> tuple[int, int]:
    """(number of windows, padded length) for a clip of ``n_samples`` at 44.1 kHz."""
    if n_samples <= WINDOW:
        return 1, WINDOW
    if n_samples >= MAX_SAMPLES:
        return MAX_WINDOWS, MAX_SAMPLES
    n = 1 + int(math.ceil((n_samples - WINDOW) / float(HOP)))
    return n, n * WINDOW - (n - 1) * OVERLAP


def int16_round_trip(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float64) / 32767.0


def af1_load(clip: np.ndarray, sample_rate: int, peak_normalize: bool = True) -> np.ndarray:
    """AF1's ``load_audio`` on a mono clip: at most 33.25 s, resampled to 44.1 kHz, normalised."""
    x = np.asarray(clip, dtype=np.float64).reshape(-1)[: int(DURATION_S * sample_rate)]
    if x.size == 0:
        raise ValueError("audio-flamingo-1: empty clip")
    if peak_normalize and (x.max() > 1 or x.min() < -1):  # as read from a file, before resampling
        x = x / max(abs(x.max()), abs(x.min()))
    if sample_rate != SAMPLE_RATE:
        x = librosa_resample(x, sample_rate, SAMPLE_RATE)
    return af1_peak_normalize(x) if peak_normalize else x


def af1_windows(clip: np.ndarray, sample_rate: int = 16000, peak_normalize: bool = True) -> np.ndarray:
    """``[n, 308700]`` float32 windows of a mono clip, as AF1 feeds them to CLAP."""
    x = af1_load(clip, sample_rate, peak_normalize)[:MAX_SAMPLES]
    n, full = window_count(x.size)
    x = int16_round_trip(np.concatenate([x, np.zeros(full - x.size)])).astype(np.float32)
    return np.stack([x[i * HOP : i * HOP + WINDOW] for i in range(n)])


def add_af1_tokens(tokenizer: Any) -> Any:
    """The official factory's additions to the OPT tokenizer (ids follow its vocabulary)."""
    tokenizer.add_special_tokens({"additional_special_tokens": list(ADDED_TOKENS)})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<PAD>"})
    if tokenizer.sep_token is None:
        tokenizer.add_special_tokens({"sep_token": "<SEP>"})
    return tokenizer


def af1_prompt(tokenizer: Any, prefix: str = TASK_PREFIX, prompt: str = CAPTION_PROMPT) -> str:
    clean = lambda s: s.lower().strip()  # noqa: E731 - data.py: lower(), then strip + lower
    return f"{tokenizer.bos_token}{clean(prefix)} <audio>{clean(prompt)}\nanswer:{tokenizer.sep_token}"


def _build_model(lm: Any, audio_dim: int, arch: dict):
    """Flamingo-ise an ``OPTForCausalLM`` in place and wrap it with the audio transformer."""
    from torch import nn

    from hsm_bench.embedders.flamingo import AudioTransformer, FlamingoLayer, GatedCrossAttentionBlock

    decoder = lm.model.decoder
    dim = int(lm.config.hidden_size)
    decoder.layers = nn.ModuleList(
        FlamingoLayer(
            GatedCrossAttentionBlock(dim, audio_dim, MAX_WINDOWS, arch["xattn_dim_head"], arch["xattn_heads"], arch["ff_mult"]),
            layer,
        )
        for layer in decoder.layers
    )
    model = nn.Module()
    model.audio_transformer = AudioTransformer(audio_dim, arch["n_layers"], arch["n_head"], arch["d_inner"], arch["max_num_media"])
    model.lang_encoder = lm
    return model


def _remap(state: dict) -> dict:
    """Strip DDP prefixes like the official loader; fold the duplicate module lists the
    official model also registers (``old_decoder_blocks``, ``gated_cross_attn_layers``) onto
    the layer keys."""
    out: dict = {}
    aliases: dict = {}
    for k, v in state.items():
        k = k.replace("module.", "")
        m = re.match(r"lang_encoder\.(old_decoder_blocks|gated_cross_attn_layers)\.(\d+)\.(.+)$", k)
        if m:
            part = "decoder_layer" if m[1] == "old_decoder_blocks" else "gated_cross_attn_layer"
            aliases[f"lang_encoder.model.decoder.layers.{m[2]}.{part}.{m[3]}"] = v
        else:
            out[k] = v
    for k, v in aliases.items():
        out.setdefault(k, v)
    return out


class AudioFlamingo1(AudioFlamingoEmbedder):
    """Audio Flamingo 1 foundation model (see the module docstring)."""

    name = "audio-flamingo-1"
    version = "1"
    af_version = "1"
    sample_rate = 16000  # hsm-bench's rate; resampled to 44.1 kHz inside, as AF1 does for a 16-kHz file
    weights = (FOUNDATION, OPT, CLAPCAP)

    def __init__(self, prompt: str = CAPTION_PROMPT, task_prefix: str = TASK_PREFIX, pooling: str = "all",
                 clap_batch_size: int = 4, arch: dict | None = None, **params: Any):  # fmt: skip
        clap_batch_size = int(clap_batch_size)
        if clap_batch_size < 1:
            raise ValueError(f"{self.name}: clap_batch_size must be >= 1")
        unknown = set(arch or {}) - set(ARCH)
        if unknown:
            raise ValueError(f"{self.name}: unknown arch keys {sorted(unknown)}")
        extra = {"arch": dict(arch)} if arch else {}
        super().__init__(prompt=prompt, pooling=pooling, task_prefix=task_prefix, clap_batch_size=clap_batch_size,
                         **extra, **params)  # fmt: skip
        self.task_prefix, self.clap_batch_size = task_prefix, clap_batch_size
        self.arch = {**ARCH, **(arch or {})}
        self.model = self.clap = self.tokenizer = None
        self._zero_embedding = None
        self.lm_keys_from_base: int | None = None

    # -- loading --------------------------------------------------------------------
    def build_clap(self):
        from hsm_bench.embedders.msclap import MSCLAP2023, AudioEncoder, HTSATWrapper

        cfg = MSCLAP2023(arch=self.arch["clap"]).htsat_config()
        return AudioEncoder(HTSATWrapper(cfg), cfg.num_features, int(self.arch["clap"].get("d_proj", 1024)))

    def load(self, device: str = "cpu") -> None:
        ckpt, clapcap = weights.resolve(FOUNDATION), weights.resolve(CLAPCAP)  # missing -> one-line error
        folder = weights.resolve(OPT)
        clap = self._load_clap(clapcap)
        tokenizer, lm = self._load_lm(folder)
        model = _build_model(lm, int(clap.projection.linear1.out_features), self.arch)
        self._load_flamingo(model, ckpt, tokenizer)
        digest = hashlib.sha256()
        for label, sha in ((FOUNDATION, weights.checkpoint_sha256(FOUNDATION)), (CLAPCAP, weights.checkpoint_sha256(CLAPCAP)),
                           (OPT, weights.path_sha256(folder))):  # fmt: skip
            digest.update(f"{label}:{sha}\n".encode())
        self._finish(model, clap, tokenizer, device)
        self.checkpoint_sha256 = digest.hexdigest()

    def _load_clap(self, path):
        from hsm_bench.weights import CheckpointError, check_state_dict, load_torch_file

        raw = load_torch_file(path)
        state = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path.name} is not an MS-CLAP clapcap checkpoint: expected {{'model': state_dict}}")
        if not any(k.startswith("clap.") for k in state):
            hint = " It holds audio_encoder.* keys: that is CLAP_weights_2023.pth (msclap-2023), not clapcap_weights_2023.pth." \
                if any(k.startswith("audio_encoder.") for k in state) else ""  # fmt: skip
            raise CheckpointError(f"{path.name} is not an MS-CLAP clapcap checkpoint: no clap.* (audio encoder) keys.{hint}")
        other = sorted({k.split(".")[0] for k in state} - {"clap", "clap_project", "gpt"})
        if other:
            raise CheckpointError(f"{path.name} is not an MS-CLAP clapcap checkpoint: unexpected top-level keys {other}")
        clap = self.build_clap()
        sub = {k[len("clap.") :]: v for k, v in state.items() if k.startswith("clap.")}
        clap.load_state_dict(check_state_dict(clap, sub, "MS-CLAP clapcap audio encoder", path.name), strict=True)
        return clap

    def _load_lm(self, folder):
        import torch
        from transformers import AutoTokenizer, OPTForCausalLM

        folder_config(folder, "opt", "OPT-IML-MAX-1.3B, the LM Audio Flamingo 1 extends", OPT)
        tokenizer = add_af1_tokens(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
        lm = OPTForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the checkpoint overwrites these rows
        return tokenizer, lm

    def _load_flamingo(self, model, path, tokenizer) -> None:
        import torch

        from hsm_bench.weights import CheckpointError, load_torch_file

        raw = load_torch_file(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("model_state_dict"), dict):
            keys = list(raw)[:3] if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{path.name} is not an Audio Flamingo 1 checkpoint: expected {{'model_state_dict': ...}}, found {keys}")
        state = _remap(raw["model_state_dict"])
        expected = model.state_dict()
        embed = "lang_encoder.model.decoder.embed_tokens.weight"
        required = [k for k in expected if (k.startswith("audio_transformer.") and not k.endswith("pos_table"))
                    or ".gated_cross_attn_layer." in k or k == embed]  # fmt: skip
        unexpected = [k for k in state if k not in expected]
        missing = [k for k in required if k not in state]
        shapes = [f"{k} {list(state[k].shape)} (model {list(expected[k].shape)})" for k in state
                  if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]  # fmt: skip
        if unexpected or missing or shapes:
            parts = [f"{len(v)} {label} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                     for label, v in (("unexpected", unexpected), ("missing", missing), ("wrong shape", shapes)) if v]  # fmt: skip
            hint = ""
            if any(k.startswith(("audio_tower.", "language_model.")) for k in state):
                hint = " This looks like an Audio Flamingo 3 checkpoint (backend audio-flamingo-3)."
            elif any(k.startswith(embed) for k in shapes):
                hint = (f" The token embeddings must have {len(tokenizer)} rows: the OPT tokenizer plus "
                        f"{', '.join(ADDED_TOKENS)} and <SEP>; is {OPT} the right tokenizer?")  # fmt: skip
            raise CheckpointError(f"{path.name} is not an Audio Flamingo 1 checkpoint for this model: {'; '.join(parts)}.{hint}")
        state.pop("lang_encoder.lm_head.weight", None)  # tied to the embeddings and never used here
        with torch.no_grad():
            model.load_state_dict(state, strict=False)
        self.lm_keys_from_base = sum(
            1 for k in expected if k not in state and k.startswith("lang_encoder.") and k != "lang_encoder.lm_head.weight"
        )

    def _finish(self, model, clap, tokenizer, device: str) -> None:
        import torch

        n_layers = len(model.lang_encoder.model.decoder.layers)
        if not -(n_layers + 1) <= self.layer <= n_layers:
            raise ValueError(f"{self.name}: layer {self.layer} out of range for {n_layers} decoder layers")
        self.model = model.eval().to(device, getattr(torch, self.dtype))
        self.clap = clap.eval().to(device)  # CLAP stays float32 whatever the LM dtype
        self.tokenizer = tokenizer
        self.audio_token_id = int(tokenizer.convert_tokens_to_ids("<audio>"))
        self.input_ids = torch.tensor(tokenizer(self.prompt_text())["input_ids"])
        self.hidden_size = int(model.lang_encoder.config.hidden_size)
        self._zero_embedding = None
        self.device = device
        self.loaded = True

    def init_random(self, lm: Any, tokenizer: Any, seed: int = 0) -> None:
        """Random Flamingo and CLAP weights around a given LM (benchmarks; no checkpoint)."""
        import torch

        torch.manual_seed(seed)
        tokenizer = add_af1_tokens(tokenizer)
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        clap = self.build_clap()
        self._finish(_build_model(lm, int(clap.projection.linear1.out_features), self.arch), clap, tokenizer, self.device)
        self.checkpoint_sha256 = f"random-{seed}"

    # -- forward --------------------------------------------------------------------
    def prompt_text(self) -> str:
        return af1_prompt(self.tokenizer, self.task_prefix, self.prompt)

    def _clap_embed(self, windows: list[np.ndarray]):
        """``[N, D]`` CLAP embeddings, ``clap_batch_size`` windows per pass (zero-filled)."""
        import torch

        out = []
        for s in range(0, len(windows), self.clap_batch_size):
            chunk = windows[s : s + self.clap_batch_size]
            batch = np.zeros((self.clap_batch_size, WINDOW), dtype=np.float32)
            batch[: len(chunk)] = np.stack(chunk)
            with torch.inference_mode():
                out.append(self.clap(torch.from_numpy(batch).to(self.device))[: len(chunk)].float())
        return torch.cat(out)

    def zero_embedding(self):
        if self._zero_embedding is None:  # the padding windows' embedding, the same for every clip
            self._zero_embedding = self._clap_embed([np.zeros(WINDOW, dtype=np.float32)])[0]
        return self._zero_embedding

    def media(self, clips: list[np.ndarray]):
        """(``[B, 16, D]`` window embeddings, ``[B, 16]`` window mask) of 16-kHz clips."""
        import torch

        per_clip = [af1_windows(c, self.sample_rate, self.peak_normalize) for c in clips]
        flat = [w for ws in per_clip for w in ws]
        embs = self._clap_embed(flat)
        n_max = MAX_WINDOWS
        media = self.zero_embedding()[None, None].repeat(len(clips), n_max, 1)
        mask = torch.zeros(len(clips), n_max, dtype=torch.bool, device=media.device)
        i = 0
        for b, ws in enumerate(per_clip):
            n = len(ws)
            media[b, :n] = embs[i : i + n]
            mask[b, :n] = True
            i += len(ws)
        return media, mask

    def hidden_state(self, media, mask, input_ids):
        """``hidden_states[self.layer]`` (transformers numbering) of the Flamingo LM."""
        import torch

        from hsm_bench.embedders.flamingo import media_attention_mask

        decoder = self.model.lang_encoder.model.decoder
        n = len(decoder.layers)
        k = self.layer if self.layer >= 0 else n + 1 + self.layer
        dtype = next(self.model.parameters()).dtype
        audio = self.model.audio_transformer(media.to(dtype))
        allowed = media_attention_mask(input_ids == self.audio_token_id, mask, MAX_WINDOWS)
        for layer in decoder.layers:
            layer.condition(audio, allowed)
        captured: dict[str, Any] = {}
        hook = None
        if k == 0:
            hook = decoder.layers[0].register_forward_pre_hook(lambda m, args: captured.setdefault("h", args[0]))
        elif k < n:
            hook = decoder.layers[k - 1].register_forward_hook(lambda m, args, out: captured.setdefault("h", out))
        try:
            with torch.inference_mode():
                last = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
        finally:
            if hook is not None:
                hook.remove()
            for layer in decoder.layers:
                layer.condition(None, None)
        return captured.get("h", last)

    def embed_audio(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray]] = []
        for s in range(0, len(clips), self.batch_size):
            batch = list(clips[s : s + self.batch_size])
            n_real = len(batch)
            batch += [batch[-1]] * (self.batch_size - n_real)  # fixed shape: other clips' content has no effect
            out += self._forward(batch)[:n_real]
        return out

    def _forward(self, batch: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        media, mask = self.media(batch)
        input_ids = self.input_ids[None].repeat(len(batch), 1).to(self.device)
        hidden = self.hidden_state(media, mask, input_ids).double()
        pool = pooling_mask(input_ids, torch.ones_like(input_ids), self.audio_token_id, self.pooling).to(hidden.device)
        counts = pool.sum(dim=1)
        pooled = (hidden * pool[..., None]).sum(dim=1) / counts[:, None].clamp(min=1)
        n_windows = mask.sum(dim=1)
        return [
            {"embedding": pooled[b].cpu().numpy(), "n_pooled": np.array([int(counts[b])], dtype=np.int64),
             "n_windows": np.array([int(n_windows[b])], dtype=np.int64)}  # fmt: skip
            for b in range(len(batch))
        ]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "lm_keys_from_base": self.lm_keys_from_base, "prompt_text": self.prompt_text() if self.tokenizer else None}
