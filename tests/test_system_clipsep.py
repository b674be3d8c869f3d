"""CLIPSep-NIT: official key layout and container, end to end through the pipeline, checkpoint
and train-args rejections, the tiling / STFT / warp / mask / ISTFT path against librosa and
hand computations, the U-Net against a functional re-derivation, the query text, the weights.

Everything is built here (tests/clipsep_tiny.py): a small U-Net with the full-size key names,
random weights, a tiny CLIP folder with a locally built tokenizer. The comparison with the
official code (same random weights at full size, same audio) is
benchmarks/compare_clipsep_official.py.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsm_bench import weights
from hsm_bench.errors import ConfigError
from hsm_bench.hashing import sha256_file
from hsm_bench.weights import CheckpointError
from systems import clipsep_signal as sig
from systems.clipsep import CLIPSep
from systems.clipsep_net import CLIPSepNIT, DataParallelKeys
from systems.clipsep_text import LABEL_ENSEMBLE, prompts, templates
from tests import clipsep_tiny as tiny
from tests.system_checks import batch as _batch
from tests.system_checks import outputs_follow_the_model

# the same item separated inside the pipeline and here runs the same kernels on the same shapes
# (one clip at a time); the bound only absorbs the WAV round trip of float32 samples (exact)
TOL = 1e-6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny.build_files(tmp_path_factory.mktemp("clipsep"))


@contextlib.contextmanager
def _weights(files, separator=None):
    with weights.overrides({"clipsep-nit": separator or files["experiment"], "clip-vit-base-patch32": files["clip"]}):
        yield


@pytest.fixture(scope="module")
def system(files):
    s = CLIPSep(**tiny.TINY)
    with _weights(files):
        s.load("cpu")
    return s




def _clip(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.4 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(n)
    return torch.from_numpy(x.astype(np.float32))


def _hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic, as librosa's get_window


def _stft_by_hand(x: np.ndarray) -> np.ndarray:
    """Centred frames of the zero-padded signal (librosa 0.9.2's default), float64 FFT, complex64."""
    xp = np.pad(x.astype(np.float64), 512)
    frames = np.stack([xp[i : i + 1024] for i in range(0, len(xp) - 1023, 256)], axis=1)
    return np.fft.rfft(frames * _hann()[:, None], axis=0).astype(np.complex64)


def _istft_by_hand(spec: np.ndarray, length: int) -> np.ndarray:
    """Windowed inverse FFTs overlap-added and divided by the summed squared window, centred."""
    frames = np.fft.irfft(spec, n=1024, axis=0) * _hann()[:, None]
    y, norm = np.zeros(1024 + 256 * (spec.shape[1] - 1)), np.zeros(1024 + 256 * (spec.shape[1] - 1))
    for k in range(spec.shape[1]):
        y[256 * k : 256 * k + 1024] += frames[:, k]
        norm[256 * k : 256 * k + 1024] += _hann() ** 2
    return y[512 : 512 + length] / norm[512 : 512 + length]


# -- layout -----------------------------------------------------------------------------------
def official_layout(channels: int = 32, layers: int = 7, ngf: int = 64) -> dict[str, list[int]]:
    """Key -> shape of ``torch.nn.DataParallel(CLIPPITSepV4(...)).state_dict()``, derived by hand
    from sony/CLIPSep clipsep.py (UNetBlock L1550-1656: outermost [downconv, submodule, relu,
    upsample, upconv+bias]; middle [lrelu, downconv, downnorm, submodule, relu, upsample, upconv,
    upnorm]; innermost [lrelu, downconv, relu, upsample, upconv, upnorm]; UNet L1658-1707;
    CLIPPITSepV4.__init__ L1133-1184)."""
    out: dict[str, list[int]] = {}

    def bn(p: str, n: int) -> None:
        out.update({p + "weight": [n], p + "bias": [n], p + "running_mean": [n], p + "running_var": [n],
                    p + "num_batches_tracked": []})  # fmt: skip

    s = "module.sound_net."
    bn(s + "bn0.", 1)
    p = s + "unet_block.model."
    out[p + "0.weight"] = [ngf, 1, 4, 4]
    out[p + "4.weight"], out[p + "4.bias"] = [channels, 2 * ngf, 3, 3], [channels]
    plan = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [(8 * ngf, 8 * ngf)] * (layers - 5)
    for outer, inner in plan:
        p += "1.model." if p.endswith("unet_block.model.") else "3.model."
        out[p + "1.weight"] = [inner, outer, 4, 4]
        bn(p + "2.", inner)
        out[p + "6.weight"] = [outer, 2 * inner, 3, 3]
        bn(p + "7.", outer)
    p += "3.model."
    out[p + "1.weight"], out[p + "4.weight"] = [8 * ngf, 8 * ngf, 4, 4], [8 * ngf, 8 * ngf, 3, 3]
    bn(p + "5.", 8 * ngf)
    m = "module."
    out[m + "frame_net.weight"], out[m + "frame_net.bias"] = [channels, 512], [channels]
    for k in (0, 1):
        out[f"{m}pit_nets.{k}.weight"], out[f"{m}pit_nets.{k}.bias"] = [channels, channels], [channels]
    out[m + "synth_net.scale"], out[m + "synth_net.bias"] = [channels], [1]
    return out


def test_full_size_key_layout_is_the_official_one(files):
    with torch.device("meta"):
        full = {k: list(v.shape) for k, v in DataParallelKeys(CLIPSepNIT()).state_dict().items()}
    assert full == official_layout()
    assert len(full) == 83  # what the official module holds (benchmarks/compare_clipsep_official.py)
    state = torch.load(files["experiment"] / "checkpoints" / "best_model.pt")
    assert {k: list(v.shape) for k, v in state.items()} == official_layout(**tiny.TINY)


# -- pipeline -----------------------------------------------------------------------------
def test_pipeline_end_to_end(files, compose_config, tmp_path, system):
    from hsm_bench.pipeline.run import run_pipeline
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts", n_items=2, seconds=1.0, seed=3)  # one extract, one remove item
    res = run_pipeline(compose_config(
        "system=clipsep", *tiny.TINY_OVERRIDES, f"testset.root={ts}", f"paths.runs_dir={tmp_path / 'runs'}",
        "runtime.progress=false", "metrics.names=[sdr]", f"+weights.clipsep-nit={files['experiment']}",
        f"+weights.clip-vit-base-patch32={files['clip']}",
    ))  # fmt: skip
    assert res["status"] == 0, res["problem"]
    run = json.loads((Path(res["run_dir"]) / "run.json").read_text())["system"]
    assert run["checkpoint_sha256"] == sha256_file(files["experiment"] / "checkpoints" / "best_model.pt")
    assert run["text_encoder"]["weights"] == "clip-vit-base-patch32"
    assert run["text_encoder"]["checkpoint_sha256"] == weights.path_sha256(files["clip"])
    assert run["query_template"]["caption"] == ["a photo of {}"]
    assert run["query_template"]["label"] == list(LABEL_ENSEMBLE)
    assert run["train_args"]["binary_mask"] is True and run["train_args"]["channels"] == tiny.TINY["channels"]
    assert run["remove"] == "mixture minus extraction (harness)"

    outputs_follow_the_model(res["run_dir"], ts, system, TOL)


def test_output_of_an_item_does_not_depend_on_its_batch(system):
    x = torch.zeros(2, 1, 24000)
    x[0, 0], x[1, 0, :20000] = _clip(24000, 1), _clip(20000, 2)
    with torch.inference_mode():
        both = system.separate(_batch(x, ["a harmonic tone hums", "dog"], ["caption", "label"], [24000, 20000]))
        alone = system.separate(_batch(x[1:, :, :20000], ["dog"], ["label"]))
    assert torch.equal(both[1, :, :20000], alone[0])
    assert not both[1, :, 20000:].any()  # nothing beyond the item's length


# -- checkpoints and train-args -----------------------------------------------------------------
def test_checkpoint_with_wrong_keys_is_rejected_in_one_line(files, tmp_path):
    state = dict(tiny.separator_state())
    del state["module.synth_net.bias"]
    state["module.sound_net.extra.weight"] = torch.zeros(3)
    state["module.frame_net.weight"] = torch.zeros(7, 512)
    exp = tiny.experiment(tmp_path / "bad", state)
    with _weights(files, exp), pytest.raises(CheckpointError) as err:
        CLIPSep(**tiny.TINY).load("cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("best_model.pt is not a CLIPSep-NIT checkpoint")
    for key in ("module.synth_net.bias", "module.sound_net.extra.weight", "module.frame_net.weight [7, 512]"):
        assert key in msg
    assert "1 missing" in msg and "1 unexpected" in msg and "1 wrong shape" in msg


def test_checkpoint_without_the_dataparallel_prefix_is_rejected_as_infer_py_does(files, tmp_path):
    bare = {k[len("module."):]: v for k, v in tiny.separator_state().items()}
    exp = tiny.experiment(tmp_path / "bare", bare)
    with _weights(files, exp), pytest.raises(CheckpointError, match="lack the 'module.' prefix") as err:
        CLIPSep(**tiny.TINY).load("cpu")
    assert "\n" not in str(err.value)


def test_train_args_must_describe_the_configured_model(files, tmp_path):
    exp = tiny.experiment(tmp_path / "wide", train_args={**tiny.TRAIN_ARGS, "channels": 8, "layers": 5})
    with _weights(files, exp), pytest.raises(CheckpointError) as err:
        CLIPSep(**tiny.TINY).load("cpu")
    assert "\n" not in str(err.value) and "add system.params.channels=8 to the run" in str(err.value)
    for change, what in (({"binary_mask": False}, "binary_mask=False"), ({"log_freq": False}, "log_freq=False"),
                         ({"image_model": "clip"}, "image_model 'clip'")):  # fmt: skip
        exp = tiny.experiment(tmp_path / what.split()[0], train_args={**tiny.TRAIN_ARGS, "channels": 4, "layers": 5, **change})
        with _weights(files, exp), pytest.raises(CheckpointError, match=what):
            CLIPSep(**tiny.TINY).load("cpu")


def test_checkpoint_file_or_experiment_folder(files, tmp_path, system):
    pt = files["experiment"] / "checkpoints" / "best_model.pt"
    alone = tiny.write_checkpoint(tmp_path / "elsewhere" / "best_model.pt", torch.load(pt))
    for where, has_args in ((pt, True), (alone, False)):
        s = CLIPSep(**tiny.TINY)
        with _weights(files, where):
            s.load("cpu")
            assert (s.info()["train_args"] is not None) == has_args
            assert s.checkpoint_sha256() == sha256_file(where)
        for a, b in zip(s.net.state_dict().values(), system.net.state_dict().values()):
            assert torch.equal(a, b)
    with _weights(files, tmp_path), pytest.raises(CheckpointError, match="holds neither checkpoints/best_model.pt"):
        CLIPSep(**tiny.TINY).load("cpu")


def test_bad_parameters_are_config_errors(compose_config):
    from hsm_bench.pipeline.run import make_system

    for override, what in (("system.params.mask=hard", "mask='hard'"), ("system.params.threshold=1.5", "threshold"),
                           ("system.params.caption_template=the_sound", "must hold '{}' once")):  # fmt: skip
        with pytest.raises(ConfigError, match=what):
            make_system(compose_config("system=clipsep", override))


# -- signal path ----------------------------------------------------------------------------
def test_tiling_is_infer_py_s():
    # 65535 * (N // 65535 + 1): always longer than the clip, 256 STFT frames per 65535 samples
    for n, total in ((160000, 196605), (65534, 65535), (65535, 131070), (16000, 65535), (320000, 327675)):
        assert sig.tiled_length(n) == total
        x = torch.arange(n, dtype=torch.float32) / n
        t = sig.tile(x)
        assert len(t) == total and torch.equal(t[:n], x) and torch.equal(t[n : 2 * n][: total - n], x[: total - n])
        assert sig.stft(t).shape == (513, 256 * (total // 65535))
    assert torch.equal(sig.tile(torch.tensor([2.0, -3.0, 0.5])), torch.tensor([1.0, -1.0, 0.5] * 21845))


def test_stft_and_istft_by_hand():
    x = sig.tile(_clip(20000, 3))
    spec = sig.stft(x)
    ref = _stft_by_hand(x.numpy())
    assert spec.dtype == torch.complex64 and spec.shape == ref.shape == (513, 256)
    assert np.abs(spec.numpy() - ref).max() <= 1e-6 * np.abs(ref).max()
    mag, phase = spec.abs(), spec.angle()
    mask = (torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = sig.masked_istft(mag, mask, phase, 20000)
    # utils.istft_reconstruction: complex128 magnitude times the complex64 phasor, istft, clip to [-1, 1]
    spec_np = (mag * mask).numpy().astype(np.complex128) * np.exp(1j * phase.numpy())
    want = np.clip(_istft_by_hand(spec_np, 20000), -1, 1)
    assert out.dtype == torch.float32 and len(out) == 20000
    assert np.abs(out.numpy() - want).max() < 1e-6
    full = sig.masked_istft(mag, torch.ones_like(mag), phase, len(x))
    assert torch.allclose(full, x, atol=1e-6)  # an all-one mask gives the (tiled) input back
    loud = sig.masked_istft(4 * mag, torch.ones_like(mag), phase, len(x))
    assert loud.abs().max() == 1.0 and torch.allclose(loud, (4 * x).clamp(-1, 1), atol=1e-5)  # clipped


@pytest.mark.slow
def test_stft_and_istft_match_librosa():
    import librosa

    x = sig.tile(_clip(20000, 3))
    spec = sig.stft(x)
    ref = librosa.stft(x.numpy(), n_fft=1024, hop_length=256, win_length=1024, window="hann", center=True,
                       pad_mode="constant")  # fmt: skip
    assert ref.dtype == np.complex64 and np.abs(spec.numpy() - ref).max() <= 1e-6 * np.abs(ref).max()
    mag, phase = spec.abs(), spec.angle()
    spec_np = mag.numpy().astype(np.complex128) * np.exp(1j * phase.numpy())
    want = np.clip(librosa.istft(spec_np, hop_length=256, win_length=1024, n_fft=1024, window="hann", center=True), -1, 1)
    assert np.abs(sig.masked_istft(mag, torch.ones_like(mag), phase, len(want)).numpy() - want).max() < 1e-6


def test_istft_reaches_the_input_length_where_infer_py_stops_early():
    n = 131000  # tiled to 131070 = 512 frames: librosa.istft without length gives 256 * 511 samples
    x = _clip(n, 4)
    spec = sig.stft(sig.tile(x))
    out = sig.masked_istft(spec.abs(), torch.ones(spec.shape), spec.angle(), n)
    assert spec.shape[-1] == 512 and 256 * 511 < n
    assert torch.allclose(out, x, atol=1e-6)


def test_warp_grids_by_hand():
    g = sig.warp_grid(256, 5)
    assert g.shape == (1, 256, 5, 2) and g.dtype == np.float32
    assert np.allclose(g[0, 0, :, 0], [-1, -0.5, 0, 0.5, 1])
    v = np.linspace(-1, 1, 256)
    assert np.allclose(g[0, :, 0, 1], (21.0 ** ((v + 1) / 2) - 11) / 10, atol=1e-7)
    assert g[0, 0, 0, 1] == -1 and g[0, -1, 0, 1] == 1
    inv = sig.warp_grid(513, 5, inverse=True)
    u = np.linspace(-1, 1, 513)
    assert np.allclose(inv[0, :, 0, 1], np.log(10 * u + 11) / np.log(21) * 2 - 1, atol=1e-6)
    # row r of the warped image reads linear bin (513 - 1) * (gy + 1) / 2 (align_corners=True)
    lin = torch.arange(513, dtype=torch.float32).repeat(3, 1).T[None, None]
    warped = sig.warp(lin)[0, 0, :, 0].numpy()
    assert np.allclose(warped, 256 * (g[0, :, 0, 1].astype(np.float64) + 1), atol=1e-3)
    back = sig.unwarp(sig.warp(lin))[0, 0, :, 0].numpy()
    # a round trip interpolates the exponential row spacing linearly: off by at most ~0.01 bin at
    # the top, where rows lie ~6 bins apart
    assert np.abs(back - np.arange(513)).max() < 0.02


def _reference_unet(sd: dict, x: torch.Tensor, layers: int) -> torch.Tensor:
    """The official U-Net recomputed with functional ops from the checkpoint's keys, including
    its in-place LeakyReLU rewriting the skip: every non-outermost level returns
    cat([lrelu(x), f(lrelu(x))])."""

    def bn(p, t):
        return F.batch_norm(t, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False)

    def up(t):
        return F.interpolate(F.relu(t), scale_factor=2, mode="bilinear", align_corners=True)

    def level(p, t, depth):
        if depth == 0:
            y = level(p + "1.model.", F.conv2d(t, sd[p + "0.weight"], stride=2, padding=1), 1)
            return F.conv2d(up(y), sd[p + "4.weight"], sd[p + "4.bias"], padding=1)
        h = F.leaky_relu(t, 0.2)
        y = F.conv2d(h, sd[p + "1.weight"], stride=2, padding=1)
        if depth == layers - 1:
            y = bn(p + "5.", F.conv2d(up(y), sd[p + "4.weight"], padding=1))
        else:
            y = level(p + "3.model.", bn(p + "2.", y), depth + 1)
            y = bn(p + "7.", F.conv2d(up(y), sd[p + "6.weight"], padding=1))
        return torch.cat([h, y], 1)

    return level("sound_net.unet_block.model.", bn("sound_net.bn0.", x), 0)


def test_mask_logits_against_a_functional_rederivation(system):
    sd = system.net.state_dict()
    x = torch.randn(1, 1, 256, 64, generator=torch.Generator().manual_seed(1))
    emb = torch.randn(1, 512, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feat = _reference_unet(sd, x, tiny.TINY["layers"])
        query = torch.sigmoid(emb @ sd["frame_net.weight"].T + sd["frame_net.bias"])
        want = torch.einsum("c,cft->ft", query[0] * sd["synth_net.scale"], feat[0]) + sd["synth_net.bias"]
        got = system.net.mask_logits(x, emb)
    assert got.shape == (1, 1, 256, 64)
    assert torch.allclose(got[0, 0], want, atol=1e-5, rtol=1e-5)


def test_extraction_against_a_hand_computation(system):
    x = _clip(30000, 5)
    query = system.query_embedding("a harmonic tone hums", "caption")
    with torch.no_grad():
        system.mask = "soft"
        try:
            got_soft = system.extract(x, query).numpy()
        finally:
            system.mask = "binary"
        tiled = np.clip(np.tile(x.numpy(), 3)[:65535], -1, 1)
        spec = _stft_by_hand(tiled)
        mag = torch.from_numpy(np.abs(spec))
        logits = system.net.mask_logits(torch.log(sig.warp((mag + 1e-10)[None, None])), query[None])[0, 0].numpy()
        # the binary decision of a bin within float32 rounding of the threshold depends on the exact
        # arithmetic: it is taken from the system's own STFT magnitude and unwarping
        mag_sys = sig.stft(sig.tile(x)).abs()
        logits_sys = system.net.mask_logits(torch.log(sig.warp((mag_sys + 1e-10)[None, None])), query[None])
        prob_sys = sig.unwarp(torch.sigmoid(logits_sys))[0, 0].numpy()
        # this random model passes most bins at 0.5: a threshold at the median makes a real decision
        system.threshold = thr = round(float(np.median(prob_sys)), 3)
        try:
            got = system.extract(x, query).numpy()
        finally:
            system.threshold = 0.5
    decided = (prob_sys > thr).astype(np.float32)
    # unwarp by hand: linear bin k reads warped row (255) * (log(10 u + 11) / log(21)), u = k / 256 - 1
    prob = 1 / (1 + np.exp(-logits.astype(np.float64)))
    pos = 255 * np.log(10 * np.linspace(-1, 1, 513) + 11) / np.log(21)
    lo = np.clip(np.floor(pos).astype(int), 0, 254)
    w = (pos - lo)[:, None]
    lin = (1 - w) * prob[lo] + w * prob[lo + 1]

    def rebuild(mask):
        return np.clip(_istft_by_hand(np.abs(spec) * mask * np.exp(1j * np.angle(spec)), 30000), -1, 1)

    assert np.abs(got_soft - rebuild(lin)).max() < 1e-5
    assert (decided == (lin > thr)).mean() > 0.999  # the hand unwarping decides (almost) every bin alike
    assert 0.3 < decided.mean() < 0.7
    assert np.abs(got - rebuild(decided)).max() < 1e-5


# -- query text -----------------------------------------------------------------------------
def test_query_prompts_follow_the_paper_evaluation(system):
    assert system.query_prompts("dog bark", "label") == [
        "a photo of dog bark.", "a photo of the small dog bark.", "a photo of the small dog bark.",
        "a low resolution photo of a dog bark.", "a photo of many dog bark."]  # fmt: skip
    assert system.query_prompts("A dog barks  while cars pass &amp; honk.", "caption") == [
        "a photo of A dog barks while cars pass & honk."]
    assert templates("the sound of {}|{}") == ("the sound of {}", "{}")
    assert prompts("a {b}", templates("the sound of {}|{}")) == ["the sound of a {b}", "a {b}"]  # braces kept
    with pytest.raises(ValueError, match="once"):
        templates("{} and {}")


def test_label_query_is_the_mean_of_its_prompt_embeddings(system):
    from systems.clipsep_text import encode

    got = system.query_embedding("dog bark", "label")
    one_by_one = torch.stack([encode(system.text_model, system.tokenizer, [p], system.device)[0]
                              for p in system.query_prompts("dog bark", "label")])  # fmt: skip
    assert got.shape == (512,)
    assert torch.allclose(got, one_by_one.mean(0), atol=1e-6)
    assert not torch.allclose(got, one_by_one[0], atol=1e-3)


def test_tokens_by_hand_and_truncation(system):
    tok = system.tokenizer
    ids = tok(["A  Cat!"], padding="max_length", max_length=77, truncation=True)["input_ids"][0]
    vocab = tok.get_vocab()
    want = [vocab["<|startoftext|>"], vocab["a</w>"], vocab["c"], vocab["a"], vocab["t</w>"], vocab["!</w>"],
            vocab["<|endoftext|>"]]  # fmt: skip
    assert ids[:7] == want and len(ids) == 77
    long = tok(["word " * 100], padding="max_length", max_length=77, truncation=True)["input_ids"][0]
    assert len(long) == 77 and long[-1] == vocab["<|endoftext|>"]  # clip.tokenize(truncate=True)
    # the padding after the end-of-text token does not reach it (causal attention, no mask)
    from systems.clipsep_text import encode

    unpadded = torch.tensor([[want[0], *want[2:5], want[-1]]])  # "cat"
    with torch.no_grad():
        alone = system.text_model(input_ids=unpadded).text_embeds
    assert torch.allclose(encode(system.text_model, tok, ["cat"], system.device), alone, atol=1e-6)


def test_text_folder_without_text_weights_is_rejected(files, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "clip"
    shutil.copytree(files["clip"], bad)
    state = {k: v for k, v in load_file(bad / "model.safetensors").items() if k != "text_projection.weight"}
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    with weights.overrides({"clipsep-nit": files["experiment"], "clip-vit-base-patch32": bad}), \
            pytest.raises(CheckpointError, match="text_projection.weight") as err:  # fmt: skip
        CLIPSep(**tiny.TINY).load("cpu")
    assert "\n" not in str(err.value)


# -- weights --------------------------------------------------------------------------------
def test_download_weights_names_and_the_drive_message(capsys):
    from hsm_bench import download
    from hsm_bench.cli import main

    assert download.names_for(system="clipsep") == ["clipsep-nit", "clip-vit-base-patch32"]
    clip = weights.spec("clip-vit-base-patch32")
    assert clip.repo_id == "openai/clip-vit-base-patch32" and "pytorch_model.bin" in clip.extra["allow_patterns"]
    assert main(["download-weights", "clipsep-nit"]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert "only published on Google Drive" in line and "1pYQ05BClqT6Z-OSkngDKsQ2PJRF70oQL" in line
    assert "--weights clipsep-nit=" in line


@pytest.mark.slow
def test_load_random_is_full_size_and_separates():
    s = CLIPSep()
    s.load_random("cpu", seed=0)
    assert {k: list(v.shape) for k, v in DataParallelKeys(s.net).state_dict().items()} == official_layout()
    cfg = s.text_model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size, cfg.projection_dim) == (
        512, 12, 8, 49408, 512)
    with torch.inference_mode():
        out = s.separate(_batch(_clip(32000)[None, None], ["dog"], ["label"]))
    assert out.shape == (1, 1, 32000) and torch.isfinite(out).all() and out.abs().max() > 0
    assert s.info()["checkpoint_sha256"] == "random-0" and s.info()["train_args"] is None


def test_load_random_small_variant_separates():
    s = CLIPSep(**tiny.TINY)
    s.load_random("cpu", seed=1, text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                              "num_attention_heads": 2})  # fmt: skip
    with torch.inference_mode():
        out = s.separate(_batch(_clip(16000)[None, None], ["dog"], ["label"]))
    assert out.shape == (1, 1, 16000) and torch.isfinite(out).all() and out.abs().max() > 0
    assert s.text_model.config.vocab_size == 49408 and s.text_model.config.projection_dim == 512
    assert s.info()["checkpoint_sha256"] == "random-1"
