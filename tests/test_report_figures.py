"""reports.plots: item picks, spectrograms, HSM-TSS feature files, the t-SNE (tiny random
MS-CLAP 2023 found through weight overrides) and byte-identical figures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import pandas as pd  # noqa: E402

from hsm_bench import weights  # noqa: E402
from hsm_bench.errors import HsmBenchError  # noqa: E402
from reports.collect import Collection, load  # noqa: E402
from reports.plots import log_spectrogram, ranked_items, tsne_coords, write_figures  # noqa: E402
from tests import clap_tiny  # noqa: E402
from tests.test_report_breakdowns import only, shared_runs, synthetic_collection  # noqa: E402

SYSTEMS = ("oracle_irm", "oracle_mixture", "oracle_target")
TINY_2023 = {**clap_tiny.TINY_HTSAT, "d_proj": 16}
NOTE_GLOBAL = ("global-feature t-SNE (Fig. 5) left out: no HSM-TSS global features in these runs (a run folder "
               "would hold features/global/<id>.npz with arrays predicted and reference)")  # fmt: skip
NOTE_ATTENTION = ("attention maps (Fig. 6) left out: no HSM-TSS attention maps in these runs (a run folder would "
                  "hold features/attention/<id>.npy, [query, frames] or [heads, query, frames])")  # fmt: skip
NOTE_NONE = "t-SNE of embeddings left out on purpose (--embedder none)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def col(runs):
    return load([runs])


def no_items(col: Collection) -> Collection:
    """The runs and manifests without scores: only the figures that need no metric are drawn."""
    return Collection(runs=col.runs, items=col.items.iloc[:0], manifests=col.manifests)


def test_best_median_worst_by_hand():
    manifest = {"task": ["extract"] * 5, "snr_db": [0.0] * 5, "target_class": ["Music"] * 5, "query_style": ["caption"] * 5}
    col = synthetic_collection({"a": [3.0, 1.0, math.nan, 2.0, 1.0]}, manifest)  # lower is better
    # ties by id (i1 before i4); NaN left out; the lower median of 4 values
    assert ranked_items(col, "t", "a", "k") == [("best", "i1", 1.0), ("median", "i4", 1.0), ("worst", "i0", 3.0)]
    col = synthetic_collection({"a": [3.0, 1.0, math.nan, 2.0, 1.0]}, manifest, higher_is_better=True)
    assert ranked_items(col, "t", "a", "k") == [("best", "i0", 3.0), ("median", "i3", 2.0), ("worst", "i4", 1.0)]


def test_log_spectrogram_of_a_bin_centred_sine():
    sr, n_fft = 16000, 512
    t = np.arange(sr) / sr
    spec = log_spectrogram(0.5 * np.sin(2 * np.pi * 1000.0 * t), n_fft=n_fft, hop=256)  # 1000 Hz = bin 32
    assert spec.shape == (n_fft // 2 + 1, 1 + sr // 256)
    mid = spec[:, 20:-20]  # frames away from the zero padding
    assert (mid.argmax(axis=0) == 32).all()
    np.testing.assert_allclose(mid[32], 20 * np.log10(0.5), atol=1e-9)  # amplitude 0.5 -> -6.02 dB
    assert mid[100].max() < -100  # Hann sidelobes far from the tone


def test_figures_files_notes_and_bytes_are_reproducible(col, tmp_path):
    # one system and one key keep this at four figures
    one = only(col, "lsd_aligned")
    one = Collection(runs=[one.run("oracle_irm", "varied")], items=one.items[one.items["system"] == "oracle_irm"],
                     manifests=one.manifests)  # fmt: skip
    a = write_figures(one, tmp_path / "a", embedder=None)
    b = write_figures(one, tmp_path / "b", embedder=None)
    assert a.notes == [NOTE_GLOBAL, NOTE_ATTENTION, NOTE_NONE]
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in a.files)
    want = ["captions.json", "captions.md"]
    want += [f"distributions/varied/lsd_aligned.{e}" for e in ("pdf", "png")]
    want += [f"spectrograms/varied/oracle_irm-{r}.{e}" for r in ("best", "median", "worst") for e in ("pdf", "png")]
    assert names == sorted(want)
    for pa, pb in zip(a.files, b.files):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    captions = json.loads((tmp_path / "a" / "captions.json").read_text())
    # the items shown are the system's best, median and worst by lsd_aligned (lower is better)
    v = col.values("varied", "lsd_aligned")["oracle_irm"].sort_values(kind="stable")
    for rank, item in (("best", v.index[0]), ("median", v.index[(len(v) - 1) // 2]), ("worst", v.index[-1])):
        text = captions[f"spectrograms/varied/oracle_irm-{rank}.png"]
        assert f"The {rank} item of oracle_irm on varied by lsd_aligned" in text and f"): {item}," in text
        assert f"= {v[item]:.3f}" in text or f"= {v[item]:.2f}" in text
    assert "excluded and counted: none" in captions["distributions/varied/lsd_aligned.png"]


def test_hsm_tss_attention_maps_and_global_features(col, runs, tmp_path):
    shutil.copytree(runs, tmp_path / "runs")
    copy = load([tmp_path / "runs"])
    irm = copy.run("oracle_irm", "varied")
    rng = np.random.default_rng(0)
    ids = list(copy.manifest("varied").index)
    (irm.path / "features" / "attention").mkdir(parents=True)
    (irm.path / "features" / "global").mkdir(parents=True)
    for k, i in enumerate(ids):
        np.save(irm.path / "features" / "attention" / f"{i}.npy", rng.random((2, 4, 10)))
        # predicted features near their reference: the map must keep pairs together
        ref = rng.standard_normal(16) + 4 * (k % 2)
        np.savez(irm.path / "features" / "global" / f"{i}.npz", predicted=ref + 0.01 * rng.standard_normal(16), reference=ref)
    w = write_figures(no_items(copy), tmp_path / "out", embedder=None)
    assert NOTE_GLOBAL not in w.notes and NOTE_ATTENTION not in w.notes
    names = {p.relative_to(tmp_path / "out").as_posix() for p in w.files}
    assert {"attention/varied/oracle_irm.png", "attention/varied/oracle_irm.pdf", "tsne_global/varied/oracle_irm.png",
            "tsne_global/varied/oracle_irm-coords.csv"} <= names  # fmt: skip
    assert not any("oracle_mixture" in n for n in names)  # it wrote no features
    pts = pd.read_csv(tmp_path / "out" / "tsne_global" / "varied" / "oracle_irm-coords.csv")
    assert len(pts) == 2 * len(ids) and set(pts["role"]) == {"output", "reference"}
    xy = {(r.id, r.role): np.array([r.x, r.y]) for r in pts.itertuples()}
    pair = np.mean([np.linalg.norm(xy[(i, "output")] - xy[(i, "reference")]) for i in ids])
    spread = np.linalg.norm(pts[["x", "y"]].to_numpy() - pts[["x", "y"]].to_numpy().mean(axis=0), axis=1).mean()
    assert pair < 0.5 * spread
    captions = json.loads((tmp_path / "out" / "captions.json").read_text())
    assert "perplexity 5" in captions["tsne_global/varied/oracle_irm.png"]  # (16 - 1) / 3
    # a file in another layout is named, not guessed at
    np.save(irm.path / "features" / "attention" / f"{ids[0]}.npy", rng.random(7))
    for f in (irm.path / "features" / "attention").glob("*.npy"):
        if f.stem != ids[0]:
            f.unlink()
    w = write_figures(no_items(copy), tmp_path / "out2", embedder=None)
    assert any(n.startswith(f"attention map {irm.path / 'features' / 'attention' / ids[0]}.npy has shape (7,)") for n in w.notes)


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-clap")
    gpt2 = clap_tiny.gpt2_folder(d / "gpt2")
    return {"gpt2": gpt2, "msclap-2023": clap_tiny.msclap_checkpoint(d / "CLAP_weights_2023.pth", "2023", gpt2, TINY_2023, seed=5)}


def test_tsne_of_clap_embeddings_is_deterministic_for_a_seed(col, runs, tiny_clap, monkeypatch, tmp_path):
    from hsm_bench.audio.io import read_audio
    from hsm_bench.store.cache import audio_key

    for name in tiny_clap:  # stand-in files cannot have the published size
        monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.spec(name), size=None, sha256=None))
    bare = no_items(col)
    params = {"arch": TINY_2023, "batch_size": 2}
    with weights.overrides(tiny_clap):
        a = write_figures(bare, tmp_path / "a", embedder="msclap-2023", seed=0, embedder_params=params)
        b = write_figures(bare, tmp_path / "b", embedder="msclap-2023", seed=0, embedder_params=params)
    assert not any("t-SNE of" in n for n in a.notes + b.notes)
    # the features went to the runs' own cache (config.yaml), where the clap metric keeps them:
    # one file per distinct clip (the target oracle's outputs are the references)
    clips = list(col.manifest("varied")["reference"]) + [str(p) for p in runs.rglob("outputs/*.wav")]
    assert len(list((runs.parent / "cache" / "features").rglob("*.npz"))) == len({audio_key(*read_audio(p)) for p in clips})
    pa, pb = (pd.read_csv(tmp_path / x / "tsne" / "varied" / "coords.csv") for x in "ab")
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    assert len(pa) == 4 * 8 and list(pa["role"]).count("reference") == 8
    assert list(pa[pa["role"] == "output"]["system"]) == [s for s in SYSTEMS for _ in range(8)]
    side = json.loads((tmp_path / "a" / "tsne" / "varied" / "tsne.json").read_text())
    assert side["seed"] == 0 and side["perplexity"] == pytest.approx(31 / 3) and side["n_points"] == 32
    assert side["embedder"] == "msclap-2023" and side["outputs_missing"] == {s: 0 for s in SYSTEMS}
    for s in SYSTEMS:
        assert (tmp_path / "a" / "tsne" / "varied" / f"{s}.pdf").read_bytes() == (tmp_path / "b" / "tsne" / "varied" / f"{s}.pdf").read_bytes()
    caption = json.loads((tmp_path / "a" / "captions.json").read_text())["tsne/varied/oracle_irm.png"]
    assert "seed 0" in caption and "perplexity 10.3333" in caption and "msclap-2023" in caption
    # outputs a failed separation did not write are left out of the map and counted
    shutil.copytree(runs, tmp_path / "runs")
    copy = load([tmp_path / "runs"])
    for i in ("v-01", "v-04"):
        copy.run("oracle_mixture", "varied").output(i).unlink()
    with weights.overrides(tiny_clap):
        write_figures(no_items(copy), tmp_path / "c", embedder="msclap-2023", seed=0, embedder_params=params)
    side = json.loads((tmp_path / "c" / "tsne" / "varied" / "tsne.json").read_text())
    assert side["outputs_missing"] == {"oracle_irm": 0, "oracle_mixture": 2, "oracle_target": 0} and side["n_points"] == 30
    caption = json.loads((tmp_path / "c" / "captions.json").read_text())["tsne/varied/oracle_mixture.png"]
    assert "(x, 6 items)" in caption and "left out: oracle_mixture: 2 missing output(s)." in caption


def test_tsne_coords_repeat_exactly_for_a_seed_and_follow_the_seed():
    x = np.random.default_rng(1).standard_normal((40, 8))
    y1, p = tsne_coords(x, seed=3)
    y2, _ = tsne_coords(x, seed=3)
    y3, _ = tsne_coords(x, seed=4)
    assert p == 13.0 and y1.shape == (40, 2)
    np.testing.assert_array_equal(y1, y2)
    assert np.abs(y1 - y3).max() > 1.0  # the seed draws the initial map


def test_tsne_without_weights_or_with_an_unknown_embedder(col, tmp_path):
    w = write_figures(no_items(col), tmp_path / "a", embedder="msclap-2023")
    note = [n for n in w.notes if n.startswith("t-SNE of msclap-2023 embeddings left out:")]
    assert len(note) == 1 and "hsm-bench download-weights msclap-2023 gpt2" in note[0] and "\n" not in note[0]
    assert not (tmp_path / "a" / "tsne").exists()
    with pytest.raises(HsmBenchError, match="msclap-2023"):
        write_figures(no_items(col), tmp_path / "b", embedder="msclap-2032")
