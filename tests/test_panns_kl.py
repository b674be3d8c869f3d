"""PANNs Cnn14 and the KL metric: checkpoint layout, front end, KL formula, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from hsm_bench.embedders.panns import Cnn14, Cnn14_16k
from hsm_bench.metrics.kl import KL
from hsm_bench.store.cache import FeatureCache

librosa = pytest.importorskip("librosa")

SMALL = {"widths": (8, 8, 16, 16, 32, 32)}  # same layer names, fewer channels


def _load(path, **params):
    """A Cnn14_16k embedder loaded from ``path`` given as ``--weights panns-cnn14-16k=PATH``."""
    emb = Cnn14_16k(**params)
    with weights.overrides({"panns-cnn14-16k": path}):
        emb.load()
    return emb


def _checkpoint(path, sample_rate=16000, seed=0, **arch):
    torch.manual_seed(seed)
    model = Cnn14(sample_rate, **arch)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 1)
            mod.running_var.uniform_(0.5, 2)
    with torch.no_grad():
        model.bn0.running_mean.fill_(-40.0)
        model.bn0.running_var.fill_(400.0)
        model.fc_audioset.weight.mul_(50)
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return model.eval()


def _clips(n=3, seconds=2.5):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return [(0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
            for f in rng.uniform(100, 3000, n)]  # fmt: skip


def test_official_key_names_and_parameter_count():
    sd = Cnn14(16000).state_dict()
    assert list(sd)[:3] == ["spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight", "logmel_extractor.melW"]
    assert {"conv_block6.conv2.weight", "conv_block1.bn1.running_var", "fc1.weight", "fc_audioset.bias"} <= set(sd)
    assert sd["logmel_extractor.melW"].shape == (257, 64) and sd["fc_audioset.weight"].shape == (527, 2048)
    # PANNs reports 81 M parameters for Cnn14 (the frozen STFT and mel matrices included)
    assert sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) == pytest.approx(81.0e6, rel=0.01)


def test_front_end_matches_librosa():
    x = _clips(1)[0]
    m = Cnn14(16000).eval()
    with torch.no_grad():
        ours = m.logmel_extractor(m.spectrogram_extractor(torch.from_numpy(x)[None]))[0, 0].numpy()
    power = np.abs(librosa.stft(x, n_fft=512, hop_length=160, center=True, pad_mode="reflect")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)
    ref = 10 * np.log10(np.maximum(mel, 1e-10)).T
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-3


def test_round_trip_through_the_weights_resolver(tmp_path):
    model = _checkpoint(tmp_path / "c.pth", **SMALL)
    emb = _load(tmp_path / "c.pth", arch=SMALL)
    clip = _clips(1)[0]
    with torch.no_grad():
        direct = model(torch.from_numpy(clip)[None])["logits"][0].numpy()
    assert np.array_equal(emb.embed_audio([clip])[0]["logits"], direct)
    assert emb.checkpoint_sha256 == weights.file_sha256(tmp_path / "c.pth")


def test_wrong_checkpoints_are_rejected(tmp_path):
    _checkpoint(tmp_path / "c32.pth", 32000, **SMALL)
    with pytest.raises(weights.CheckpointError, match="wrong shape.*conv_real"):
        _load(tmp_path / "c32.pth", arch=SMALL)
    sd = Cnn14(16000, **SMALL).state_dict()
    torch.save({"model": {k.replace("conv_block", "block"): v for k, v in sd.items()}}, tmp_path / "renamed.pth")
    with pytest.raises(weights.CheckpointError, match="missing.*unexpected"):
        _load(tmp_path / "renamed.pth", arch=SMALL)


def test_missing_weights_name_the_download_command():
    with pytest.raises(weights.WeightsMissingError) as err:
        KL().setup()
    msg = str(err.value)
    assert "hsm-bench download-weights panns-cnn14-16k" in msg and "\n" not in msg


def _independent_kl(p_logits, q_logits):
    p = np.exp(p_logits - p_logits.max()) / np.exp(p_logits - p_logits.max()).sum()
    q = np.exp(q_logits - q_logits.max()) / np.exp(q_logits - q_logits.max()).sum()
    ps, qs = 1 / (1 + np.exp(-p_logits)), 1 / (1 + np.exp(-q_logits))
    soft = np.sum(np.where(p > 0, p * (np.log(p) - np.log(q + 1e-6)), 0.0))
    sig = np.sum(ps * (np.log(ps) - np.log(qs + 1e-6)))
    return soft, sig


def test_kl_against_an_independent_computation(tmp_path):
    model = _checkpoint(tmp_path / "c.pth", **SMALL)
    emb = _load(tmp_path / "c.pth", arch=SMALL)
    metric = KL()
    metric.use_embedder(emb)
    est, ref = _clips(2)
    short = ref[:8000]  # padded to 2 s like audioldm-eval
    got = metric.compute_batch([ScoreItem("a", est, 16000, ref), ScoreItem("b", est, 16000, short)])

    def logits(x):
        x = x - x.mean()
        x = np.pad(x, (0, max(0, 32000 - len(x))))
        with torch.no_grad():
            return model(torch.from_numpy(x.astype(np.float32))[None])["logits"][0].double().numpy()

    for res, r in zip(got, (ref, short)):
        soft, sig = _independent_kl(logits(r), logits(est))
        assert res["kl"] == pytest.approx(soft, rel=1e-4, abs=1e-6)
        assert res["kl_sigmoid"] == pytest.approx(sig, rel=1e-4, abs=1e-5)
    same = metric.compute(ScoreItem("c", ref, 16000, ref.copy()))
    assert abs(same["kl"]) < 1e-4  # only the eps term and float32 rounding remain


def test_reference_features_are_cached_once(tmp_path):
    _checkpoint(tmp_path / "c.pth", **SMALL)
    emb = _load(tmp_path / "c.pth", arch=SMALL)
    calls = []
    real = emb.embed_audio
    emb.embed_audio = lambda clips: calls.append(len(clips)) or real(clips)
    cache = FeatureCache(tmp_path / "cache")
    metric = KL()
    metric.use_embedder(emb, cache)
    a, b, ref = _clips(3)
    first = metric.compute(ScoreItem("x", a, 16000, ref))
    metric.compute(ScoreItem("x", b, 16000, ref))  # a second system: only its estimate is new
    again = metric.compute(ScoreItem("x", a, 16000, ref))  # a rerun: nothing new
    assert calls == [2, 1] and again == first


def test_kl_through_hsm_bench_run(compose_config, tiny_testset, tmp_path):
    """The run pipeline with a local checkpoint given as a weights override."""
    from hsm_bench.pipeline.run import run_pipeline

    _checkpoint(tmp_path / "c.pth", **SMALL)
    cfg = compose_config(
        "system=oracle_target", f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}",
        "runtime.progress=false", "metrics.names=[kl,sdr]", f"+weights.panns-cnn14-16k={tmp_path / 'c.pth'}",
        "+metrics.params.kl.embedder_params.arch.widths=[8,8,16,16,32,32]",
    )  # fmt: skip
    out = run_pipeline(cfg)
    kl = out["corpus"]["metrics"]["kl"]
    assert kl["n"] == 12 and abs(kl["mean"]) < 1e-4  # the target oracle: KL(x || x)
    run = json.loads(open(f"{out['run_dir']}/run.json").read())
    assert run["metrics"]["kl"]["embedder"]["checkpoint_sha256"] == weights.file_sha256(tmp_path / "c.pth")
