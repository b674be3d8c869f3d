"""PANNs Cnn14 (Kong et al. 2020) as audioldm-eval 0.0.3 runs it for KL, on plain torch.

The front end mirrors torchlibrosa's: an STFT computed as two 1-D convolutions whose
kernels (DFT basis times periodic Hann window) are stored in the checkpoint
(``spectrogram_extractor.stft.conv_real/conv_imag.weight``), centred with reflect padding,
power spectrum, the stored mel matrix (``logmel_extractor.melW``, librosa Slaney mel),
``10 log10(max(x, 1e-10))`` with ref 1 and no top_db. Then bn0 over mel bins, six conv blocks
(3x3 conv-BN-ReLU twice, 2x2 average pooling but the last), mean over frequency, max + mean
over time, fc1 + ReLU (the 2048-d embedding), fc_audioset (the 527 logits). Eval mode only:
no SpecAugment, no dropout, no mixup. State-dict keys are those of the official files, so
``Cnn14_16k_mAP=0.438.pth`` and ``Cnn14_mAP=0.431.pth`` load as they are; any other file is
rejected with the offending keys listed.

Each clip runs through the network alone at its full length (audioldm-eval uses batch size
1): features then never depend on what else is being scored, which keeps cached features
valid across runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench import weights
from hsm_bench.embedders.base import Embedder
from hsm_bench.audio.stft import mel_filterbank
from hsm_bench.embedders.htsat import float32_front_end
from hsm_bench.weights import check_state_dict, load_torch_file

CONFIGS = {
    16000: {"window": 512, "hop": 160, "mels": 64, "fmin": 50.0, "fmax": 8000.0},
    32000: {"window": 1024, "hop": 320, "mels": 64, "fmin": 50.0, "fmax": 14000.0},
}


class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        n = np.arange(n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
        basis = np.exp(-2j * np.pi * np.outer(n, np.arange(bins)) / n_fft) * window[:, None]  # [n, bins]
        self.conv_real.weight.data = torch.tensor(basis.real.T[:, None, :], dtype=torch.float32)
        self.conv_imag.weight.data = torch.tensor(basis.imag.T[:, None, :], dtype=torch.float32)


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.stft = _STFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, 1, frames, bins]
        x = F.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = self.stft.conv_real(x)
        imag = self.stft.conv_imag(x)
        return (real**2 + imag**2)[:, None].transpose(2, 3)


class _LogMel(nn.Module):
    def __init__(self, sr: int, n_fft: int, mels: int, fmin: float, fmax: float):
        super().__init__()
        self.melW = nn.Parameter(mel_filterbank(sr, n_fft, mels, fmin, fmax).T.contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(x, self.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))  # ref 1.0, no top_db


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool > 1 else x


class Cnn14(nn.Module):
    def __init__(self, sample_rate: int = 16000, classes: int = 527, widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)):
        super().__init__()
        c = CONFIGS[sample_rate]
        self.spectrogram_extractor = _Spectrogram(c["window"], c["hop"])
        self.logmel_extractor = _LogMel(sample_rate, c["window"], c["mels"], c["fmin"], c["fmax"])
        self.bn0 = nn.BatchNorm2d(c["mels"])
        chans = (1, *widths)
        for k in range(6):
            setattr(self, f"conv_block{k + 1}", _ConvBlock(chans[k], chans[k + 1]))
        self.fc1 = nn.Linear(widths[-1], widths[-1])
        self.fc_audioset = nn.Linear(widths[-1], classes)

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        x = float32_front_end(wav, self.spectrogram_extractor, self.logmel_extractor, self.bn0)  # [B, 1, frames, mels]
        for k in range(6):
            x = getattr(self, f"conv_block{k + 1}")(x, pool=2 if k < 5 else 1)
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2).values + torch.mean(x, dim=2)
        embedding = F.relu(self.fc1(x))
        return {"embedding": embedding, "logits": self.fc_audioset(embedding)}


class _Cnn14Embedder(Embedder):
    """Logits and 2048-d embedding of one mono clip at :attr:`sample_rate`."""

    weights_name: ClassVar[str] = ""

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.model: Cnn14 | None = None

    @property
    def weights(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.weights_name,)

    def load(self, device: str = "cpu") -> None:
        path = weights.resolve(self.weights_name)
        state = load_torch_file(path)
        if isinstance(state, dict) and "model" in state:
            state = state["model"]
        if not isinstance(state, dict):
            raise weights.WeightsMismatchError(f"{path} holds no PANNs state dict")
        self.load_state_dict(state, source=str(path))
        self.checkpoint_sha256 = weights.path_sha256(path)
        super().load(device)

    def load_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        model = Cnn14(self.sample_rate, **self.params.get("arch", {}))
        other = 32000 if self.sample_rate == 16000 else 16000
        hints = [("spectrogram_extractor", f"a PANNs file of another configuration (the {other // 1000} kHz Cnn14?)"),
                 ("audio_encoder.", "this is an MS-CLAP checkpoint, not PANNs")]  # fmt: skip
        model.load_state_dict(check_state_dict(model, state, f"PANNs Cnn14 {self.sample_rate // 1000} kHz", source, hints))
        self.model = model.eval().to(self.device)
        self.loaded = True

    def embed_audio(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out = []
        with torch.inference_mode():
            for clip in clips:
                x = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))[None].to(self.device)
                res = self.model(x)
                out.append({k: v[0].float().cpu().numpy() for k, v in res.items()})
        return out


class Cnn14_16k(_Cnn14Embedder):
    name: ClassVar[str] = "panns-cnn14-16k"
    sample_rate: ClassVar[int] = 16000
    weights_name: ClassVar[str] = "panns-cnn14-16k"


class Cnn14_32k(_Cnn14Embedder):
    name: ClassVar[str] = "panns-cnn14-32k"
    sample_rate: ClassVar[int] = 32000
    weights_name: ClassVar[str] = "panns-cnn14-32k"
