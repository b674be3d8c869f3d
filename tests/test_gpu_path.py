"""The GPU path on a CPU: metric-major scoring, moving embedders between devices, bf16 autocast.

No GPU is needed. Where a second device is required, the test either moves models to the
``meta`` device (real moves, no data) or runs the pipeline with a fake ``cuda:1`` whose moves
are recorded instead of done; the metrics themselves always compute on the CPU.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from hsm_bench.embedders.base import Embedder
from hsm_bench.errors import ConfigError
from hsm_bench.pipeline.run import run_pipeline
from hsm_bench.store.jsonl import read_jsonl
from tests import af1_tiny, clap_tiny
from tests.af3_tiny import build_folder as build_af3_folder

SR = 16000
KL_WIDTHS = [8, 8, 16, 16, 32, 32]
TINY_2023 = {**clap_tiny.TINY_HTSAT, "d_proj": 16}
TINY_2022 = {**clap_tiny.TINY_CNN14, "d_proj": 16}
TINY_LAION = {**clap_tiny.TINY_HTSAT, "joint_dim": 16}
# Two float32 computations of a CLAP embedding with its window in another row of a batch may
# differ by a few ulps on other CPUs (other GEMM blockings); cosines are compared with this.
ROW_TOL = 1e-5


# -- fixtures -----------------------------------------------------------------------------------
def _cnn14_checkpoint(path):
    from tests.test_panns_kl import _checkpoint

    _checkpoint(path, seed=3, widths=tuple(KL_WIDTHS))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu-path")
    f = {"gpt2": clap_tiny.gpt2_folder(d / "gpt2"), "roberta-base": clap_tiny.roberta_folder(d / "roberta"),
         "bert-base-uncased": clap_tiny.bert_folder(d / "bert")}  # fmt: skip
    f["msclap-2023"] = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2023.pth", "2023", f["gpt2"], TINY_2023, seed=5)
    f["msclap-2022"] = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2022.pth", "2022", f["bert-base-uncased"], TINY_2022, seed=7)
    f["laion-clap-630k-audioset"] = clap_tiny.laion_checkpoint(d / "630k.pt", f["roberta-base"], TINY_LAION, seed=6)
    f["laion-clap-hf-htsat-unfused"] = clap_tiny.clap_hf_folder(d / "clap-hf")
    f["panns-cnn14-16k"] = _cnn14_checkpoint(d / "cnn14.pth")
    f.update(af1_tiny.build_all(d / "af1"))
    f["audio-flamingo-3-hf"] = build_af3_folder(d / "af3")
    return f


@pytest.fixture
def local_weights(files, monkeypatch):
    for name in files:  # stand-in files cannot have the published size or digest
        monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.spec(name), size=None, sha256=None))
    with weights.overrides(files):
        yield files


def _hydra(value) -> str:
    return json.dumps(value).replace('"', "")


def _run(compose_config, testset, tmp_path, tag, *extra):
    """kl + clap (tiny models) + sdr through `hsm-bench run`; own runs and cache folders per tag,
    so nothing computed in one order is read back in the other."""
    return run_pipeline(compose_config(
        "system=oracle_irm", f"testset.root={testset}", f"paths.runs_dir={tmp_path / tag / 'runs'}",
        f"paths.cache_dir={tmp_path / tag / 'cache'}", "runtime.progress=false", "metrics.names=[sdr,kl,clap]",
        "runtime.score_batch_size=3",
        f"+metrics.params.kl.embedder_params.arch.widths={_hydra(KL_WIDTHS)}",
        f"+metrics.params.clap.backend_params.arch={_hydra(TINY_2023)}",
        "+metrics.params.clap.backend_params.batch_size=2", *extra,
    ))  # fmt: skip


def _rows(run_dir) -> dict[tuple[str, str], dict]:
    return {(r["id"], r["metric"]): r for r in read_jsonl(f"{run_dir}/items.jsonl")}


def _varied_testset(root):
    """Items of 1 to 3 s in an order that is not sorted by duration."""
    from testsets.base import ItemSpec, TestSetWriter

    rng = np.random.default_rng(1)
    writer = TestSetWriter(root)
    for k, seconds in enumerate((2.5, 1.0, 3.0, 1.5, 2.0, 1.0, 2.5, 1.25)):
        t = np.arange(int(seconds * SR)) / SR
        target = (0.4 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        interferer = (0.2 * rng.standard_normal(t.size)).astype(np.float32)
        task = "extract" if k % 2 == 0 else "remove"
        caption = "a harmonic tone hums" if task == "extract" else "noise hisses"
        writer.add(ItemSpec(id=f"var-{k:02d}", task=task, caption=caption, instruction=f"{task} {caption}", target=target,
                            interferer=interferer, snr_db=float(rng.uniform(-5, 5)), target_captions=[caption],
                            target_labels=["tone"], interferer_labels=["noise"], source={"dataset": "varied"}))  # fmt: skip
    return writer.finish({"name": "varied", "version": "v1", "builder": "tests", "seed": 1})


@pytest.fixture(scope="module")
def varied_testset(tmp_path_factory):
    return _varied_testset(tmp_path_factory.mktemp("varied") / "varied" / "v1")


# -- runtime.score_order ------------------------------------------------------------------------------
def test_score_order_is_a_checked_runtime_option(compose_config):
    from hsm_bench.pipeline.run import _runtime

    assert _runtime(compose_config())["score_order"] == "item"
    assert _runtime(compose_config("runtime.score_order=metric"))["score_order"] == "metric"
    with pytest.raises(ConfigError, match="runtime.score_order='metrics': choose from item, metric. Did you mean 'metric'") as exc:
        _runtime(compose_config("runtime.score_order=metrics"))
    assert "\n" not in str(exc.value)


def test_item_and_metric_order_store_identical_rows(compose_config, tiny_testset, tmp_path, local_weights):
    """The tiny set's items all last 2 s, so metric order keeps the manifest order and every
    batch holds the same items as in item order: the numbers must agree bit for bit."""
    item = _run(compose_config, tiny_testset, tmp_path, "item")
    metric = _run(compose_config, tiny_testset, tmp_path, "metric", "runtime.score_order=metric")
    assert item["status"] == metric["status"] == 0
    a, b = _rows(item["run_dir"]), _rows(metric["run_dir"])
    assert len(a) == 36 and a == b  # values, statuses and version keys
    # resume keys still carry the checkpoint digests, read at setup before separation
    assert a[("tiny-000", "kl")]["version"].endswith(weights.file_sha256(local_weights["panns-cnn14-16k"])[:8])
    assert all(r["status"] == "ok" for r in a.values()) and set(a[("tiny-001", "clap")]["values"]) == {"clap", "clap_a", "clapi"}
    assert open(f"{item['run_dir']}/corpus.json").read() == open(f"{metric['run_dir']}/corpus.json").read()
    # the orders really differ: item order writes an item's metrics together, metric order a
    # whole pass (the model-free metrics first, then each model) before the next
    written = [r["metric"] for r in read_jsonl(f"{metric['run_dir']}/items.jsonl")]
    assert written == ["sdr"] * 12 + ["kl"] * 12 + ["clap"] * 12
    assert [r["metric"] for r in read_jsonl(f"{item['run_dir']}/items.jsonl")][:3] == ["sdr", "kl", "clap"]


def test_metric_order_keeps_one_model_on_the_run_device_at_a_time(compose_config, tiny_testset, tmp_path,
                                                                  local_weights, monkeypatch):  # fmt: skip
    """A fake cuda:1: moves to it are recorded (the modules stay on the CPU, where they compute),
    moves back to the CPU are real; the embedders report the device they were on while embedding."""
    import hsm_bench.pipeline.run as run_mod
    from hsm_bench.embedders.clap_common import ClapEmbedder
    from hsm_bench.embedders.panns import _Cnn14Embedder

    first = _run(compose_config, tiny_testset, tmp_path, "dev", "stages=[separate]")
    assert first["status"] == 0

    moves, on_device, seen, released, setups, instances = [], set(), [], [], {}, {}
    real_to = Embedder.to

    def fake_to(self, device):
        moves.append((self.name, device))
        instances[self.name] = self
        if device == "cpu":
            on_device.discard(self.name)
            return real_to(self, device)
        on_device.add(self.name)
        self.device = device
        return self

    def spy(method):
        def wrapped(self, *args):
            seen.append((self.name, method.__name__, self.device, frozenset(on_device)))
            device, self.device = self.device, "cpu"  # compute where the modules really are
            try:
                return method(self, *args)
            finally:
                self.device = device

        return wrapped

    real_setup = run_mod._setup

    def record_setup(what, fn, *args):
        setups[what] = args[0]
        return real_setup(what, fn, *args)

    monkeypatch.setattr(run_mod, "check_device", str)  # accept cuda:1 on this CPU-only machine
    monkeypatch.setattr(run_mod, "_setup", record_setup)
    monkeypatch.setattr(Embedder, "to", fake_to)
    for cls in (_Cnn14Embedder, ClapEmbedder):
        monkeypatch.setattr(cls, "embed_audio", spy(cls.embed_audio))
    monkeypatch.setattr(ClapEmbedder, "embed_text", spy(ClapEmbedder.embed_text))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: released.append(True))

    out = _run(compose_config, tiny_testset, tmp_path, "dev", "stages=[score,aggregate]", "runtime.device=cuda:1",
               "runtime.score_order=metric")  # fmt: skip
    assert out["status"] == 0 and all(out["corpus"]["metrics"][k]["n"] == 12 for k in ("sdr", "kl", "clap"))
    # set up on the CPU (weights read, digests in the resume keys), moved in for their own pass only
    assert setups == {"metric sdr": "cuda:1", "metric kl": "cpu", "metric clap": "cpu"}
    assert moves == [("panns-cnn14-16k", "cuda:1"), ("panns-cnn14-16k", "cpu"), ("msclap-2023", "cuda:1"),
                     ("msclap-2023", "cpu")]  # fmt: skip
    assert {(name, method) for name, method, _, _ in seen} == {("panns-cnn14-16k", "embed_audio"),
                                                              ("msclap-2023", "embed_audio"), ("msclap-2023", "embed_text")}  # fmt: skip
    for name, _, device, resident in seen:
        assert device == "cuda:1" and resident == {name}
    assert len(released) == 2  # the allocator's cache handed back after each model's pass
    for emb in instances.values():
        assert emb.device == "cpu" and all(p.device.type == "cpu" for p in emb.model.parameters())


# -- jobs sorted by duration ------------------------------------------------------------------------------
def test_metric_order_runs_shortest_first_and_rows_do_not_depend_on_the_order(compose_config, varied_testset, tmp_path,
                                                                              local_weights, monkeypatch):  # fmt: skip
    from hsm_bench.api.testset import TestSet
    from hsm_bench.metrics.clap import CLAPScore
    from hsm_bench.metrics.kl import KL

    durations = {r.id: r.duration_s for r in TestSet(varied_testset)}
    assert list(durations.values()) != sorted(durations.values())
    item = _run(compose_config, varied_testset, tmp_path, "item")

    batches: dict[str, list[list[str]]] = {"kl": [], "clap": []}
    for cls in (KL, CLAPScore):
        def spy(self, items, _real=cls.compute_batch):
            batches[self.info.name].append([it.id for it in items])
            return _real(self, items)

        monkeypatch.setattr(cls, "compute_batch", spy)
    metric = _run(compose_config, varied_testset, tmp_path, "metric", "runtime.score_order=metric")
    for name, seq in batches.items():
        order = [i for b in seq for i in b]
        assert [len(b) for b in seq] == [3, 3, 2]
        assert [durations[i] for i in order] == sorted(durations.values()), name
    # the three shortest items share the first batch in metric order, not in item order
    assert set(batches["kl"][0]) == {"var-01", "var-05", "var-07"}

    a, b = _rows(item["run_dir"]), _rows(metric["run_dir"])
    assert set(a) == set(b) and len(a) == 24
    for key, row in a.items():
        other = b[key]
        assert (row["status"], row["version"], set(row["values"])) == (other["status"], other["version"], set(other["values"]))
        if key[1] == "clap":  # windows in other batch rows: equal up to float32 rounding
            for k, v in row["values"].items():
                assert other["values"][k] == pytest.approx(v, abs=ROW_TOL), key
        else:  # sdr per item, Cnn14 one clip per forward pass: exact
            assert row["values"] == other["values"], key


def test_iter_scores_keeps_the_given_order_and_results_follow_the_job(varied_testset, local_weights):
    from hsm_bench.api.testset import TestSet
    from hsm_bench.metrics.clap import CLAPScore
    from hsm_bench.pipeline.score import ScoreJob, by_duration, iter_metric_passes, iter_scores

    ts = TestSet(varied_testset)
    jobs = [ScoreJob(id=r.id, estimate=ts.path(r.mixture), reference=ts.path(r.target), mixture=ts.path(r.mixture),
                     caption=r.caption, captions=r.target_captions, task=r.task, duration_s=r.duration_s)
            for r in ts]  # fmt: skip
    m = CLAPScore(backend_params={"arch": TINY_2023, "batch_size": 2})
    m.setup("cpu")
    forward = dict((j.id, res["clap"]) for j, res in iter_scores(jobs, [m], batch_size=3))
    backward = list(iter_scores(jobs[::-1], [m], batch_size=3))
    assert [j.id for j, _ in backward] == [j.id for j in jobs[::-1]]
    passes = list(iter_metric_passes(jobs, [m], batch_size=3))
    assert [j.id for j, _ in passes] == [j.id for j in by_duration(jobs)] != [j.id for j in jobs]
    for results in (dict((j.id, r["clap"]) for j, r in backward), dict((j.id, r["clap"]) for j, r in passes)):
        for i, vals in forward.items():
            assert set(vals) == {"clap", "clap_a", "clapi"}
            for k, v in vals.items():
                assert results[i][k] == pytest.approx(v, abs=ROW_TOL)
    # shortest first, ties and unknown durations in the given order
    odd = [ScoreJob(id=i, estimate=None, duration_s=d) for i, d in (("a", 2.0), ("b", None), ("c", 1.0), ("d", 2.0))]
    assert [j.id for j in by_duration(odd)] == ["c", "a", "d", "b"]


# -- Embedder.to -----------------------------------------------------------------------------------------
def test_embedder_to_moves_every_module_tensor_and_nested_embedder():
    from hsm_bench.embedders.panns import Cnn14, Cnn14_16k

    inner = Cnn14_16k(arch={"widths": tuple(KL_WIDTHS)})
    inner.load_state_dict(Cnn14(16000, widths=tuple(KL_WIDTHS)).state_dict())

    class Outer(Embedder):
        name = "outer"

    outer = Outer()
    outer.inner, outer.head, outer.table = inner, torch.nn.Linear(3, 2).to(torch.bfloat16), torch.ones(4)
    assert outer.to("meta") is outer
    tensors = [*inner.model.parameters(), *inner.model.buffers(), *outer.head.parameters(), outer.table]
    assert len(tensors) > 40 and all(t.is_meta for t in tensors)
    assert outer.device == inner.device == "meta"
    assert outer.head.weight.dtype == torch.bfloat16  # a move keeps the dtype


class _Seen(Exception):
    pass


def _stop_at(module, seen: list, label: str):
    """A pre-hook that records the devices of the tensors ``module`` receives, then stops the forward."""

    def hook(mod, args, kwargs):
        devices = [v.device.type for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor)]
        seen.append((label, devices))
        raise _Seen(label)

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def _inputs_device(emb, module, call, label):
    """The devices of what ``call`` hands to ``module`` once the embedder is on ``meta``."""
    emb.to("meta")
    assert all(p.is_meta for p in module.parameters())
    seen: list = []
    handle = _stop_at(module, seen, label)
    try:
        with pytest.raises(_Seen):
            call()
    finally:
        handle.remove()
    assert len(seen) == 1 and seen[0][1], seen
    return set(seen[0][1])


def test_every_embedder_puts_its_inputs_on_its_device(local_weights):
    """Every model input is created on ``self.device``: moved to ``meta``, each model receives meta
    tensors only (a CPU tensor there would be a device mismatch on a GPU)."""
    from hsm_bench.embedders.audio_flamingo import AudioFlamingo3
    from hsm_bench.embedders.audio_flamingo1 import AudioFlamingo1
    from hsm_bench.embedders.laion_clap import LaionClap630kAudioset, LaionClapHF
    from hsm_bench.embedders.msclap import MSCLAP2022, MSCLAP2023
    from hsm_bench.embedders.panns import Cnn14_16k

    clip = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    checks = []
    e = Cnn14_16k(arch={"widths": tuple(KL_WIDTHS)})
    e.load()
    checks.append(_inputs_device(e, e.model, lambda: e.embed_audio([clip]), "cnn14"))
    for cls, arch in ((MSCLAP2023, TINY_2023), (MSCLAP2022, TINY_2022)):
        e = cls(arch=arch, batch_size=2)
        e.load()
        checks.append(_inputs_device(e, e.model.audio_encoder, lambda: e.embed_audio([clip]), f"{e.name} audio"))
        checks.append(_inputs_device(e, e.model.caption_encoder, lambda: e.embed_text(["a dog barks"]), f"{e.name} text"))
    e = LaionClap630kAudioset(arch=TINY_LAION, batch_size=2)
    e.load()
    checks.append(_inputs_device(e, e.model.audio_branch, lambda: e.embed_audio([clip]), "laion audio"))
    checks.append(_inputs_device(e, e.model.text_branch, lambda: e.embed_text(["a dog barks"]), "laion text"))
    e = LaionClapHF(batch_size=2)
    e.load()
    checks.append(_inputs_device(e, e.model.audio_model, lambda: e.embed_audio([clip]), "laion-hf audio"))
    checks.append(_inputs_device(e, e.model.text_model, lambda: e.embed_text(["a dog barks"]), "laion-hf text"))
    e = AudioFlamingo1(arch=af1_tiny.TINY_ARCH, clap_batch_size=1)
    e.load()
    checks.append(_inputs_device(e, e.clap, lambda: e.embed_audio([clip]), "af1 clap"))
    # the LM stage: the window embeddings as the CLAP stage leaves them, on the device
    e.media = lambda clips: (torch.zeros(len(clips), 16, af1_tiny.AUDIO_DIM, device=e.device),
                             torch.ones(len(clips), 16, dtype=torch.bool, device=e.device))  # fmt: skip
    checks.append(_inputs_device(e, e.model.lang_encoder.model.decoder, lambda: e.embed_audio([clip]), "af1 lm"))
    e = AudioFlamingo3()
    e.load()
    checks.append(_inputs_device(e, e.model, lambda: e.embed_audio([clip]), "af3"))
    assert checks == [{"meta"}] * 12


# -- bf16 autocast ----------------------------------------------------------------------------------------
def _tone_items(n=6, sr=SR):
    rng = np.random.default_rng(4)
    t = np.arange(2 * sr) / sr
    out = []
    for k in range(n):
        ref = (0.4 * np.sin(2 * np.pi * (220 + 90 * k) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        mix = ref + (0.25 * rng.standard_normal(t.size)).astype(np.float32)
        est = (ref + 0.3 * (mix - ref)).astype(np.float32)
        out.append(ScoreItem(f"i{k}", est, sr, reference=ref, mixture=mix, caption=("a dog barks", "rain falls on a roof")[k % 2],
                             captions=["noise hisses"], task="extract"))  # fmt: skip
    return out


def _bf16_change(make, items, cache) -> float:
    """The largest |bf16 - float32| over every output of every item."""
    fp32, bf16 = make(None), make("bf16")
    fp32.setup("cpu", cache)
    bf16.setup("cpu", cache)  # the same cache: autocast features must never be read as float32 ones
    a, b = fp32.compute_batch(items), bf16.compute_batch(items)
    diffs = [abs(x[k] - y[k]) for x, y in zip(a, b) for k in x]
    assert len(diffs) == sum(len(x) for x in a) == sum(len(y) for y in b) > 0
    assert bf16.version_key != fp32.version_key and bf16.params["autocast"] == "bf16" and "autocast" not in fp32.params
    assert bf16.describe()["embedder"]["autocast"] == "bf16" and "autocast" not in fp32.describe()["embedder"]
    assert bf16.embedder.cache_key() != fp32.embedder.cache_key()
    return max(diffs)


# measured on this machine (max |bf16 - float32| of clap, clap_a, clapi over these items): msclap-2023
# 4.0e-3, msclap-2022 2.3e-3, LAION 2.1e-3, LAION (transformers) 3.6e-3; up to 4.3e-3 on the items of
# tests/conftest.py; 7e-4 on the full-size MS-CLAP 2023 architecture (random weights)
@pytest.mark.parametrize("backend, arch", [("msclap-2023", TINY_2023), ("msclap-2022", TINY_2022),
                                           ("laion-clap-630k-audioset", TINY_LAION), ("laion-clap-hf", None)])  # fmt: skip
def test_clap_under_bf16_autocast_stays_within_its_stated_tolerance(backend, arch, local_weights, tmp_path):
    from hsm_bench.metrics.clap import CLAPScore
    from hsm_bench.store.cache import FeatureCache

    params = {"batch_size": 2, **({"arch": arch} if arch else {})}
    change = _bf16_change(lambda ac: CLAPScore(backend=backend, autocast=ac, backend_params=params), _tone_items(),
                          FeatureCache(tmp_path / "cache"))  # fmt: skip
    assert 0 < change < CLAPScore.autocast_tolerance == 0.01


# measured on this machine (max |bf16 - float32| over these items): AF1 5.3e-5, AF3 6.5e-4; up to
# 1.9e-4 (AF1) on the items of tests/conftest.py; 4.8e-5 on the full-size AF1 (random weights)
@pytest.mark.parametrize("backend, params", [("audio-flamingo-1", {"arch": af1_tiny.TINY_ARCH, "clap_batch_size": 1}),
                                             ("audio-flamingo-3", {})])  # fmt: skip
def test_afsim_under_bf16_autocast_stays_within_its_stated_tolerance(backend, params, local_weights, tmp_path):
    from hsm_bench.metrics.afsim import AFSim
    from hsm_bench.store.cache import FeatureCache

    change = _bf16_change(lambda ac: AFSim(backend=backend, autocast=ac, backend_params=params), _tone_items(),
                          FeatureCache(tmp_path / "cache"))  # fmt: skip
    assert 0 < change < AFSim.autocast_tolerance == 0.005


def test_the_front_ends_stay_float32_under_autocast():
    """bfloat16 rounding noise would fill the quiet bands of the log-mel: the STFT, mel and bn0
    run in float32 under autocast, bit for bit what they give without it."""
    from hsm_bench.embedders.htsat import HTSAT, HTSATConfig
    from hsm_bench.embedders.panns import Cnn14

    wave = torch.from_numpy(_tone_items(1)[0].estimate[None].copy())
    htsat = HTSAT(HTSATConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in clap_tiny.TINY_HTSAT.items()})).eval()
    cnn = Cnn14(16000, widths=tuple(KL_WIDTHS)).eval()
    with torch.inference_mode():
        plain = htsat.logmel(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = htsat.logmel(wave)
            net = htsat(wave)["embedding"]
            logits = cnn(wave)["logits"]
    assert cast.dtype == torch.float32 and torch.equal(plain, cast)
    assert net.dtype == torch.bfloat16 and logits.dtype == torch.bfloat16  # the networks behind them do run in bf16


def test_autocast_is_refused_where_not_shown_safe_and_checked_everywhere(compose_config, tiny_testset, tmp_path):
    from hsm_bench.metrics.clap import CLAPScore
    from hsm_bench.pipeline.score import build_metrics

    with pytest.raises(ConfigError, match=r"^metrics.params.kl.autocast=bf16: kl does not allow autocast: KL of AudioSet") as exc:
        build_metrics(["kl"], {"kl": {"autocast": "bf16"}})
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match=r"^metrics.params.clap.autocast='fp16': expected bf16 or null"):
        build_metrics(["clap"], {"clap": {"autocast": "fp16"}})
    with pytest.raises(ConfigError, match="afsim.autocast=True"):
        build_metrics(["afsim"], {"afsim": {"autocast": True}})
    # float32 results keep the resume keys they had before the parameter existed
    assert CLAPScore(autocast=None).version_key == CLAPScore().version_key and "autocast" not in CLAPScore().params
    # through `run`: refused before the run folder exists
    cfg = compose_config("system=oracle_target", f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}",
                         "runtime.progress=false", "metrics.names=[kl]", "+metrics.params.kl.autocast=bf16")  # fmt: skip
    with pytest.raises(ConfigError, match="kl does not allow autocast"):
        run_pipeline(cfg)
    assert not (tmp_path / "runs").exists()
