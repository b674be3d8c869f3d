"""The ``clap`` metric (clap, clap_a, clapi) and the deterministic windowing.

Tiny random MS-CLAP 2023 / LAION-CLAP checkpoints are built here in the official file
layouts and found through ``--weights`` overrides, exactly as real files would be.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from hsm_bench.audio.resample import torchaudio_resample
from hsm_bench.embedders.clap_common import (
    item_seed,
    pad_to_window,
    reference_crop,
    window_starts,
)
from hsm_bench.metrics.clap import CLAPScore
from hsm_bench.registry import METRICS, resolve_metric_names
from hsm_bench.store.cache import FeatureCache
from tests import clap_tiny

TINY_2023 = {**clap_tiny.TINY_HTSAT, "d_proj": 16}
TINY_LAION = {**clap_tiny.TINY_HTSAT, "joint_dim": 16}
SR = 44100


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("clap-metric")
    f = {"gpt2": clap_tiny.gpt2_folder(d / "gpt2"), "roberta": clap_tiny.roberta_folder(d / "roberta")}
    f["2023"] = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2023.pth", "2023", f["gpt2"], TINY_2023, seed=5)
    f["laion"] = clap_tiny.laion_checkpoint(d / "630k-audioset-best.pt", f["roberta"], TINY_LAION, seed=6)
    return f


@pytest.fixture
def overrides(files, monkeypatch):
    names = {"msclap-2023": "2023", "gpt2": "gpt2", "laion-clap-630k-audioset": "laion", "roberta-base": "roberta"}
    for name in names:  # stand-in files cannot have the published size
        monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.spec(name), size=None, sha256=None))
    with weights.overrides({name: files[key] for name, key in names.items()}):
        yield files


def _metric(overrides, cache=None, **params) -> CLAPScore:
    # 2 windows per pass: the zero-filled fixed-size batches stay exercised, and embedding one
    # short clip does not pay for 8 windows
    params.setdefault("backend_params", {"arch": TINY_2023, "batch_size": 2})
    m = CLAPScore(**params)
    m.setup("cpu", cache)
    return m


def _sound(seconds: float, f0: float, seed: int, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * f0 * t) + 0.1 * rng.standard_normal(len(t))).astype(np.float32)


def _item(i: int, seconds: float = 10.0, task: str = "extract", sr: int = SR, **kw) -> ScoreItem:
    est = _sound(seconds, 300 + 50 * i, i, sr)
    ref = _sound(seconds, 300 + 50 * i, 100 + i, sr)
    mix = ref + _sound(seconds, 2000, 200 + i, sr)
    d = dict(id=f"item-{i}", estimate=est, sample_rate=sr, reference=ref, mixture=mix, caption="a dog barks",
             captions=["rain falls on a metal roof", "noise hisses"], task=task)  # fmt: skip
    d.update(kw)
    return ScoreItem(**d)


# Two float32 computations of the same embedding in other batch shapes or batch rows (other
# GEMM kernels and blockings) differ by a few ulps (<= 1e-7 seen); cosines of such embeddings
# are compared with this bound. Exact equality is asserted only for repeated computations.
TOL = 1e-5


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ------------------------------------------------------------------ windowing
def test_window_rules():
    assert window_starts(10, 7) == [0, 3]
    assert window_starts(7, 7) == [0] and window_starts(3, 7) == [0]
    assert window_starts(21, 7) == [0, 7, 14]
    assert window_starts(22, 7) == [0, 7, 14, 15]
    assert window_starts(10, 4, hop=2) == [0, 2, 4, 6]
    x = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(pad_to_window(x, 8, "tile"), [1, 2, 3, 1, 2, 3, 1, 2])  # msclap
    np.testing.assert_array_equal(pad_to_window(x, 8, "repeatpad"), [1, 2, 3, 1, 2, 3, 0, 0])  # LAION
    np.testing.assert_array_equal(pad_to_window(x, 3, "repeatpad"), x)


def test_reference_crop_reproduces_the_reference_rngs():
    x = np.arange(100, dtype=np.float32)
    s = item_seed("clip-1")
    assert s == item_seed("clip-1") and s != item_seed("clip-2") and item_seed("clip-1", seed=1) != s
    random.seed(s)  # msclap: random.randrange(len - W) after seeding Python's RNG
    start = random.randrange(100 - 30)
    np.testing.assert_array_equal(reference_crop(x, 30, "msclap", s), x[start : start + 30])
    np.random.seed(s)  # LAION: np.random.randint(0, overflow + 1) after seeding numpy's RNG
    start = np.random.randint(0, 100 - 30 + 1)
    np.testing.assert_array_equal(reference_crop(x, 30, "laion", s), x[start : start + 30])
    starts = {int(reference_crop(x, 30, "msclap", item_seed(f"id-{k}"))[0]) for k in range(20)}
    assert len(starts) > 5  # different ids, different crops
    np.testing.assert_array_equal(reference_crop(x[:10], 30, "msclap", s), np.tile(x[:10], 3))


def test_mean_windowing_is_the_mean_of_normalised_window_embeddings(overrides):
    m = _metric(overrides)
    e = m.embedder
    x = _sound(10.0, 440, 0)
    feats = e.embed_audio([x])[0]
    assert int(feats["n_windows"]) == 2
    with torch.no_grad():
        w = torch.from_numpy(np.stack([x[: 7 * SR], x[-7 * SR :]]))
        parts = torch.nn.functional.normalize(e.model.audio_encoder(w), dim=-1).numpy()
    np.testing.assert_allclose(feats["embedding"], parts.mean(axis=0), atol=1e-6)
    # batches have a fixed shape: with its windows in the same rows, a clip's embedding is
    # bit-identical whatever shares its batch
    other = _sound(3.0, 220, 1)
    np.testing.assert_array_equal(e.embed_audio([x, other])[0]["embedding"], feats["embedding"])
    # in other rows it may round differently (threads split rows differently): near-equal
    shifted = e.embed_audio([other, x])[1]["embedding"]
    np.testing.assert_allclose(shifted, feats["embedding"], rtol=0, atol=TOL)
    # stereo is averaged to mono before the model (no channel concatenation)
    st = np.stack([x, x])
    np.testing.assert_array_equal(e.embed_audio([st])[0]["embedding"], feats["embedding"])


def test_torchaudio_resampler():
    """Windowed-sinc resampling (torchaudio's defaults; bit-exact against torchaudio 2.11 in
    benchmarks/compare_clap_msclap.py): lengths, band-limited fidelity, agreement with soxr."""
    from hsm_bench.audio.resample import resample

    for sr_in, sr_out, n in ((16000, 44100, 16000), (16000, 48000, 12345), (44100, 48000, 4410), (32000, 48000, 7)):
        assert len(torchaudio_resample(np.zeros(n, np.float32), sr_in, sr_out)) == -(-n * sr_out // sr_in)
    t_in = np.arange(32000) / 16000
    x = np.sin(2 * np.pi * 1000 * t_in).astype(np.float32)
    y = torchaudio_resample(x, 16000, 44100)
    t_out = np.arange(len(y)) / 44100
    core = slice(2000, -2000)
    np.testing.assert_allclose(y[core], np.sin(2 * np.pi * 1000 * t_out)[core], atol=2e-3)
    np.testing.assert_allclose(y[core], resample(x, 16000, 44100)[core], atol=2e-3)
    assert torchaudio_resample(x, 16000, 16000) is not None and np.array_equal(torchaudio_resample(x, 16000, 16000), x)


def test_metric_resamples_test_set_audio_itself(overrides):
    m = _metric(overrides)  # resampler="torchaudio": takes any rate
    item = _item(0, seconds=10.0, sr=16000)
    vals = m.compute(item)
    e = m.embedder
    est = e.embed_audio([torchaudio_resample(item.estimate, 16000, SR)])[0]["embedding"]
    assert vals["clap"] == pytest.approx(_cos(e.embed_text(["a dog barks"])[0], est), abs=1e-6)
    harness = _metric(overrides, resampler="harness")
    from hsm_bench.audio.resample import resample

    up = dataclasses.replace(item, sample_rate=SR, **{r: resample(getattr(item, r), 16000, SR) for r in ("estimate", "reference", "mixture")})
    other = harness.compute(up)
    assert other["clap"] != vals["clap"]  # another resampler, other numbers (small with real weights)
    with pytest.raises(ValueError, match="resampler"):
        CLAPScore(resampler="librosa")


# ------------------------------------------------------------------ the metric
def test_clap_values_match_an_independent_cosine(overrides):
    m = _metric(overrides)
    items = [_item(0), _item(1, seconds=4.0), _item(2, seconds=7.0)]
    out = m.compute_batch(items)
    e = m.embedder
    text = e.embed_text(["a dog barks"])[0]
    for item, vals in zip(items, out):
        est, ref, mix = (e.embed_audio([a])[0]["embedding"] for a in (item.estimate, item.reference, item.mixture))
        # the metric embeds the items' windows together, in other batch rows: near-equal
        assert vals["clap"] == pytest.approx(_cos(text, est), abs=TOL)
        assert vals["clap_a"] == pytest.approx(_cos(est, ref), abs=TOL)
        assert vals["clapi"] == pytest.approx(_cos(text, est) - _cos(text, mix), abs=TOL)
        assert set(vals) == {"clap", "clap_a", "clapi"} and all(-1 <= v <= 1 for k, v in vals.items() if k != "clapi")


def test_clapi_is_clap_of_estimate_minus_clap_of_mixture(overrides):
    m = _metric(overrides)
    item = _item(3)
    with_mix = m.compute(item)
    est_only = m.compute(dataclasses.replace(item, mixture=None))
    mix_as_est = m.compute(dataclasses.replace(item, estimate=item.mixture, mixture=None))
    assert "clapi" not in est_only
    assert with_mix["clap"] == est_only["clap"]  # the estimate's windows sit in the same batch rows
    # the mixture's windows sit in other rows in the two calls
    assert with_mix["clapi"] == pytest.approx(with_mix["clap"] - mix_as_est["clap"], abs=TOL)


def test_same_run_twice_gives_the_same_numbers(overrides):
    items = [_item(0, seconds=8.0), _item(1, seconds=2.0)]  # two windows each, one (tiled) window each
    for windowing in ("mean", "reference_crop"):
        a = _metric(overrides, windowing=windowing).compute_batch(items)
        assert _metric(overrides, windowing=windowing).compute_batch(items) == a  # repeated: identical
        # another order puts the windows in other batch rows: equal up to float32 rounding
        b = _metric(overrides, windowing=windowing).compute_batch(list(reversed(items)))[::-1]
        for x, y in zip(a, b):
            assert set(x) == set(y) == {"clap", "clap_a", "clapi"}
            assert all(y[k] == pytest.approx(x[k], abs=TOL) for k in x)


def test_reference_crop_depends_on_the_item_id_only(overrides):
    m = _metric(overrides, windowing="reference_crop")
    item = _item(0, seconds=10.0)
    same = m.compute(item)
    assert m.compute(dataclasses.replace(item)) == same
    other = m.compute(dataclasses.replace(item, id="another-id"))
    assert other["clap"] != same["clap"]
    # the crop is the msclap one under item_seed(id): embed it by hand
    start = random.Random(item_seed(item.id)).randrange(len(item.estimate) - 7 * SR)
    emb = m.embedder.embed_audio([item.estimate[start : start + 7 * SR]])[0]["embedding"]
    assert same["clap"] == pytest.approx(_cos(m.embedder.embed_text(["a dog barks"])[0], emb), abs=1e-6)
    assert m.describe()["params"]["windowing"] == "reference_crop"


def test_gt_rows_estimate_equal_to_reference(overrides, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    m = _metric(overrides, cache=cache)
    items = [_item(k) for k in range(3)]
    gt = [dataclasses.replace(it, estimate=it.reference) for it in items]
    out = m.compute_batch(gt)
    for vals in out:
        assert vals["clap_a"] == pytest.approx(1.0, abs=1e-6)
    assert cache.misses == 6 and cache.hits == 0  # estimate == reference embedded once per item
    # a second system: reference and mixture features come from the cache
    m.compute_batch(items)
    assert cache.hits == 6 and cache.misses == 9


def test_text_choice_for_remove_items(overrides):
    m = _metric(overrides)
    e = m.embedder
    t = {s: e.embed_text([s])[0] for s in ("a dog barks", "rain falls on a metal roof", "noise hisses")}
    item = _item(0, task="remove")
    est = e.embed_audio([item.estimate])[0]["embedding"]
    assert m.compute(item)["clap"] == pytest.approx(_cos(t["rain falls on a metal roof"], est), abs=1e-6)
    cap = _metric(overrides, text="caption").compute(item)["clap"]
    assert cap == pytest.approx(_cos(t["a dog barks"], est), abs=1e-6)
    mean = _metric(overrides, text="captions_mean").compute(item)["clap"]
    assert mean == pytest.approx(_cos(t["rain falls on a metal roof"] + t["noise hisses"], est), abs=1e-6)
    # no description of the remaining sound: only clap_a
    out = m.compute(dataclasses.replace(item, captions=[]))
    assert set(out) == {"clap_a"}


def test_item_errors_stay_with_their_item(overrides):
    m = _metric(overrides, resampler="harness")  # the scorer resamples: another rate is an error
    bad_rate = _item(1, sr=16000)
    empty = _item(2, estimate=np.zeros(0, np.float32))
    out = m.compute_batch([_item(0), bad_rate, empty, _item(3)])
    assert isinstance(out[1], Exception) and "44100 Hz" in str(out[1])
    assert isinstance(out[2], Exception) and "empty" in str(out[2])
    assert set(out[0]) == set(out[3]) == {"clap", "clap_a", "clapi"}
    silent = m.compute(_item(4, estimate=np.zeros(SR, np.float32)))
    assert np.isfinite(silent["clap"])


def test_laion_backend_uses_48k_and_repeatpad(overrides):
    m = _metric(overrides, backend="laion-clap-630k-audioset", backend_params={"arch": TINY_LAION, "batch_size": 2})
    assert m.rate == 48000 and m.info.sample_rate is None and "48000 Hz" in m.info.reference
    assert CLAPScore(backend="laion-clap-630k-audioset", resampler="harness").info.sample_rate == 48000
    item = _item(0, seconds=4.0, sr=48000)
    vals = m.compute(item)
    e = m.embedder
    est = e.embed_audio([item.estimate])[0]["embedding"]
    assert vals["clap"] == pytest.approx(_cos(e.embed_text(["a dog barks"])[0], est), abs=1e-6)
    crop = _metric(overrides, backend="laion-clap-630k-audioset", backend_params={"arch": TINY_LAION, "batch_size": 2}, windowing="reference_crop")
    long = _item(1, seconds=12.0, sr=48000)
    np.random.seed(item_seed(long.id))
    start = np.random.randint(0, len(long.estimate) - 480000 + 1)
    emb = e.embed_audio([long.estimate[start : start + 480000]])[0]["embedding"]
    assert crop.compute(long)["clap"] == pytest.approx(_cos(e.embed_text(["a dog barks"])[0], emb), abs=1e-6)


def test_weights_convention_and_missing_weights(tmp_path, monkeypatch):
    assert CLAPScore.weights_for() == ["msclap-2023", "gpt2"]
    assert CLAPScore.weights_for({"backend": "msclap-2022"}) == ["msclap-2022", "bert-base-uncased"]
    assert CLAPScore.weights_for({"backend": "laion-clap-music-speech-audioset"}) == ["laion-clap-music-speech-audioset", "roberta-base"]
    assert CLAPScore.weights_for({"backend": "laion-clap-hf", "backend_params": {"model": "larger-music-speech"}}) == [
        "laion-clap-hf-larger-music-speech"
    ]
    for name in CLAPScore.all_weights():
        weights.spec(name)  # every name is registered
    from hsm_bench.registry import EMBEDDERS

    for backend in ("msclap-2023", "msclap-2022", "laion-clap-music-speech-audioset", "laion-clap-630k-audioset", "laion-clap-hf"):
        cls = EMBEDDERS.get(backend)
        assert list(cls().required_weights()) == CLAPScore.weights_for({"backend": backend})
        assert cls.sample_rate == CLAPScore(backend=backend).rate == CLAPScore(backend=backend, resampler="harness").info.sample_rate
    assert resolve_metric_names("clap_a,clapi") == ["clap"] and METRICS.get("clap") is CLAPScore
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "no-weights"))
    m = CLAPScore()
    with pytest.raises(weights.WeightsMissingError, match="hsm-bench download-weights msclap-2023") as exc:
        m.setup("cpu")
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="did you mean 'msclap-2023'"):
        CLAPScore(backend="msclap-2024")
    with pytest.raises(ValueError, match="windowing"):
        CLAPScore(windowing="random")


def test_scoring_pipeline_runs_clap_on_a_test_set(overrides, tiny_testset, tmp_path):
    """The scorer feeds 44.1-kHz audio (harness resampler) and the GT system gets clap_a = 1."""
    from hsm_bench.api.testset import TestSet
    from hsm_bench.pipeline.score import ScoreJob, iter_scores

    ts = TestSet(tiny_testset)
    rows = list(ts)[:4]
    m = CLAPScore(backend_params={"arch": TINY_2023})
    m.setup("cpu", FeatureCache(tmp_path / "cache"))
    jobs = [
        ScoreJob(id=r.id, estimate=ts.root / r.target, reference=ts.root / r.target, mixture=ts.root / r.mixture,
                 caption=r.caption, captions=r.target_captions, task=r.task)  # fmt: skip
        for r in rows
    ]
    out = list(iter_scores(jobs, [m], batch_size=4))
    for _job, res in out:
        vals = res["clap"]
        assert not isinstance(vals, Exception), vals
        assert vals["clap_a"] == pytest.approx(1.0, abs=1e-6)
        assert set(vals) == {"clap", "clap_a", "clapi"}
    d = m.describe()
    assert d["params"]["backend"] == "msclap-2023" and d["params"]["resampler"] == "torchaudio"
    assert d["sample_rate"] is None  # 16-kHz test-set audio, resampled by the metric
    sha = weights.file_sha256(overrides["2023"])
    assert m.version_key.endswith(sha[:8]) and d["embedder"]["checkpoint_sha256"] == sha
    assert d["embedder"]["window_samples"] == 308700 and d["embedder"]["pad_mode"] == "tile"
