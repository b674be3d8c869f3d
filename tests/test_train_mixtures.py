"""The on-the-fly training mixtures: builder rules per example, determinism, workers, held-out pools, overlap guard."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from hsm_bench.errors import ConfigError
from systems.hsm_tss.instructions import parse_instruction
from testsets import demo_sources
from testsets.demo import DemoBuilder
from testsets.instructions import TEMPLATES
from testsets.mixing import measured_snr_db
from training.mixtures import MixtureStream, collate
from training.sources import TrainClip, check_disjoint, pool_from_demo, pool_from_folder, pool_from_manifest

SR = 16000
# (key, classes, captions): pairs sharing "b" or "c" must never be mixed; "e" has captions only as a label
CLIPS = [
    ("k0", {"a"}, ("a low hum", "a steady drone")),
    ("k1", {"b"}, ("birds chirp",)),
    ("k2", {"a", "c"}, ("a hum and a click",)),
    ("k3", {"c"}, ("clicks",)),
    ("k4", {"b", "d"}, ("birds and water",)),
    ("k5", {"d"}, ("water flows", "a stream")),
    ("k6", {"e"}, ()),
]


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(123)
    out = []
    for n, (key, classes, captions) in enumerate(CLIPS):
        length = int(SR * (0.5 if n == 3 else 1.7))  # k3 is shorter than the 1-s window: zero-padded
        audio = (rng.standard_normal(length) * 0.1 * (n + 1)).astype(np.float32)
        out.append(TrainClip(key=key, classes=frozenset(classes), labels=tuple(sorted(classes)), captions=captions,
                             label_text=f"sound {key}", audio=audio))  # fmt: skip
    return out


def _stream(pool, **kw):
    return MixtureStream(pool, **{"seed": 7, "seconds": 1.0, "snr_range": (-15, 15), **kw})


def test_every_example_obeys_the_builder_rules(pool):
    by_key = {c.key: c for c in pool}
    stream = _stream(pool)
    tasks = Counter()
    for k in range(300):
        ex = stream.example(k)
        t, i = by_key[ex["source"]["target"]["key"]], by_key[ex["source"]["interferer"]["key"]]
        assert t.key != i.key and not (set(CLIPS[int(t.key[1])][1]) & set(CLIPS[int(i.key[1])][1]))
        mix, tgt, itf = (ex[r].numpy() for r in ("mixture", "target", "interferer"))
        assert mix.dtype == np.float32 and mix.shape == (SR,)
        assert -15 <= ex["snr_db"] <= 15 and ex["snr_db"] == round(ex["snr_db"], 4)
        assert abs(measured_snr_db(tgt, itf) - ex["snr_db"]) < 0.01
        assert np.max(np.abs(mix - (tgt.astype(np.float64) + itf))) < 1e-6  # sum rule, float32 rounding
        # "target" is the target clip's crop (the sound that remains for "remove"), scaled by the peak rule
        off, g = ex["source"]["target"]["offset"], ex["source"]["gains"]["target"]
        expect = np.zeros(SR)
        seg = t.audio[off : off + SR].astype(np.float64)
        expect[: len(seg)] = seg
        assert np.max(np.abs(tgt - expect * g)) < 1e-6
        # the description is of the target for "extract", of the interferer for "remove"
        described = t if ex["task"] == "extract" else i
        style = "caption" if described.captions else "label"
        assert ex["query_style"] == style
        assert ex["caption"] in (described.captions or (described.label_text,))
        d = ex["caption"].rstrip(".") + "." if style == "caption" else ex["caption"]
        assert ex["instruction"] in {tpl.format(d=d) for tpl in TEMPLATES[(ex["task"], style)]}
        assert parse_instruction(ex["instruction"]).task == ex["task"]
        assert ex["target_labels"] == list(t.labels) and ex["interferer_labels"] == list(i.labels)
        tasks[ex["task"]] += 1
    # binomial(300, 1/2): sd 8.7, so 110..190 is beyond +-4.5 sd
    assert set(tasks) == {"extract", "remove"} and 110 <= tasks["extract"] <= 190


def test_label_queries_and_one_task(pool):
    stream = _stream(pool, tasks=("remove",), query_style="label")
    for k in range(20):
        ex = stream.example(k)
        assert ex["task"] == "remove" and ex["query_style"] == "label"
        assert ex["caption"] == f"sound {ex['source']['interferer']['key']}"


def test_same_seed_same_examples_other_seed_other(pool):
    a, b, c = _stream(pool), _stream(pool), _stream(pool, seed=8)
    for k in range(5):
        ea, eb = a.example(k), b.example(k)
        assert torch.equal(ea["mixture"], eb["mixture"]) and ea["instruction"] == eb["instruction"]
    assert any(not torch.equal(a.example(k)["mixture"], c.example(k)["mixture"]) for k in range(5))
    # iteration without a DataLoader is worker 0
    it = iter(_stream(pool, num_examples=3))
    assert all(torch.equal(next(it)["target"], a.example(k)["target"]) for k in range(3))


def _read(stream, workers):
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return [(ex["source"]["worker"], ex["source"]["index"], ex["mixture"].clone()) for ex in loader]


def test_two_workers_give_disjoint_reproducible_streams(pool):
    stream = _stream(pool, num_examples=8)
    first, again = _read(stream, 2), _read(stream, 2)
    assert [(w, k) for w, k, _ in first] == [(w, k) for w, k, _ in again]
    assert all(torch.equal(x, y) for (_, _, x), (_, _, y) in zip(first, again))
    assert Counter(w for w, _, _ in first) == {0: 4, 1: 4}
    for w, k, mix in first:  # each worker yields its own stream, in order
        assert torch.equal(mix, stream.example(k, worker=w)["mixture"])
    w0 = [m for w, _, m in first if w == 0]
    w1 = [m for w, _, m in first if w == 1]
    assert not any(torch.allclose(x, y) for x in w0 for y in w1)


def test_collate_pads_to_the_longest():
    items = [{"mixture": torch.ones(3), "target": torch.ones(3), "interferer": torch.zeros(3), "snr_db": 1.0,
              "task": "extract"},
             {"mixture": torch.full((5,), 2.0), "target": torch.ones(5), "interferer": torch.ones(5), "snr_db": -2.5,
              "task": "remove"}]  # fmt: skip
    batch = collate(items)
    assert batch["mixture"].shape == (2, 5) and batch["lengths"].tolist() == [3, 5]
    assert batch["mixture"][0].tolist() == [1, 1, 1, 0, 0] and batch["mixture"][1].tolist() == [2] * 5
    assert batch["snr_db"].tolist() == [1.0, -2.5] and batch["task"] == ["extract", "remove"]


def test_a_pool_without_any_valid_pair_is_refused(pool):
    with pytest.raises(ConfigError, match="shared class"):
        MixtureStream([pool[1], pool[4]], seed=0)  # both hold "b"


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    # the catalogue is rendered once for the module (the builder and the pools read it at call time)
    catalogue = demo_sources.load_demo_sources()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo_sources, "load_demo_sources", lambda sample_rate=SR: catalogue)
        yield DemoBuilder(n_items=6).build(tmp_path_factory.mktemp("demo") / "set", progress=False)


def _manifest_keys(root):
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    return {r["source"][role]["key"] for r in rows for role in ("target", "interferer")}


def test_demo_pool_is_held_out_from_the_demo_set(demo_set):
    used = _manifest_keys(demo_set)
    # the recording of an animal and the voice of speech are the units: "animal/cat/0" -> "animal/cat"
    used_units = {"/".join(k.split("/")[:2]) for k in used if k.split("/")[0] in ("animal", "speech")}
    # the instrument family is left out to keep this test fast: its selection is the procedural one (next test)
    pool = pool_from_demo(variants=1, testset_root=demo_set, families=("procedural", "animal", "speech"))
    keys = {c.key for c in pool}
    assert not keys & used
    assert not {"/".join(k.split("/")[:2]) for k in keys} & used_units
    seeded = [k for k in keys if k.split("/")[0] == "procedural"]
    assert len(seeded) == 6 and all(k.endswith("/3") for k in seeded)  # fresh seeds only: catalogue has 0..2
    catalogue = {s.key: s.audio for s in demo_sources.load_demo_sources()}
    for c in pool:
        if c.key in seeded:  # new noise, not a copy of a catalogue variant
            assert all(np.max(np.abs(c.audio[:SR] - catalogue[f"{c.key[:-1]}{v}"][:SR])) > 0.1 for v in range(3))
    assert any(k.startswith(("animal/", "speech/")) for k in keys)  # unused recordings/voices stay
    assert check_disjoint(pool, demo_set) == []
    stream = MixtureStream(pool, seed=0)
    ex = stream.example(0)
    assert ex["mixture"].shape == (160000,)


def test_demo_pool_without_a_built_set_has_fresh_seeds_only(monkeypatch):
    from testsets.demo_sources import instruments, procedural

    def fake(family):
        def render(variants=3):  # the catalogue's default count, as the real generators have
            return [{"key": f"{family}/x/{v}", "label": "x", "captions": ("c",), "audio": np.ones(10)}
                    for v in range(variants)]
        return render

    monkeypatch.setattr(instruments, "instrument_sources", fake("instrument"))
    monkeypatch.setattr(procedural, "procedural_sources", fake("procedural"))
    monkeypatch.setattr(demo_sources, "load_demo_sources", lambda *a: pytest.fail("finite sources read without a set"))
    keys = sorted(c.key for c in pool_from_demo(variants=2))
    assert keys == ["instrument/x/3", "instrument/x/4", "procedural/x/3", "procedural/x/4"]


def test_check_disjoint_refuses_the_test_sets_own_clips(demo_set):
    pool = pool_from_manifest(demo_set / "manifest.jsonl")
    used = _manifest_keys(demo_set)
    assert {c.key for c in pool} == used
    with pytest.raises(ConfigError, match=f"shares {len(used)} clip"):
        check_disjoint(pool, demo_set)
    assert check_disjoint(pool, demo_set, force=True) == sorted(used)


def _write_wav(path, seed, seconds=1.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).standard_normal(int(SR * seconds)) * 0.1, SR, subtype="PCM_16")


def test_folder_pool_and_the_guard_on_file_names(tmp_path):
    root = tmp_path / "clips"
    for n, name in enumerate(("dogs/bark1.wav", "cat.wav", "violin.flac")):
        _write_wav(root / name, n)
    csv = tmp_path / "clips.csv"
    csv.write_text('file,labels,caption\ndogs/bark1.wav,Bark,a dog barks\ncat.wav,Meow,\ncat.wav,,a cat meows\n'
                   'violin.flac,"Violin, fiddle",\n')  # fmt: skip
    pool = pool_from_folder(root, csv)
    by = {c.key: c for c in pool}
    assert set(by) == {"folder/dogs/bark1.wav", "folder/cat.wav", "folder/violin.flac"}
    assert by["folder/cat.wav"].captions == ("a cat meows",) and by["folder/violin.flac"].label_text == "violin"
    assert by["folder/cat.wav"].length == int(1.5 * SR)
    ex = MixtureStream(pool, seed=1, seconds=1.0).example(0)
    assert abs(measured_snr_db(ex["target"].numpy(), ex["interferer"].numpy()) - ex["snr_db"]) < 0.01
    # a test set whose rows name cat.wav (in another folder and format) overlaps by file name
    ts = tmp_path / "testset"
    ts.mkdir()
    (ts / "card.json").write_text(json.dumps({"name": "x", "sample_rate": SR}))
    row = {"id": "x-0", "mixture": "m.wav", "target": "t.wav", "interferer": "i.wav", "task": "extract",
           "caption": "c", "instruction": "i", "target_captions": [], "target_labels": [], "interferer_labels": [],
           "snr_db": 0.0, "duration_s": 1.0, "sample_rate": SR, "sha256": {},
           "source": {"builder": "b", "target": {"dataset": "d", "file": "audio/cat.wav"},
                      "interferer": {"dataset": "d", "file": "audio/owl.wav"}}}  # fmt: skip
    (ts / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=r"shares 1 clip\(s\).*folder/cat.wav"):
        check_disjoint(pool, ts)
    assert check_disjoint(pool, ts, force=True) == ["folder/cat.wav"]
    assert check_disjoint(pool[:1], ts) == []
