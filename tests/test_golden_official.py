"""hsm-bench's metrics against values the official implementations computed (golden tables).

The tables in tests/golden/ were written by benchmarks/make_golden.py, which ran
audioldm-eval 0.0.3 (LSD, PSNR, KL with its PANNs Cnn14) and msclap 1.3.4 (CLAP) in side
environments on inputs and numpy-seeded weights that tests/golden/inputs.py rebuilds bit
for bit (see tests/golden/README.md). Here hsm-bench's public metric classes score the same
inputs with the same weights, loaded from checkpoint files in the official layouts through
the weights resolver, and every per-item value is compared with a stated tolerance.

Nothing is downloaded and no side environment is needed: only the tables are read.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from tests.golden import inputs as g


@pytest.fixture
def stand_in(monkeypatch):
    """``stand_in(*names)``: the registry entries of ``names`` without their published size
    and sha256, for this test only (a stand-in file cannot have them)."""

    def _drop(*names: str) -> None:
        for name in names:
            spec = weights.spec(name)
            monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(spec, size=None, sha256=None))

    return _drop


def _value(v) -> float:
    return float(v)  # "inf" / "nan" strings of the tables included


def _compare(label: str, got: dict[str, dict[str, float]], table: dict, keys: tuple[str, ...], rtol: float, atol: float) -> None:
    """Every key of every item within ``atol + rtol * |official|`` (infinities must be equal)."""
    bad = []
    for item, official in table["items"].items():
        for key in keys:
            ref, ours = _value(official[key]), got[item][key]
            if math.isinf(ref) or math.isinf(ours):
                ok = ref == ours
            else:
                ok = abs(ours - ref) <= atol + rtol * abs(ref)
            if not ok:
                bad.append(f"{item}.{key}: hsm-bench {ours!r}, official {ref!r}")
    assert not bad, f"{label}: {len(bad)} value(s) outside the tolerance:\n" + "\n".join(bad)


def _by_id(items: list[ScoreItem], results: list) -> dict[str, dict[str, float]]:
    """``compute_batch`` results by item id; an item the metric failed on fails the test."""
    failed = [f"{it.id}: {r}" for it, r in zip(items, results) if isinstance(r, Exception)]
    assert not failed, "hsm-bench failed on: " + "; ".join(failed)
    return {it.id: r for it, r in zip(items, results)}


def _check_hashes(table: dict, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """The regenerated inputs are the generator's, bit for bit."""
    recorded = table["inputs"]["sha256"]
    assert set(recorded) == set(arrays)
    for name, roles in arrays.items():
        for role, x in roles.items():
            assert g.sha256(x) == recorded[name][role], f"input {name}/{role} differs from the one the table was made from"


# ------------------------------------------------------------------ LSD and PSNR
def test_lsd_and_psnr_match_audioldm_eval():
    from hsm_bench.metrics.signal import LSD, MelPSNR

    table = g.load_table("signal.json")
    pairs = g.signal_pairs()
    _check_hashes(table, {k: {"estimate": e, "reference": r} for k, (e, r) in pairs.items()})
    lsd, psnr = LSD(), MelPSNR()
    got = {}
    for name, (est, ref) in pairs.items():
        item = ScoreItem(name, est, g.SIGNAL_SR, ref)
        got[name] = {**lsd.compute(item), **psnr.compute(item)}
    # LSD: both sides compute the same float32 pipeline; what remains is FFT rounding
    # (pocketfft in librosa vs torch's FFT), ~1e-7 relative on LSDs of 0.02-6. lsd_aligned
    # is the package's calculate_lsd with time_offset=0.
    _compare("lsd", got, table, ("lsd", "lsd_aligned"), rtol=1e-5, atol=1e-6)
    # PSNR: float32 mel images (conv1d Fourier basis there, torch.stft here) differ in the
    # last bits; on 10-46 dB values that moves PSNR by < 1e-4 dB. "identical" is +inf on both.
    _compare("psnr", got, table, ("psnr",), rtol=0.0, atol=1e-4)
    assert math.isinf(got["identical"]["psnr"])
    # the package's corpus values: mean over items, PSNR without its infinite items
    assert np.mean([v["lsd"] for v in got.values()]) == pytest.approx(table["corpus"]["lsd"], rel=1e-5)
    finite = [v["psnr"] for v in got.values() if math.isfinite(v["psnr"])]
    assert np.mean(finite) == pytest.approx(table["corpus"]["psnr"], abs=1e-4)


