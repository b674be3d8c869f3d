"""HSM-TSS's acoustic decoder H3: local-semantic features -> codec tokens (paper III-E, IV-C).

Stated: an autoregressive transformer, 12 layers, 8 heads, width 1024, generating the codec's
tokens frame by frame conditioned on S (eq. 9), trained with teacher forcing and cross-entropy
(eq. 10), start and end tokens, "all groups of t-th step are simultaneously generated in a
single stage" (one step per codec frame, every codebook at once: 500 steps for 10 s of the
50-frame/s TF-Codec).

Assumed (docs/hsm_tss.md): a decoder-only prefix model. The 512 AudioMAE patch features,
mapped to the width with learned positions, form a prefix that attends to itself both ways;
then a learned start vector, then one token per frame whose input is the sum of one embedding
per codebook plus a fixed sinusoidal frame position. One linear head per codebook over
``codebook_size + 1`` classes, the last being the end token. At separation time the number of
frames is known (the input's length), so decoding runs exactly that many steps with the end
class excluded; greedy (argmax) by default so that a run is deterministic, or top-k sampling
from a seeded generator.

Decoding keeps every layer's keys and values (``KVCache``): a step computes one new position
instead of the whole sequence. ``generate(..., use_cache=False)`` recomputes the whole
sequence at each step (the reference the cache is tested against, and the benchmark's
"without cache" figure).
"""

from __future__ import annotations

import torch
from torch import nn

from systems.hsm_tss.layers import Transformer, sinusoid

DEFAULT = {"dim": 1024, "depth": 12, "heads": 8, "ffn": 4096, "max_frames": 512}


