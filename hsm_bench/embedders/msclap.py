"""MS-CLAP (microsoft/CLAP, PyPI ``msclap``) embedders, re-implemented on torch + transformers.

Reproduces ``msclap.CLAPWrapper`` (read at 1.3.4) without its pins (numpy < 2,
transformers < 5, torchaudio, torchlibrosa). The module tree matches ``msclap.models.clap.CLAP``
so the official ``CLAP_weights_2023.pth`` / ``CLAP_weights_2022.pth`` (``{"model": state_dict}``)
load key for key, strictly (msclap itself loads with ``strict=False``, which hides a wrong file):

* ``audio_encoder.base.htsat.*`` (2023: HTS-AT tiny, :mod:`hsm_bench.embedders.htsat`) or
  ``audio_encoder.base.*`` (2022: PANNs Cnn14 with a 2048-d ``fc1``);
  ``audio_encoder.projection.{linear1,linear2,layer_norm}``: ``LN(l1(x) + l2(gelu(l1(x))))``
  with bias-free linears (dropout is off in eval).
* ``caption_encoder.base.*``: the transformers text model (2023 ``GPT2Model``, 2022
  ``BertModel``) built from the local ``gpt2`` / ``bert-base-uncased`` folder's config; its
  weights come from the checkpoint (if a checkpoint had none at all, from the folder, as
  msclap's ``AutoModel.from_pretrained`` + non-strict load would do).
  ``caption_encoder.projection.*`` as above; ``logit_scale`` (unused for cosines).

Audio (2023): 44.1 kHz input, 7-s windows (308700 samples); the front end is HTS-AT's own
(msclap's ``HTSATWrapper`` ignores the YAML and uses HTS-AT's ``config.py``): STFT 1024 /
hop 320 and a 64-bin mel filterbank built for **32 kHz, 50-14000 Hz**, applied to 44.1-kHz
audio; the filterbank stored in the checkpoint is the one used. 965 frames are stretched to
1024. Embedding = projection of the 768-d mean token. (2022): 44.1 kHz, 5-s windows, Cnn14
front end at 44.1 kHz, 50-14000 Hz, embedding = projection of ``relu(fc1(.))``.

Text: (2023) ``text + " <|endoftext|>"``, GPT-2 BPE with ``'!'`` (id 0) as the pad token,
padded to 77 tokens; the pooled state is the one at index ``count(ids != 0) - 1`` (so a
``'!'`` inside a caption shifts it, as in msclap). (2022) BERT uncased WordPiece, padded to
100, the ``[CLS]`` state. No truncation in msclap: a longer text is padded to its own
length here (what msclap gives for that text alone).

Windowing (tile padding, mean over 7-s windows or msclap's ``random.randrange`` crop):
:mod:`hsm_bench.embedders.clap_common`. Resampling to 44.1 kHz is the caller's (the
``clap`` metric reproduces msclap's torchaudio sinc with
:func:`hsm_bench.audio.resample.torchaudio_resample` by default, or takes the harness's soxr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench import weights
from hsm_bench.embedders.clap_common import ClapEmbedder, tokenizer_from
from hsm_bench.weights import CheckpointError, check_state_dict, load_torch_file
from hsm_bench.embedders.htsat import HTSAT, HTSATConfig, LogMel, Spectrogram, float32_front_end


class Projection(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(F.gelu(e1)))


class HTSATWrapper(nn.Module):
    def __init__(self, cfg: HTSATConfig):
        super().__init__()
        self.htsat = HTSAT(cfg)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.htsat(wave)["embedding"]


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class Cnn14(nn.Module):
    """PANNs Cnn14 as msclap 2022 uses it (embedding = ``relu(fc1(max_t + mean_t))``)."""

    def __init__(self, sample_rate=44100, n_fft=1024, hop=320, mel_bins=64, fmin=50.0, fmax=14000.0,
                 classes_num=527, out_emb=2048, channels=64):  # fmt: skip
        super().__init__()
        self.spectrogram_extractor = Spectrogram(n_fft, hop)
        self.logmel_extractor = LogMel(sample_rate, n_fft, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = [1] + [channels * 2**i for i in range(6)]
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(widths[-1], out_emb)
        self.fc_audioset = nn.Linear(out_emb, classes_num)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = float32_front_end(wave, self.spectrogram_extractor, self.logmel_extractor, self.bn0)
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, pool=2 if i < 5 else 1)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        return F.relu(self.fc1(x))


class AudioEncoder(nn.Module):
    def __init__(self, base: nn.Module, d_in: int, d_out: int):
        super().__init__()
        self.base = base
        self.projection = Projection(d_in, d_out)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base(wave))


class TextEncoder(nn.Module):
    def __init__(self, base: nn.Module, kind: str, d_in: int, d_out: int):
        super().__init__()
        self.base = base
        self.kind = kind
        self.projection = Projection(d_in, d_out)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
        if self.kind == "gpt2":  # msclap: the state at count(ids != 0) - 1
            last = torch.ne(input_ids, 0).sum(-1) - 1
            pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
        else:
            pooled = hidden[:, 0]
        return self.projection(pooled)


class MSCLAPModel(nn.Module):
    def __init__(self, audio: nn.Module, audio_dim: int, text: nn.Module, text_kind: str, text_dim: int, d_proj: int):
        super().__init__()
        self.audio_encoder = AudioEncoder(audio, audio_dim, d_proj)
        self.caption_encoder = TextEncoder(text, text_kind, text_dim, d_proj)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))


class _MSCLAP(ClapEmbedder):
    sample_rate: ClassVar[int] = 44100
    pad_mode: ClassVar[str] = "tile"
    crop_rule: ClassVar[str] = "msclap"
    embed_dim: ClassVar[int] = 1024
    ms_version: ClassVar[str] = ""
    text_kind: ClassVar[str] = ""
    text_len: ClassVar[int] = 77
    checkpoint_name: ClassVar[str] = ""
    text_weights: ClassVar[str] = ""
    _other_hint: ClassVar[tuple[str, str]] = ("", "")

    # -- construction
    def _audio(self) -> tuple[nn.Module, int]:
        raise NotImplementedError

    def _text_base(self, folder: Path | None, text_config: Any = None) -> tuple[nn.Module, int]:
        from transformers import AutoConfig, AutoModel

        cfg = text_config if text_config is not None else AutoConfig.from_pretrained(str(folder), local_files_only=True)
        expected = "gpt2" if self.text_kind == "gpt2" else "bert"
        if cfg.model_type != expected:
            raise weights.WeightsError(
                f"{self.name}: the text model folder {folder} holds a {cfg.model_type!r} model, expected {expected!r}"
            )
        return AutoModel.from_config(cfg), int(cfg.hidden_size)

    def build(self, folder: Path | None = None, text_config: Any = None) -> MSCLAPModel:
        audio, audio_dim = self._audio()
        text, text_dim = self._text_base(folder, text_config)
        d_proj = int(self.arch.get("d_proj", 1024))
        self.embed_dim = d_proj
        return MSCLAPModel(audio, audio_dim, text, self.text_kind, text_dim, d_proj)

    def load(self, device: str = "cpu") -> None:
        ckpt = weights.resolve(self.checkpoint_name)  # missing -> one-line WeightsMissingError
        folder = weights.resolve(self.text_weights)
        model = self.build(folder)
        state = load_torch_file(ckpt)
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            keys = list(state)[:3] if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{ckpt.name} is not an MS-CLAP checkpoint: expected {{'model': state_dict}}, found {keys}")
        hints = [("module.", "Its keys carry a 'module.' prefix: a LAION-CLAP (.pt) or DDP checkpoint?"),
                 ("audio_branch.", "This is a LAION-CLAP checkpoint."), self._other_hint,
                 ("clap.", "This looks like a clapcap (captioning) checkpoint.")]  # fmt: skip
        what = f"MS-CLAP {self.ms_version}"
        clean = check_state_dict(model, state["model"], what, ckpt.name, hints, optional_prefixes=("caption_encoder.base.",))
        text_keys = [k for k in model.state_dict() if k.startswith("caption_encoder.base.")]
        have = [k for k in text_keys if k in clean]
        if not have:  # msclap: AutoModel.from_pretrained(folder), then the checkpoint on top
            from transformers import AutoModel

            try:
                model.caption_encoder.base = AutoModel.from_pretrained(str(folder), local_files_only=True)
            except OSError as exc:
                raise CheckpointError(
                    f"{ckpt.name} has no text-encoder weights and {folder} has none either: {exc}"
                ) from exc
        elif len(have) != len(text_keys):
            missing = [k for k in text_keys if k not in clean]
            raise CheckpointError(f"{ckpt.name} is not a {what} checkpoint: {len(missing)} missing ({', '.join(missing[:3])}, ...)")
        model.load_state_dict(clean, strict=False)
        self._finish(model, tokenizer_from(folder, self._fix_tokenizer), device)
        self.checkpoint_sha256 = weights.checkpoint_sha256(self.checkpoint_name)

    def init_random(self, seed: int = 0, text: bool = False) -> None:
        torch.manual_seed(seed)
        if text:
            folder = weights.resolve(self.text_weights)
            self._finish(self.build(folder), tokenizer_from(folder, self._fix_tokenizer), self.device)
        else:
            audio, audio_dim = self._audio()
            d_proj = int(self.arch.get("d_proj", 1024))
            self.embed_dim = d_proj
            model = MSCLAPModel(audio, audio_dim, nn.Identity(), self.text_kind, 1, d_proj)
            self._finish(model, None, self.device)
        self.checkpoint_sha256 = f"random-{seed}"

    def _finish(self, model: MSCLAPModel, tokenizer: Any, device: str) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.loaded = True

    def _fix_tokenizer(self, tok: Any) -> None:
        pass

    # -- forward
    def _embed_windows(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.audio_encoder(batch)

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        toks = {k: v.to(self.device) for k, v in self._tokens(texts).items()}
        return self.model.caption_encoder(**toks)

    def _pad(self, ids: list[list[int]], pad_id: int, max_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(self.text_len, max(len(i) for i in ids))
        if length > max_positions:
            raise ValueError(f"{self.name}: a text of {max(len(i) for i in ids)} tokens exceeds the text encoder's {max_positions} positions")
        out = torch.full((len(ids), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for r, seq in enumerate(ids):
            out[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[r, : len(seq)] = 1
        return out, mask


class MSCLAP2023(_MSCLAP):
    """MS-CLAP 2023: HTS-AT tiny + GPT-2, 7-s windows at 44.1 kHz, 1024-d."""

    name = "msclap-2023"
    version = "1"
    window_s = 7.0
    ms_version = "2023"
    text_kind = "gpt2"
    text_len = 77
    checkpoint_name = "msclap-2023"
    text_weights = "gpt2"
    weights = ("msclap-2023", "gpt2")
    _other_hint = ("audio_encoder.base.conv_block1.", "This is an MS-CLAP 2022 checkpoint (Cnn14 + BERT): use msclap-2022.")

    def htsat_config(self) -> HTSATConfig:
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.arch.items() if k in HTSATConfig.__dataclass_fields__}
        return HTSATConfig(**fields)  # HTS-AT's config.py: 32 kHz filterbank, 50-14000 Hz, tiny

    def _audio(self) -> tuple[nn.Module, int]:
        cfg = self.htsat_config()
        return HTSATWrapper(cfg), cfg.num_features

    def _fix_tokenizer(self, tok: Any) -> None:
        tok.add_special_tokens({"pad_token": "!"})
        if tok.pad_token_id != 0:
            raise weights.WeightsError(f"{self.name}: the GPT-2 tokenizer maps '!' to {tok.pad_token_id}, expected id 0")

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [self.tokenizer(t + " <|endoftext|>", add_special_tokens=True)["input_ids"] for t in texts]
        input_ids, mask = self._pad(ids, 0, int(self.model.caption_encoder.base.config.n_positions))
        return {"input_ids": input_ids, "attention_mask": mask}


class MSCLAP2022(_MSCLAP):
    """MS-CLAP 2022: Cnn14 + BERT-base-uncased, 5-s windows at 44.1 kHz, 1024-d."""

    name = "msclap-2022"
    version = "1"
    window_s = 5.0
    ms_version = "2022"
    text_kind = "bert"
    text_len = 100
    checkpoint_name = "msclap-2022"
    text_weights = "bert-base-uncased"
    weights = ("msclap-2022", "bert-base-uncased")
    _other_hint = ("audio_encoder.base.htsat.", "This is an MS-CLAP 2023 checkpoint (HTSAT + GPT-2): use msclap-2023.")

    def _audio(self) -> tuple[nn.Module, int]:
        a = {k: self.arch[k] for k in ("channels", "out_emb", "classes_num") if k in self.arch}
        out_emb = int(a.get("out_emb", 2048))
        return Cnn14(**a), out_emb

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [self.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids, mask = self._pad(ids, pad, int(self.model.caption_encoder.base.config.max_position_embeddings))
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}