# ------------------------------------------------------------------ KL (PANNs Cnn14)
def _kl_scores(table: dict, pairs: dict, tmp_path, stand_in) -> dict[str, dict[str, float]]:
    from hsm_bench.embedders.panns import Cnn14
    from hsm_bench.metrics.kl import KL

    _check_hashes(table, {k: {"estimate": e, "reference": r} for k, (e, r, _) in pairs.items()})
    widths = tuple(table["model"]["widths"])
    state = Cnn14(16000, widths=widths).state_dict()
    filled = g.fill_state_dict({k: tuple(v.shape) for k, v in state.items()}, table["model"]["seed"], g.cnn14_rule)
    assert g.fingerprint(filled) == table["model"]["weights_sha256"], "the numpy weights differ from the generator's"
    assert (len(filled), len(state)) == (table["model"]["filled_keys"], table["model"]["keys"])
    sd = {k: (torch.from_numpy(filled[k]) if k in filled else v) for k, v in state.items()}
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"model": sd}, path)  # the official file layout, loaded strictly by the embedder
    del state, sd, filled
    stand_in("panns-cnn14-16k")
    metric = KL(embedder_params={"arch": {"widths": list(widths)}})
    with weights.overrides({"panns-cnn14-16k": path}):  # --weights panns-cnn14-16k=PATH
        metric.setup("cpu")
    items = [ScoreItem(k, e, sr, r) for k, (e, r, sr) in pairs.items()]
    return _by_id(items, metric.compute_batch(items))


# KL tolerance: both networks run in float32 from the same stored kernels and weights; here
# the 16-kHz items agree bit for bit, but conv algorithms and summation order depend on the
# CPU, the torch build and the thread count, moving logits by ~1e-6 relative. KL sums 527
# terms of them: 5e-5 relative on values up to ~300, plus 5e-6 absolute for the near-zero
# items (identical signals, the DC offset: only the 1e-6 eps term and rounding remain).
KL_RTOL, KL_ATOL = 5e-5, 5e-6
# The 22.05-kHz item is resampled first, as audioldm-eval does with
# torchaudio.functional.resample (float32 kernel); hsm-bench's torchaudio_resample(...,
# kernel="functional") reproduces it bit for bit, so the same CPU tolerance applies.
KL_RESAMPLED_RTOL = KL_RTOL


def _compare_kl(label: str, got: dict, table: dict, pairs: dict) -> None:
    at_16k = {k: v for k, v in table["items"].items() if pairs[k][2] == 16000}
    resampled = {k: v for k, v in table["items"].items() if pairs[k][2] != 16000}
    _compare(label, got, {"items": at_16k}, ("kl", "kl_sigmoid"), rtol=KL_RTOL, atol=KL_ATOL)
    _compare(label + " (resampled)", got, {"items": resampled}, ("kl", "kl_sigmoid"), rtol=KL_RESAMPLED_RTOL, atol=KL_ATOL)


def test_kl_matches_audioldm_eval(tmp_path, stand_in):
    """Narrow Cnn14 (official ConvBlock / Linear modules at ``inputs.CNN14_WIDTHS``)."""
    table = g.load_table("kl.json")
    pairs = g.kl_pairs()
    got = _kl_scores(table, pairs, tmp_path, stand_in)
    assert {s for _, _, s in pairs.values()} == {16000, 22050}
    _compare_kl("kl", got, table, pairs)
    for key in ("kl", "kl_sigmoid"):  # calculate_kl's corpus value: the sum over pairs / N
        assert np.mean([v[key] for v in got.values()]) == pytest.approx(table["corpus"][key], rel=KL_RTOL, abs=KL_ATOL)


@pytest.mark.slow
def test_kl_matches_audioldm_eval_full_size_cnn14(tmp_path, stand_in):
    """Cnn14 at its real size (81 M parameters), built and loaded by audioldm-eval's own
    constructor in the generator. Slow: ~3 s to draw the weights, ~1 s per 2-s clip."""
    table = g.load_table("kl_full.json")
    pairs = {k: v for k, v in g.kl_pairs().items() if k in table["items"]}
    got = _kl_scores(table, pairs, tmp_path, stand_in)
    _compare_kl("kl (full size)", got, table, pairs)


