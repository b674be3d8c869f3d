"""Q-Audio: HSM-TSS's global-semantic encoder, a BLIP-2-style Q-Former (paper III-B2, IV-C).

What the paper states: one learnable query; a two-layer transformer with two self-attention
and two cross-attention layers (so every layer cross-attends, unlike BLIP-2's every other
layer); the audio branch cross-attends to frozen AudioMAE patch features; the text branch
uses self-attention only and shares it with the query, and works on frozen FLAN-T5 encoder
features instead of BLIP-2's own BERT embeddings; BLIP-2's three objectives (contrastive,
matching, audio-grounded generation), each weighted 1.0, with BLIP-2's attention masks
between query and text.

The layer is BLIP-2's Q-Former layer (BERT post-LayerNorm, eps 1e-12): self-attention over
query and text positions, cross-attention for query positions only, separate feed-forward
networks for query and text positions. Parameter names follow transformers'
``Blip2QFormerModel`` (``layernorm``, ``encoder.layer.{i}.attention.attention.query`` ...),
which the tests use as the independent reference for this code.

Assumptions (docs/hsm_tss.md): width 768, 12 heads, FFN 3072 (BLIP-2's BERT-base); BLIP-2's
``ln_vision`` LayerNorm on the AudioMAE features; T5 states enter the text branch through a
linear map; the global feature G is the query's output state (768-d) and the contrastive
space BLIP-2's 256-d projections; the text embedding for the contrastive loss is the masked
mean of the text branch (T5 has no [CLS]); for the generation objective the text positions
hold T5's (context-free) vocabulary embeddings of the caption, because its contextual
encoder states would show the tokens to predict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12  # BERT's, which BLIP-2's Q-Former keeps

DEFAULT = {"hidden": 768, "layers": 2, "heads": 12, "ffn": 3072, "cross_attention_every": 1, "n_queries": 1,
           "proj_dim": 256}  # fmt: skip


class _MHA(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_dim, hidden)
        self.value = nn.Linear(kv_dim, hidden)

    def forward(self, x, kv, mask=None):
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, t.shape[1], h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(kv)), split(self.value(kv))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)


class _Residual(nn.Module):
    """Linear, dropout-free residual, LayerNorm: BERT's ``*Output`` modules."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_dim: int):
        super().__init__()
        self.attention = _MHA(hidden, heads, kv_dim)
        self.output = _Residual(hidden, hidden)

    def forward(self, x, kv, mask=None):
        return self.output(self.attention(x, kv, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.dense = nn.Linear(hidden, ffn)

    def forward(self, x):
        return F.gelu(self.dense(x))


class QFormerLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, audio_dim: int, cross: bool):
        super().__init__()
        self.attention = _Attention(hidden, heads, hidden)
        self.crossattention = _Attention(hidden, heads, audio_dim) if cross else None
        self.intermediate, self.output = _Intermediate(hidden, ffn), _Residual(ffn, hidden)
        self.intermediate_query, self.output_query = _Intermediate(hidden, ffn), _Residual(ffn, hidden)

    def forward(self, x, n_query: int, mask=None, audio=None, audio_mask=None):
        x = self.attention(x, x, mask)
        parts = []
        if n_query:
            q = x[:, :n_query]
            if self.crossattention is not None:
                q = self.crossattention(q, audio, audio_mask)
            parts.append(self.output_query(self.intermediate_query(q), q))
        if x.shape[1] > n_query:
            t = x[:, n_query:]
            parts.append(self.output(self.intermediate(t), t))
        return torch.cat(parts, dim=1)


class _Encoder(nn.Module):
    def __init__(self, cfg: dict, audio_dim: int):
        super().__init__()
        every = int(cfg["cross_attention_every"])
        self.layer = nn.ModuleList(
            QFormerLayer(cfg["hidden"], cfg["heads"], cfg["ffn"], audio_dim, cross=i % every == 0)
            for i in range(cfg["layers"])
        )


class QFormer(nn.Module):
    """The shared transformer: ``layernorm`` on the inputs, then the layers."""

    def __init__(self, cfg: dict, audio_dim: int):
        super().__init__()
        self.layernorm = nn.LayerNorm(cfg["hidden"], eps=LN_EPS)
        self.encoder = _Encoder(cfg, audio_dim)

    def forward(self, x, n_query: int, mask=None, audio=None, audio_mask=None):
        x = self.layernorm(x)
        for layer in self.encoder.layer:
            x = layer(x, n_query, mask, audio, audio_mask)
        return x


class QAudio(nn.Module):
    """Audio branch -> global feature G ``[B, hidden]``; text branch -> ``[B, N, hidden]``."""

    def __init__(self, audio_dim: int, text_dim: int, vocab_size: int, **cfg):
        super().__init__()
        unknown = set(cfg) - set(DEFAULT)
        if unknown:
            raise ValueError(f"unknown Q-Audio settings: {', '.join(sorted(unknown))}")
        self.cfg = {**DEFAULT, **cfg}
        hidden, n_q = self.cfg["hidden"], self.cfg["n_queries"]
        self.ln_audio = nn.LayerNorm(audio_dim)
        self.query_tokens = nn.Parameter(torch.randn(1, n_q, hidden) * 0.02)
        self.text_in = nn.Linear(text_dim, hidden)
        self.qformer = QFormer(self.cfg, audio_dim)
        # heads of the three pre-training objectives (unused at separation time)
        self.audio_proj = nn.Linear(hidden, self.cfg["proj_dim"])
        self.text_proj = nn.Linear(hidden, self.cfg["proj_dim"])
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(hidden, 2)
        self.lm_head = nn.Linear(hidden, vocab_size)

    @property
    def n_queries(self) -> int:
        return self.cfg["n_queries"]

    def audio_features(self, patches: torch.Tensor) -> torch.Tensor:
        """AudioMAE ``[B, P, audio_dim]`` -> G ``[B, hidden]`` (the mean over queries; with the
        paper's single query, its output state)."""
        q = self.query_tokens.expand(patches.shape[0], -1, -1)
        return self.qformer(q, self.n_queries, audio=self.ln_audio(patches)).mean(1)

    def text_features(self, text_states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """T5 encoder states ``[B, N, text_dim]`` and their mask -> text branch ``[B, N, hidden]``."""
        mask = valid[:, None, None, :].bool()
        return self.qformer(self.text_in(text_states), 0, mask)

    # -- pre-training objectives (BLIP-2, paper III-B2) -------------------------------------
    def losses(self, patches, text_states, valid, token_embeds, token_ids) -> dict[str, torch.Tensor]:
        """ITC, ITM and LM losses of a batch of matching (audio, caption) pairs.

        ``text_states``/``valid``: T5 encoder states of the captions; ``token_embeds``/``token_ids``:
        T5 vocabulary embeddings and ids of the same tokens (the generation targets)."""
        b = patches.shape[0]
        audio = self.ln_audio(patches)
        q = self.query_tokens.expand(b, -1, -1)
        n_q = self.n_queries
        # ITC: uni-modal masks (query and text do not see each other)
        g = self.qformer(q, n_q, audio=audio)
        t = self.text_features(text_states, valid)
        a_emb = F.normalize(self.audio_proj(g), dim=-1)  # [B, Q, P]
        t_mean = (t * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        t_emb = F.normalize(self.text_proj(t_mean), dim=-1)  # [B, P]
        sim = torch.einsum("aqp,tp->atq", a_emb, t_emb).amax(-1) / self.temp.clamp(min=1e-3)  # max over queries
        labels = torch.arange(b, device=sim.device)
        itc = (F.cross_entropy(sim, labels, label_smoothing=0.1) + F.cross_entropy(sim.t(), labels, label_smoothing=0.1)) / 2
        # ITM: bidirectional masks; one negative caption per audio, drawn from the ITC softmax
        with torch.no_grad():
            w = sim.softmax(-1).masked_fill(torch.eye(b, dtype=torch.bool, device=sim.device), 0)
            neg = torch.multinomial(w + 1e-9, 1)[:, 0] if b > 1 else labels
        text_x = torch.cat([text_states, text_states[neg]])
        text_valid = torch.cat([valid, valid[neg]])
        x = torch.cat([q.repeat(2, 1, 1), self.text_in(text_x)], dim=1)
        full = torch.cat([torch.ones(2 * b, n_q, device=valid.device, dtype=torch.bool), text_valid.bool()], 1)
        h = self.qformer(x, n_q, full[:, None, None, :], audio=audio.repeat(2, 1, 1))
        itm_logits = self.itm_head(h[:, :n_q]).mean(1)
        itm = F.cross_entropy(itm_logits, torch.cat([torch.ones(b), torch.zeros(b)]).long().to(sim.device))
        # LM: queries see queries; text position i sees the queries and text positions <= i, and
        # predicts token i + 1
        n = token_ids.shape[1]
        x = torch.cat([q, self.text_in(token_embeds)], dim=1)
        m = torch.zeros(n_q + n, n_q + n, dtype=torch.bool, device=valid.device)
        m[:, :n_q] = True
        m[n_q:, n_q:] = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
        keys = torch.cat([torch.ones(b, n_q, dtype=torch.bool, device=valid.device), valid.bool()], 1)
        h = self.qformer(x, n_q, m[None, None] & keys[:, None, None, :], audio=audio)
        logits = self.lm_head(h[:, n_q:-1])
        target = token_ids[:, 1:].masked_fill(~valid[:, 1:].bool(), -100)
        lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        return {"itc": itc, "itm": itm, "lm": lm}
