"""HSM-TSS's own stages: Q-Audio against transformers' BLIP-2 Q-Former, the separators, the
acoustic decoder's KV cache against full recomputation, and the losses against hand
computations. Small random models; nothing is downloaded."""

from __future__ import annotations

import math

import pytest
import torch

from systems.hsm_tss.acoustic import AcousticDecoder
from systems.hsm_tss.layers import sinusoid
from systems.hsm_tss.qaudio import QAudio
from systems.hsm_tss.separators import GlobalSeparator, LocalSeparator

TOL = 2e-5  # float32, different kernels (matmul order) on the two sides


def _tiny_qaudio(seed=0, audio_dim=24, text_dim=20, vocab=50, every=1):
    torch.manual_seed(seed)
    q = QAudio(audio_dim, text_dim, vocab, hidden=32, layers=2, heads=4, ffn=64, cross_attention_every=every,
               proj_dim=16).eval()  # fmt: skip
    with torch.no_grad():  # LayerNorms away from their identity initialisation, so they matter
        for name, p in q.named_parameters():
            if "LayerNorm" in name or "layernorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return q


def _reference_qformer(q: QAudio, every: int):
    """transformers' Blip2QFormerModel holding Q-Audio's Q-Former weights."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    cfg = Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             cross_attention_frequency=every, encoder_hidden_size=24, use_qformer_text_input=True,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    cfg._attn_implementation = "eager"
    ref = Blip2QFormerModel(cfg).eval()
    missing, unexpected = ref.load_state_dict(q.qformer.state_dict(), strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return ref


@pytest.mark.parametrize("every", [1, 2])
def test_qformer_matches_transformers_blip2(every):
    q = _tiny_qaudio(every=every)
    ref = _reference_qformer(q, every)
    torch.manual_seed(1)
    patches = torch.randn(3, 10, 24)
    audio = q.ln_audio(patches)
    queries = q.query_tokens.expand(3, -1, -1)
    with torch.no_grad():
        ours = q.qformer(queries, 1, audio=audio)
        theirs = ref(query_embeds=queries, encoder_hidden_states=audio).last_hidden_state
        assert (ours - theirs).abs().max() < TOL
        assert torch.allclose(q.audio_features(patches), theirs.mean(1), atol=TOL)
        # query and text together, bidirectional, with padded text positions
        text = torch.randn(3, 5, 20)
        valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
        x = torch.cat([queries, q.text_in(text)], 1)
        keys = torch.cat([torch.ones(3, 1, dtype=torch.bool), valid], 1)
        ours = q.qformer(x, 1, keys[:, None, None, :], audio=audio)
        theirs = ref(query_embeds=x, query_length=1, attention_mask=keys.long(), encoder_hidden_states=audio)
        ok = keys[..., None].expand_as(ours)
        assert (ours - theirs.last_hidden_state)[ok].abs().max() < TOL
        # the text branch alone (no query): transformers with query_length 0
        ours = q.text_features(text, valid)
        theirs = ref(query_embeds=q.text_in(text), query_length=0, attention_mask=valid.long()).last_hidden_state
        assert (ours - theirs)[valid].abs().max() < TOL


def test_qaudio_global_feature_ignores_text_and_sees_audio():
    q = _tiny_qaudio()
    torch.manual_seed(2)
    a, b = torch.randn(1, 10, 24), torch.randn(1, 10, 24)
    with torch.no_grad():
        ga, gb = q.audio_features(a), q.audio_features(b)
        assert ga.shape == (1, 32)
        assert not torch.allclose(ga, gb)
        # the query's output depends on the audio only through cross-attention: permuting the
        # patches (a set, for attention without positions) leaves it unchanged
        assert torch.allclose(q.audio_features(a[:, torch.randperm(10)]), ga, atol=1e-5)


def test_qaudio_losses_are_finite_and_train():
    q = _tiny_qaudio().train()
    torch.manual_seed(3)
    patches, text = torch.randn(4, 10, 24), torch.randn(4, 6, 20)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[1, 4:] = False
    ids = torch.randint(0, 50, (4, 6))
    emb = torch.randn(4, 6, 20)
    losses = q.losses(patches, text, valid, emb, ids)
    assert set(losses) == {"itc", "itm", "lm"}
    # ITM's two classes and LM's 50 start near chance for random weights
    assert abs(losses["itm"].item() - math.log(2)) < 0.5
    assert abs(losses["lm"].item() - math.log(50)) < 1.5
    total = sum(losses.values())
    total.backward()
    assert q.query_tokens.grad is not None and q.query_tokens.grad.abs().sum() > 0
    assert q.lm_head.weight.grad.abs().sum() > 0 and q.itm_head.weight.grad.abs().sum() > 0


def test_lm_objective_cannot_see_the_future():
    """Text position i predicts token i + 1 from queries and tokens <= i: changing token j
    changes no prediction made before j."""
    q = _tiny_qaudio()
    torch.manual_seed(4)
    patches, text = torch.randn(1, 10, 24), torch.randn(1, 6, 20)
    emb = torch.randn(1, 6, 20)
    n_q = 1

    def hidden(e):
        x = torch.cat([q.query_tokens, q.text_in(e)], 1)
        m = torch.zeros(7, 7, dtype=torch.bool)
        m[:, :n_q] = True
        m[n_q:, n_q:] = torch.ones(6, 6, dtype=torch.bool).tril()
        return q.qformer(x, n_q, m[None, None], audio=q.ln_audio(patches))

    with torch.no_grad():
        h1 = hidden(emb)
        emb2 = emb.clone()
        emb2[0, 4] += 1.0
        h2 = hidden(emb2)
    assert torch.allclose(h1[0, : n_q + 4], h2[0, : n_q + 4], atol=1e-6)
    assert not torch.allclose(h1[0, n_q + 4], h2[0, n_q + 4])


def _tiny_local(g_dim=16, seed=0):
    torch.manual_seed(seed)
    return LocalSeparator(12, 10, g_dim, n_patches=16, dim=32, depth=2, heads=4, ffn=64).eval()


def test_local_separator_shapes_padding_and_attention():
    sep = _tiny_local()
    torch.manual_seed(5)
    s_mix, g = torch.randn(2, 16, 12), torch.randn(2, 16)
    task, cap = torch.randn(2, 2, 10), torch.randn(2, 5, 10)
    tv = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    cv = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        s_hat, att = sep(s_mix, g, task, tv, cap, cv, attention=True)
        assert s_hat.shape == (2, 16, 12)
        assert att.shape == (2, 4, 1 + 2 + 5, 16)
        # padded conditioning tokens get no attention and do not change the output
        assert att[1, :, [2, 6, 7]].abs().max() == 0
        cap2 = cap.clone()
        cap2[1, 3:] = 100.0
        task2 = task.clone()
        task2[1, 1] = -50.0
        s_hat2, _ = sep(s_mix, g, task2, tv, cap2, cv)
        assert torch.allclose(s_hat[1], s_hat2[1], atol=1e-5)
        # the weights of a patch over conditioning tokens are a part of its softmax row
        assert (att.sum(2) <= 1 + 1e-5).all() and (att >= 0).all()
        # the output does not depend on batch neighbours
        alone, _ = sep(s_mix[1:], g[1:], task[1:], tv[1:], cap[1:], cv[1:])
        assert torch.allclose(alone[0], s_hat[1], atol=1e-5)
        # the global feature conditions the output
        other, _ = sep(s_mix, g + 1, task, tv, cap, cv)
        assert not torch.allclose(other, s_hat)


def test_single_stage_local_separator_has_no_global_input():
    sep = _tiny_local(g_dim=None)
    assert sep.in_global is None
    with torch.no_grad():
        s_hat, att = sep(torch.randn(1, 16, 12), None, torch.randn(1, 1, 10), torch.ones(1, 1, dtype=torch.bool),
                         torch.randn(1, 3, 10), torch.ones(1, 3, dtype=torch.bool), attention=True)  # fmt: skip
    assert s_hat.shape == (1, 16, 12) and att.shape == (1, 4, 4, 16)


def test_global_separator_and_its_loss():
    torch.manual_seed(6)
    sep = GlobalSeparator(16, 10, dim=32, depth=2, heads=4, ffn=64).eval()
    g = torch.randn(3, 16)
    out = sep(g, torch.randn(3, 1, 10), torch.ones(3, 1, dtype=torch.bool), torch.randn(3, 4, 10),
              torch.ones(3, 4, dtype=torch.bool))  # fmt: skip
    assert out.shape == (3, 16)
    pred, target = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # item 1: cos 0 -> 1, L1 mean (1 + 1) / 2 = 1; item 2: identical -> 0; batch mean (2 + 0) / 2
    assert GlobalSeparator.loss(pred, target).item() == pytest.approx(1.0)
    assert GlobalSeparator.loss(pred, target, 1.0, 0.0).item() == pytest.approx(0.5)
    assert LocalSeparator.loss(torch.zeros(1, 2, 2), torch.tensor([[[1.0, -3.0], [0.0, 0.0]]])).item() == pytest.approx(1.0)


def _tiny_decoder(seed=0):
    torch.manual_seed(seed)
    return AcousticDecoder(12, 4, 32, n_prefix=8, dim=32, depth=2, heads=4, ffn=64, max_frames=24).eval()


def test_kv_cache_decoding_equals_full_recomputation():
    dec = _tiny_decoder()
    s = torch.randn(2, 8, 12)
    c1, l1 = dec.generate(s, 20, use_cache=True, return_logits=True)
    c2, l2 = dec.generate(s, 20, use_cache=False, return_logits=True)
    assert c1.shape == (2, 20, 4) and c1.dtype == torch.long
    assert (l1 - l2).abs().max() < 1e-4
    assert torch.equal(c1, c2)
    # greedy: every code is the argmax over the codes (the end class excluded) of its step
    assert torch.equal(c1, l1[..., :32].argmax(-1))
    # teacher forcing on the generated codes reproduces each step's logits
    with torch.no_grad():
        forced = dec(s, c1)
    assert forced.shape == (2, 21, 4, 33)
    assert (forced[:, :20] - l1).abs().max() < 1e-4


def test_decoder_is_causal_and_prefix_bidirectional():
    dec = _tiny_decoder(1)
    torch.manual_seed(7)
    s = torch.randn(1, 8, 12)
    codes = torch.randint(0, 32, (1, 10, 4))
    with torch.no_grad():
        a = dec(s, codes)
        later = codes.clone()
        later[0, 6:] = (later[0, 6:] + 1) % 32
        b = dec(s, later)
        # logits at frame t come from frames < t: frames 0..6 predicted identically
        assert torch.allclose(a[0, :7], b[0, :7], atol=1e-6)
        assert not torch.allclose(a[0, 7:], b[0, 7:])
        # every prefix feature reaches the first prediction, the last one too
        s2 = s.clone()
        s2[0, -1] += 1.0
        assert not torch.allclose(dec(s2, codes)[0, 0], a[0, 0])


def test_decoder_loss_targets_codes_then_end():
    dec = _tiny_decoder()
    s = torch.randn(2, 8, 12)
    codes = torch.randint(0, 32, (2, 5, 4))
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        logits = dec(s, codes)
        lp = logits.log_softmax(-1)
        terms = []
        for i, n in enumerate([5, 3]):
            for t in range(n + 1):
                for k in range(4):
                    cls = int(codes[i, t, k]) if t < n else 32
                    terms.append(-lp[i, t, k, cls])
        expected = torch.stack(terms).mean()
        assert dec.loss(s, codes, valid).item() == pytest.approx(expected.item(), rel=1e-5)


def test_sampling_is_seeded_and_top_k_bounded():
    dec = _tiny_decoder()
    s = torch.randn(1, 8, 12)
    a = dec.generate(s, 10, top_k=5, temperature=1.0, seed=3)
    b = dec.generate(s, 10, top_k=5, temperature=1.0, seed=3)
    c = dec.generate(s, 10, top_k=5, temperature=1.0, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    _, logits = dec.generate(s, 10, top_k=5, seed=3, return_logits=True)
    top = logits[..., :32].topk(5, -1).indices
    assert (top == a[..., None]).any(-1).all()


def test_sinusoid_positions_by_hand():
    p = sinusoid(3, 4)
    assert p[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert p[2, 0].item() == pytest.approx(math.sin(2.0))
    assert p[2, 3].item() == pytest.approx(math.cos(2.0 / 100.0), rel=1e-6)