# ------------------------------------------------------------------ CLAP (MS-CLAP 2023)
def test_clap_matches_msclap(tmp_path, stand_in):
    """MS-CLAP 2023 (narrow HTS-AT + 2-layer GPT-2) through msclap's CLAPWrapper: file
    reading, torchaudio's resampler, tiling / random crop, encode_plus tokenisation."""
    from hsm_bench.embedders.clap_common import item_seed
    from hsm_bench.embedders.msclap import MSCLAP2023
    from hsm_bench.metrics.clap import CLAPScore

    table = g.load_table("clap.json")
    model_info = table["model"]
    items = g.clap_items()
    _check_hashes(table, {it["id"]: {r: it[r] for r in ("estimate", "reference", "mixture")} for it in items})
    folder = g.gpt2_folder(tmp_path / "gpt2")
    arch = {**g.TINY_HTSAT, "d_proj": g.CLAP_D_PROJ}
    state = MSCLAP2023(arch=arch).build(folder).state_dict()
    filled = g.fill_state_dict({k: tuple(v.shape) for k, v in state.items()}, model_info["seed"], g.clap_rule)
    assert g.fingerprint(filled) == model_info["weights_sha256"], "the numpy weights differ from the generator's"
    assert (len(filled), len(state)) == (model_info["filled_keys"], model_info["keys"])
    path = tmp_path / "CLAP_weights_2023.pth"
    torch.save({"model": {k: (torch.from_numpy(filled[k]) if k in filled else v) for k, v in state.items()}}, path)
    stand_in("msclap-2023", "gpt2")

    # msclap crops clips longer than the window at random.randrange under random.seed(s);
    # hsm-bench's reference_crop derives s from the item id, and must derive the recorded one
    for it in items:
        assert item_seed(it["id"]) == table["inputs"]["sha256"][it["id"]]["crop_seed"]
    # clips no longer than the 7-s window (after resampling) are tiled, not cropped, so the
    # default deterministic windowing must give the official values for them too
    window = model_info["window_s"] * model_info["sample_rate"]
    short = {k for k, v in table["inputs"]["sha256"].items() if round(v["seconds"] * model_info["sample_rate"]) <= window}
    assert short == {"tone_short", "window_exact", "rain_bang", "sr16k_short"}

    def score(windowing: str, ids: set[str]) -> tuple[CLAPScore, dict[str, dict[str, float]]]:
        metric = CLAPScore(windowing=windowing, text="caption", backend_params={"arch": arch})
        with weights.overrides({"msclap-2023": path, "gpt2": folder}):
            metric.setup("cpu")
        batch = [ScoreItem(id=it["id"], estimate=it["estimate"], sample_rate=it["sample_rate"], reference=it["reference"],
                           mixture=it["mixture"], caption=it["caption"], task="extract") for it in items if it["id"] in ids]  # fmt: skip
        return metric, _by_id(batch, metric.compute_batch(batch))

    metric, cropped = score("reference_crop", {it["id"] for it in items})
    tok = metric.embedder.tokenizer  # precondition: the locally built tokenizer gives msclap's ids
    for it in items:
        assert tok(it["caption"] + " <|endoftext|>")["input_ids"] == table["tokens"][it["id"]], it["id"]
    # Cosines of float32 embeddings, HTS-AT and GPT-2 computed in another order on each side
    # (other module code; transformers 4.57 there, 5.x here; thread counts): they agree to
    # ~1e-5 here (max 9.5e-6, clapi); 1e-4 absolute on values in [-1, 1] leaves room for
    # other CPUs and thread counts.
    _compare("clap (reference_crop)", cropped, table, ("clap", "clap_a", "clapi"), rtol=0.0, atol=1e-4)
    _, tiled = score("mean", short)
    sub = {"items": {k: v for k, v in table["items"].items() if k in short}}
    _compare("clap (mean windowing, tiled clips)", tiled, sub, ("clap", "clap_a", "clapi"), rtol=0.0, atol=1e-4)


# ------------------------------------------------------------------ torchaudio's resamplers
def test_both_torchaudio_resampler_paths_match_torchaudio():
    """``torchaudio_resample`` against every sample torchaudio 2.11 produced on the same input:
    ``kernel="functional"`` (float32 kernel, audioldm-eval's KL loader) and ``"transform"``
    (float64 kernel rounded to float32, msclap). Here the outputs are bit-identical; another
    CPU's float32 convolution may sum the ~460 taps in another order, hence a bound of
    2e-7 (a few ulp of samples below 0.5). The two paths differ by up to 6e-6 on these
    inputs, so where they differ by more than 1e-6 the bound tells them apart."""
    import base64

    from hsm_bench.audio.resample import torchaudio_resample

    table = g.load_table("resample.json")
    inputs = g.resample_inputs()
    assert {k: g.sha256(x) for k, (x, _, _) in inputs.items()} == table["inputs"]["sha256"]
    apart = 0
    for name, (x, a, b) in inputs.items():
        official = {k: np.frombuffer(base64.b64decode(v), dtype="<f4") for k, v in table["items"][name].items()}
        apart += np.abs(official["functional"] - official["transform"]).max() > 1e-6
        for kernel in ("functional", "transform"):
            ours = torchaudio_resample(x, a, b, kernel=kernel)
            assert ours.shape == official[kernel].shape, (name, kernel)
            assert np.abs(ours - official[kernel]).max() <= 2e-7, (name, kernel)
    assert apart == 3  # 22.05 -> 16, 44.1 -> 16 and 16 -> 44.1 kHz
