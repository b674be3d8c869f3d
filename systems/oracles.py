"""Oracle systems: the bounds every real system is read against.

* ``oracle_mixture`` returns the mixture unchanged: the no-separation baseline
  (SDRi = SI-SDRi = 0 by construction).
* ``oracle_target`` returns the reference: the upper bound of every reference metric.
* ``oracle_irm`` applies the ideal ratio mask computed from the true target and
  interferer STFTs to the mixture STFT: what a perfect mask-based separator could do.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hsm_bench.api.system import SeparationBatch, System


class MixtureOracle(System):
    name: ClassVar[str] = "oracle_mixture"

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        return batch.mixture.clone()


class TargetOracle(System):
    name: ClassVar[str] = "oracle_target"
    requires_target: ClassVar[bool] = True

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        return batch.target.clone()


class IdealRatioMask(System):
    """Ideal ratio mask ``(|S|^2 / (|S|^2 + |N|^2)) ** beta`` (Wang et al.; beta = 0.5)."""

    name: ClassVar[str] = "oracle_irm"
    requires_target: ClassVar[bool] = True

    def __init__(self, n_fft: int = 1024, hop: int = 256, beta: float = 0.5):
        super().__init__(n_fft=n_fft, hop=hop, beta=beta)
        self.n_fft, self.hop, self.beta = int(n_fft), int(hop), float(beta)

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        # one item at a time: a batched FFT may round differently with the batch's size, and an
        # oracle's numbers must not depend on which items shared its batch (or shard)
        out = torch.zeros_like(batch.mixture)
        for k in range(len(batch)):
            n = int(batch.lengths[k])  # the item alone, without the batch's zero padding
            out[k, :, :n] = self._one(batch.mixture[k : k + 1, :, :n], batch.target[k : k + 1, :, :n],
                                      batch.interferer[k : k + 1, :, :n])[0]  # fmt: skip
        return out

    def _one(self, mixture: torch.Tensor, target: torch.Tensor, interferer: torch.Tensor) -> torch.Tensor:
        b, c, t = mixture.shape
        window = torch.hann_window(self.n_fft, device=mixture.device, dtype=torch.float64)

        def spec(x: torch.Tensor) -> torch.Tensor:
            return torch.stft(x.reshape(b * c, t).double(), self.n_fft, self.hop, window=window, center=True,
                              return_complex=True)  # fmt: skip

        mix, tgt, itf = spec(mixture), spec(target), spec(interferer)
        ps, pn = tgt.abs() ** 2, itf.abs() ** 2
        mask = (ps / (ps + pn).clamp_min(1e-20)) ** self.beta
        out = torch.istft(mix * mask, self.n_fft, self.hop, window=window, center=True, length=t)
        return out.reshape(b, c, t).float()