class AcousticDecoder(nn.Module):
    def __init__(self, s_dim: int, n_codebooks: int, codebook_size: int, n_prefix: int = 512, **cfg):
        super().__init__()
        unknown = set(cfg) - set(DEFAULT)
        if unknown:
            raise ValueError(f"unknown acoustic decoder settings: {', '.join(sorted(unknown))}")
        self.cfg = {**DEFAULT, **cfg}
        dim = self.cfg["dim"]
        self.n_codebooks, self.codebook_size, self.n_prefix = n_codebooks, codebook_size, n_prefix
        self.max_frames = int(self.cfg["max_frames"])
        self.in_prefix = nn.Linear(s_dim, dim)
        self.prefix_pos = nn.Parameter(torch.randn(n_prefix, dim) * 0.02)
        self.start = nn.Parameter(torch.randn(dim) * 0.02)
        self.code_embed = nn.ModuleList(nn.Embedding(codebook_size, dim) for _ in range(n_codebooks))
        self.transformer = Transformer(dim, self.cfg["depth"], self.cfg["heads"], self.cfg["ffn"])
        self.head = nn.Linear(dim, n_codebooks * (codebook_size + 1))
        self.register_buffer("frame_pos", sinusoid(self.max_frames + 1, dim), persistent=False)

    @property
    def end_class(self) -> int:
        return self.codebook_size

    # -- pieces -------------------------------------------------------------------------------
    def _prefix(self, s: torch.Tensor) -> torch.Tensor:
        if s.shape[1] != self.n_prefix:
            raise ValueError(f"acoustic decoder built for {self.n_prefix} prefix features, got {s.shape[1]}")
        return self.in_prefix(s) + self.prefix_pos

    def _frames(self, codes: torch.Tensor, first: int) -> torch.Tensor:
        """Inputs of the frames ``codes [B, F, K]``, at frame positions ``first + 1 ...`` (0: start)."""
        x = sum(emb(codes[..., k]) for k, emb in enumerate(self.code_embed))
        return x + self.frame_pos[first + 1 : first + 1 + codes.shape[1]]

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).view(*h.shape[:-1], self.n_codebooks, self.codebook_size + 1)

    def _mask(self, n_new: int, n_total: int, device) -> torch.Tensor:
        """Prefix-LM mask ``[n_new, n_total]`` for the last ``n_new`` of ``n_total`` positions:
        prefix positions see the whole prefix, later ones everything up to themselves."""
        rows = torch.arange(n_total - n_new, n_total, device=device)[:, None]
        cols = torch.arange(n_total, device=device)[None, :]
        return (cols <= rows) | ((rows < self.n_prefix) & (cols < self.n_prefix))

    # -- training -----------------------------------------------------------------------------
    def forward(self, s: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits ``[B, F + 1, K, codebook_size + 1]`` for frames 0..F (F: end)."""
        b, f, _ = codes.shape
        if f > self.max_frames:
            raise ValueError(f"{f} frames: the acoustic decoder takes at most {self.max_frames}")
        x = torch.cat([self._prefix(s), (self.start + self.frame_pos[0]).expand(b, 1, -1), self._frames(codes, 0)], 1)
        n = x.shape[1]
        h, _ = self.transformer(x, self._mask(n, n, x.device))
        return self._logits(h[:, self.n_prefix :])

    def loss(self, s: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 10: cross-entropy of every codebook's token and, after the last valid frame, the end token."""
        b, f, k = codes.shape
        lengths = valid.sum(1) if valid is not None else torch.full((b,), f, device=codes.device)
        target = torch.full((b, f + 1, k), -100, dtype=torch.long, device=codes.device)
        for i in range(b):
            n = int(lengths[i])
            target[i, :n] = codes[i, :n]
            target[i, n] = self.end_class
        logits = self(s, codes)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

    # -- inference ----------------------------------------------------------------------------
    def _pick(self, logits: torch.Tensor, top_k: int, temperature: float, generator) -> torch.Tensor:
        logits = logits[..., : self.codebook_size]  # the length is known: never end early
        if top_k <= 1:
            return logits.argmax(-1)
        values, idx = logits.topk(min(top_k, self.codebook_size), dim=-1)
        probs = (values / max(temperature, 1e-5)).softmax(-1)
        choice = torch.multinomial(probs.reshape(-1, probs.shape[-1]).float().cpu(), 1, generator=generator)
        return idx.gather(-1, choice.view(*idx.shape[:-1], 1).to(idx.device))[..., 0]

    @torch.no_grad()
    def generate(self, s: torch.Tensor, n_frames: int, use_cache: bool = True, top_k: int = 1,
                 temperature: float = 1.0, seed: int = 0, return_logits: bool = False):  # fmt: skip
        """Codes ``[B, n_frames, K]`` (and, with ``return_logits``, each step's logits)."""
        if not 0 < n_frames <= self.max_frames:
            raise ValueError(f"{n_frames} frames: the acoustic decoder generates 1 to {self.max_frames}")
        b = s.shape[0]
        generator = torch.Generator().manual_seed(seed)
        head = torch.cat([self._prefix(s), (self.start + self.frame_pos[0]).expand(b, 1, -1)], 1)
        codes = torch.zeros(b, 0, self.n_codebooks, dtype=torch.long, device=s.device)
        steps = []
        cache = self.transformer.new_cache(b, head.shape[1] + n_frames, s.device, head.dtype) if use_cache else None
        x = head
        for t in range(n_frames):
            if use_cache:
                n_total = cache.length + x.shape[1]
                h, _ = self.transformer(x, self._mask(x.shape[1], n_total, x.device), cache=cache)
            else:
                full = torch.cat([head, self._frames(codes, 0)], 1) if t else head
                n = full.shape[1]
                h, _ = self.transformer(full, self._mask(n, n, full.device))
            logits = self._logits(h[:, -1])
            if return_logits:
                steps.append(logits)
            new = self._pick(logits, top_k, temperature, generator)[:, None]
            codes = torch.cat([codes, new], 1)
            x = self._frames(new, t)
        return (codes, torch.stack(steps, 1)) if return_logits else codes
