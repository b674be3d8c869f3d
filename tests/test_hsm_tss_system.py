"""HSM-TSS end to end: the paper's shapes, checkpoints (round trip, strict rejection), the two
systems through `hsm-bench run` on demo items with both tasks, the features for the report,
and the instruction templates of our own manifests. Random weights built by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hsm_bench.cli import main
from hsm_bench.weights import CheckpointError
from systems.hsm_tss.checkpoint import load_checkpoint, read_config, save_checkpoint
from tests.hsm_tss_tiny import tiny_arch, tiny_checkpoints, tiny_t5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("hsm-tss"))


def _weights(files, variant="hsm-tss"):
    return ["--weights", f"{variant}={files[variant]}", "--weights", f"flan-t5-base={files['t5']}"]


def _system(files, cls_name="HsmTss", **params):
    from hsm_bench import weights
    from systems.hsm_tss import system as mod

    cls = getattr(mod, cls_name)
    s = cls(**params)
    with weights.overrides({cls.checkpoint_name: files[cls.checkpoint_name], "flan-t5-base": files["t5"]}):
        s.load("cpu")
    return s


def _batch(mix: np.ndarray, instructions, tasks, captions, target=None):
    from hsm_bench.api.system import SeparationBatch

    x = torch.from_numpy(np.asarray(mix, dtype=np.float32))[:, None]
    n = len(instructions)
    return SeparationBatch(item_ids=[f"i{k}" for k in range(n)], mixture=x, lengths=torch.full((n,), x.shape[-1]),
                           instructions=list(instructions), task=list(tasks), caption=list(captions),
                           target=None if target is None else torch.from_numpy(target)[:, None])  # fmt: skip


# -- the paper's shapes -----------------------------------------------------------------------
def test_paper_architecture_shapes_for_ten_seconds(tmp_path):
    """Full widths (768 / 1024, 16 x 1024 codes, TF-Codec 6 kbps), one layer per stage to keep it
    quick: 512 patches x 768, one 768-d global vector, 500 frames x 16 codes, 160000 samples."""
    from systems.hsm_tss.model import HsmTssModel, architecture
    from systems.hsm_tss.text import TextEncoder

    text = TextEncoder.from_folder(tiny_t5(tmp_path / "t5", d_model=768))
    arch = architecture("hierarchical", **{"audiomae": {"depth": 1}, "qaudio": {"layers": 1}, "global": {"depth": 1},
                                           "local": {"depth": 1}, "acoustic": {"depth": 1},
                                           "text": {"d_model": 768, "vocab_size": text.vocab_size}})  # fmt: skip
    assert arch["local"] == {"dim": 768, "depth": 1, "heads": 8, "ffn": 3072}
    assert arch["acoustic"]["dim"] == 1024 and arch["acoustic"]["heads"] == 8
    torch.manual_seed(0)
    model = HsmTssModel(arch).eval()
    n = 160000
    wave = 0.1 * torch.randn(1, n)
    with torch.inference_mode():
        s_mix = model.local_features(wave, torch.tensor([n]))
        assert s_mix.shape == (1, 512, 768)
        cap, cv = text.captions(["a dog barks"])
        task, tv = text.tasks(["remove"])
        out = model.separate_features(s_mix, task, tv, cap, cv, attention=True)
        assert out["g_mix"].shape == out["g_hat"].shape == (1, 768)
        assert out["s_hat"].shape == (1, 512, 768)
        assert model.n_frames(n) == 500
        codes = model.acoustic_tokens(out["s_hat"], 500)
        assert codes.shape == (1, 500, 16) and int(codes.max()) < 1024
        assert model.decode_tokens(codes).shape == (1, 160000)
    tf = model.token_codec
    assert (tf.sample_rate, tf.frame_rate, tf.n_codebooks, tf.codebook_size) == (16000, 50, 16, 1024)


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_bit_exact(files, tmp_path):
    model, config = load_checkpoint(files["hsm-tss"])
    again = save_checkpoint(model, tmp_path / "copy", info=config["info"])
    model2, config2 = load_checkpoint(again)
    a, b = model.state_dict(), model2.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert config2["weights_sha256"] == config["weights_sha256"]  # same tensors, same bytes
    assert config2["architecture"] == config["architecture"]
    assert any(k.startswith("codec.") for k in a) and any(k.startswith("qaudio.") for k in a)
    single, _ = load_checkpoint(files["hsm-tss-single"])
    keys = single.state_dict()
    assert not any(k.startswith(("qaudio.", "global_sep.")) for k in keys)


def _rewrite(folder: Path, dest: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    from hsm_bench.hashing import sha256_file

    dest.mkdir()
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(dest / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["weights_sha256"] = sha256_file(dest / "model.safetensors")
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_wrong_or_partial_checkpoints_are_rejected_naming_the_keys(files, tmp_path):
    src = files["hsm-tss"]
    partial = _rewrite(src, tmp_path / "partial", lambda s: s.pop("local_sep.out.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing \(local_sep\.out\.weight\)"):
        load_checkpoint(partial)
    extra = _rewrite(src, tmp_path / "extra", lambda s: s.update({"local_sep.surplus": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected \(local_sep\.surplus\)"):
        load_checkpoint(extra)
    shape = _rewrite(src, tmp_path / "shape", lambda s: s.update({"acoustic.start": torch.zeros(7)}))
    with pytest.raises(CheckpointError, match=r"wrong shape \(acoustic\.start \[7\]"):
        load_checkpoint(shape)
    # the other variant's file: Q-Audio and the global stage are unexpected there
    with pytest.raises(CheckpointError, match="holds the 'hierarchical' HSM-TSS variant, 'single' was asked for"):
        load_checkpoint(src, variant="single")
    # a changed byte: the digest in config.json no longer matches
    bad = tmp_path / "tampered"
    bad.mkdir()
    (bad / "config.json").write_text((src / "config.json").read_text())
    data = bytearray((src / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no config.json"):
        read_config(tmp_path)
    with pytest.raises(CheckpointError, match="is a file"):
        read_config(src / "model.safetensors")


def test_save_refuses_to_overwrite_and_leaves_nothing_half_made(files, tmp_path):
    model, _ = load_checkpoint(files["hsm-tss-single"])
    target = tmp_path / "ckpt"
    save_checkpoint(model, target)
    with pytest.raises(FileExistsError):
        save_checkpoint(model, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left


def test_missing_checkpoint_says_none_is_public(capsys, tmp_path):
    status = main(["run", "--system", "hsm_tss", "--testset", "demo", f"paths.runs_dir={tmp_path}", "runtime.progress=false",
                   "system.params.checkpoint=weights"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "no public HSM-TSS checkpoint exists" in err[0]
    assert "hsm-bench train" in err[0] and "--weights hsm-tss=PATH" in err[0]
    assert not any(tmp_path.iterdir())  # nothing made


def test_single_stage_has_no_bundled_checkpoint_and_says_how_to_train_one(capsys, tmp_path):
    status = main(["run", "--system", "hsm_tss_single", "--testset", "demo", f"paths.runs_dir={tmp_path}",
                   "runtime.progress=false"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "hsm-bench train hsm_tss_single preset=demo out=DIR" in err[0]
    assert "--weights hsm-tss-single=DIR/model-fp16" in err[0]
    assert not any(tmp_path.iterdir())


def test_flan_t5_must_match_the_checkpoint(files, tmp_path):
    from hsm_bench import weights
    from hsm_bench.weights import WeightsError
    from systems.hsm_tss.system import HsmTss

    other = tiny_t5(tmp_path / "t5-48", d_model=48)
    s = HsmTss()
    with weights.overrides({"hsm-tss": files["hsm-tss"], "flan-t5-base": other}):
        with pytest.raises(WeightsError, match="d_model 48"):
            s.load("cpu")


# -- the systems --------------------------------------------------------------------------------
@pytest.mark.parametrize("system, variant", [("hsm_tss", "hsm-tss"), ("hsm_tss_single", "hsm-tss-single")])
def test_demo_items_through_hsm_bench_run(system, variant, files, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["run", "--system", system, "--testset", "demo", "testset.params.n_items=4", "--metrics", "sdr",
            f"paths.runs_dir={runs}", "runtime.progress=false", *_weights(files, variant)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run_json = next(runs.glob("**/run.json"))
    run_dir = run_json.parent
    info = json.loads(run_json.read_text())["system"]
    assert info["remove"] == "native" and info["variant"] == ("hierarchical" if variant == "hsm-tss" else "single")
    assert info["checkpoint_sha256"] == read_config(files[variant])["weights_sha256"]
    rows = [json.loads(x) for x in (run_dir / "separate.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    manifest = next(Path(json.loads(run_json.read_text())["testset"]["root"]).glob("manifest.jsonl"))
    items = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert {r["task"] for r in items} == {"extract", "remove"}  # both tasks ran
    # the outputs are the system's own separations of the mixtures at 16 kHz, any batch
    s = _system(files, "HsmTss" if variant == "hsm-tss" else "HsmTssSingle")
    root = manifest.parent
    for item in items:
        mix, sr = sf.read(root / item["mixture"], dtype="float32")
        out, sr_out = sf.read(run_dir / "outputs" / f"{item['id']}.wav", dtype="float32")
        assert sr == sr_out == 16000 and out.shape == mix.shape == (160000,)
        with torch.inference_mode():
            own = s.separate(_batch(mix[None], [item["instruction"]], [item["task"]], [item["caption"]]))[0, 0].numpy()
        assert np.abs(own).max() > 0.01  # audible: the tiny models are sharpened (tests/hsm_tss_tiny.py)
        assert np.abs(out - own).max() < 1e-4 * np.abs(own).max() + 1e-6


def test_task_token_conditions_the_separation_and_the_parser_decides_it(files):
    s = _system(files)
    rng = np.random.default_rng(0)
    mix = torch.from_numpy((0.1 * rng.standard_normal((1, 16000))).astype(np.float32))
    m = s.model
    with torch.inference_mode():
        s_mix = m.local_features(mix, torch.tensor([16000]))
        cap, cv = s.text.captions(["dog barking"])
        feats = {}
        for task in ("extract", "remove"):
            t, tv = s.text.tasks([task])
            feats[task] = m.separate_features(s_mix, t, tv, cap, cv)
    for key in ("g_hat", "s_hat"):  # both stages see the task token: without it the two runs are the
        # same computation, bit for bit; a random pre-LN stage lets it move S_hat by ~3e-5 of its range
        diff = (feats["extract"][key] - feats["remove"][key]).abs().max()
        assert diff > 1e-5 * feats["extract"][key].abs().max()
    # the parser, not the manifest's task field, decides: a contradicting row
    lie = _batch(mix.numpy(), ["Please remove the dog barking from this clip."], ["extract"], ["dog barking"])
    assert s._queries(lie) == (["remove"], ["the dog barking"])
    assert _system(files, parser="none")._queries(lie) == (["extract"], ["dog barking"])


def test_batch_composition_does_not_change_an_item(files):
    s = _system(files)
    rng = np.random.default_rng(1)
    a = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    b = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    b[16000:] = 0
    from hsm_bench.api.system import SeparationBatch

    both = SeparationBatch(item_ids=["a", "b"], mixture=torch.from_numpy(np.stack([a, b]))[:, None],
                           lengths=torch.tensor([24000, 16000]), instructions=["Keep the rain.", "Remove the dog barking."],
                           task=["extract", "remove"], caption=["rain", "dog barking"])  # fmt: skip
    with torch.inference_mode():
        y = s.separate(both)
        ya = s.separate(_batch(a[None], ["Keep the rain."], ["extract"], ["rain"]))
        yb = s.separate(_batch(b[None, :16000], ["Remove the dog barking."], ["remove"], ["dog barking"]))
    assert torch.allclose(y[0], ya[0], atol=1e-4)
    assert torch.allclose(y[1, :, :16000], yb[0], atol=1e-4)
    assert y[1, :, 16000:].abs().max() == 0  # nothing past the item's end


def test_features_for_the_report(files, tmp_path, capsys):
    """save_features writes the documented files, and the output does not depend on it."""
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts" / "tiny" / "v1", n_items=2, seconds=1.0)
    outs = {}
    for flag in ("false", "true"):
        runs = tmp_path / f"runs-{flag}"
        args = ["run", "--system", "hsm_tss", f"testset.root={ts}", "--metrics", "sdr", f"paths.runs_dir={runs}",
                "runtime.progress=false", f"system.params.save_features={flag}", *_weights(files)]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err
        outs[flag] = next(runs.glob("**/run.json")).parent
    feats = outs["true"] / "features"
    ids = sorted(p.stem for p in (outs["true"] / "outputs").glob("*.wav"))
    assert not (outs["false"] / "features").exists()
    for item in ids:
        a, _ = sf.read(outs["false"] / "outputs" / f"{item}.wav", dtype="float32")
        b, _ = sf.read(outs["true"] / "outputs" / f"{item}.wav", dtype="float32")
        assert np.array_equal(a, b)
        g = np.load(feats / "global" / f"{item}.npz")
        assert g["predicted"].shape == g["reference"].shape == (32,)
        loc = np.load(feats / "local" / f"{item}.npz")
        assert loc["predicted"].shape == loc["mixture"].shape == (512, 32)
        att = np.load(feats / "attention" / f"{item}.npy")
        task, description = np.load(feats / "parse" / f"{item}.npz")["task_description"]
        # rows: the global token, the task word's tokens, the caption's tokens (T5 adds </s>)
        from systems.hsm_tss.text import TASK_WORDS, TextEncoder

        text = TextEncoder.from_folder(files["t5"])
        n_task = len(text.tokenizer(TASK_WORDS[task], add_special_tokens=False)["input_ids"])
        n_cap = len(text.tokenizer(description)["input_ids"])
        assert att.shape == (1 + n_task + n_cap, 64)
        assert (att >= 0).all() and att.sum() > 0
    # the reference is Q-Audio's feature of the reference audio
    manifest = [json.loads(x) for x in (ts / "manifest.jsonl").read_text().splitlines()]
    s = _system(files)
    target, _ = sf.read(ts / manifest[0]["target"], dtype="float32")
    with torch.inference_mode():
        x = torch.from_numpy(target)[None]
        ref = s.model.global_features(s.model.local_features(x, torch.tensor([len(target)])))[0].numpy()
    assert np.abs(np.load(feats / "global" / f"{manifest[0]['id']}.npz")["reference"] - ref).max() < 1e-4


def test_long_items_are_separated_in_windows(files, tmp_path, capsys):
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts" / "tiny" / "v1", n_items=1, seconds=11.0)
    runs = tmp_path / "runs"
    args = ["run", "--system", "hsm_tss_single", f"testset.root={ts}", "--metrics", "sdr", f"paths.runs_dir={runs}",
            "runtime.progress=false", "system.params.save_features=true", *_weights(files, "hsm-tss-single")]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run_dir = next(runs.glob("**/run.json")).parent
    out, sr = sf.read(next((run_dir / "outputs").glob("*.wav")), dtype="float32")
    assert sr == 16000 and len(out) == 176000
    loc = np.load(next((run_dir / "features" / "local").glob("*.npz")))
    assert loc["predicted"].shape == (2, 512, 32)  # two 10.24-s windows
    assert not (run_dir / "features" / "global").exists()  # the single-stage variant has none


# -- the instructions our own test sets give ----------------------------------------------------
def test_manifest_instruction_templates_parse_back():
    from systems.hsm_tss.instructions import normalise_description, parse_instruction
    from testsets.instructions import TEMPLATES

    captions = ["A dog barks while a car passes by", "Rain falls on a metal roof, and thunder rumbles.",
                "People talk: then a woman laughs"]  # fmt: skip
    labels = ["Dog", "Acoustic guitar", "Church bell"]
    for (task, style), templates in TEMPLATES.items():
        for template in templates:
            for d in captions if style == "caption" else labels:
                p = parse_instruction(template.format(d=d))
                assert p.task == task, template
                if style == "caption":  # the whole caption, nothing else
                    assert normalise_description(p.description) == normalise_description(d), (template, p)
                else:  # the label, possibly as "the <label> sound"
                    assert normalise_description(d) in normalise_description(p.description), (template, p)
                    assert len(p.description) <= len(d) + len("the  sound"), (template, p)


# -- converter from the official files --------------------------------------------------------
def test_convert_weights_from_official_audiomae_and_tfcodec(files, tmp_path, capsys):
    from systems.hsm_tss.audiomae import AudioMAEEncoder
    from systems.hsm_tss.tfcodec import TFCodec
    from tests.hsm_tss_tiny import TINY_CODEC

    arch = json.loads((files["hsm-tss"] / "config.json").read_text())["architecture"]
    torch.manual_seed(5)
    enc = AudioMAEEncoder(**arch["audiomae"])
    codec = TFCodec(**TINY_CODEC["arch"])
    with torch.no_grad():
        for p in list(enc.parameters()) + list(codec.parameters()):
            p.add_(torch.randn_like(p))
    # the official layouts: MaskedAutoencoderViT's {"model": ...} with its decoder; TF-Codec's {"gen": ...}
    # with DistributedDataParallel's prefix
    official_mae = {"model": {**enc.state_dict(), "decoder_embed.weight": torch.zeros(4, 32), "mask_token": torch.zeros(1, 1, 4)},
                    "epoch": 32}  # fmt: skip
    torch.save(official_mae, tmp_path / "pretrained.pth")
    torch.save({"gen": {f"module.{k}": v for k, v in codec.state_dict().items()}}, tmp_path / "tfcodec.ckpt")
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    out = tmp_path / "init"
    args = ["convert-weights", "--audiomae", str(tmp_path / "pretrained.pth"), "--tfcodec", str(tmp_path / "tfcodec.ckpt"),
            "--out", str(out), "--arch", str(tmp_path / "arch.json"), "--text", str(files["t5"])]  # fmt: skip
    assert main(args) == 0
    assert "random (untrained): qaudio, global_sep, local_sep, acoustic" in capsys.readouterr().out
    model, config = load_checkpoint(out)
    for k, v in enc.state_dict().items():
        assert torch.equal(model.audiomae.state_dict()[k], v), k
    for k, v in codec.state_dict().items():
        assert torch.equal(model.codec.state_dict()[k], v), k
    assert config["info"]["converted_from"]["audiomae"]["sha256"] == __import__("hashlib").sha256(
        (tmp_path / "pretrained.pth").read_bytes()).hexdigest()
    # a file that does not fit: one line naming the keys, and no folder left behind
    bad = dict(official_mae["model"])
    bad.pop("blocks.0.attn.qkv.weight")
    torch.save({"model": bad}, tmp_path / "partial.pth")
    args[2], args[6] = str(tmp_path / "partial.pth"), str(tmp_path / "init2")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blocks.0.attn.qkv.weight" in err[0]
    assert not (tmp_path / "init2").exists() and not list(tmp_path.glob(".init2*"))


def test_llm_parser_option_reaches_the_system(files, tmp_path):
    """parser=llm with a local causal LM folder (a tiny random GPT-2 built here): every instruction
    gets a valid (task, description), from the model or from the rule parser it falls back to."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from systems.hsm_tss.instructions_llm import build_prompt

    corpus = [build_prompt(t) + '"extract", "description": "' + t + '"}' for t in ("Remove the dog.", "Keep the rain.")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>", "<pad>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))  # fmt: skip
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    folder = tmp_path / "lm"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_embd=16, n_layer=1, n_head=1, n_positions=2048,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)  # fmt: skip
    s = _system(files, parser="llm", parser_model=str(folder))
    b = _batch(np.zeros((2, 1600), np.float32), ["Remove the dog barking.", "Keep only the rain."], ["remove", "extract"],
               ["dog barking", "rain"])  # fmt: skip
    tasks, descriptions = s._queries(b)
    assert set(tasks) <= {"extract", "remove"} and all(isinstance(d, str) and d.strip() for d in descriptions)
    with pytest.raises(ValueError, match="parser_model"):
        from systems.hsm_tss.system import HsmTss

        HsmTss(parser="llm")


@pytest.mark.parametrize("kind", ["encodec", "dac"])
def test_encodec_and_dac_token_spaces(kind, files, tmp_path):
    """The acoustic decoder over EnCodec 24 kHz (8 codebooks at 75 frames/s) or DAC 16 kHz (12 at 50):
    the codec stays out of the checkpoint, its folder is named in the architecture."""
    from hsm_bench import weights
    from systems.hsm_tss.model import HsmTssModel
    from systems.hsm_tss.system import HsmTssSingle
    from tests.test_hsm_tss_codec import _dac_folder, _encodec_folder

    folder = (_encodec_folder if kind == "encodec" else _dac_folder)(tmp_path)
    codec = {"kind": kind, "weights": str(folder)}
    arch = tiny_arch("single", files["t5"], codec=codec)
    torch.manual_seed(0)
    model = HsmTssModel(arch)
    assert model.codec is None and not any(k.startswith("codec.") for k in model.state_dict())
    k, fps = (8, 75) if kind == "encodec" else (12, 50)
    assert (model.acoustic.n_codebooks, model.token_codec.frame_rate) == (k, fps)
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    s = HsmTssSingle()
    with weights.overrides({"hsm-tss-single": ckpt, "flan-t5-base": files["t5"]}):
        assert s.required_weights() == ["hsm-tss-single", "flan-t5-base"]  # a folder path is not a weights name
        s.load("cpu")
    mix = (0.1 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)
    with torch.inference_mode():
        out = s.separate(_batch(mix, ["Keep the rain."], ["extract"], ["rain"]))
    assert out.shape == (1, 1, 16000) and torch.isfinite(out).all()
    assert s.model.n_frames(16000) == fps


def test_run_signature_knows_the_checkpoint_before_loading(files, tmp_path):
    """info() is hashed into the run folder's name before load(): two checkpoints, two runs."""
    from hsm_bench import weights
    from systems.hsm_tss.system import HsmTss

    other = tiny_checkpoints(tmp_path, seed=1)["hsm-tss"]
    digests = []
    for ckpt in (files["hsm-tss"], other):
        with weights.overrides({"hsm-tss": ckpt, "flan-t5-base": files["t5"]}):
            info = HsmTss().info()
        assert info["checkpoint_sha256"] == read_config(ckpt)["weights_sha256"]
        assert info["text_encoder_sha256"] == weights.path_sha256(files["t5"])
        digests.append(info["checkpoint_sha256"])
    assert digests[0] != digests[1]


def test_a_bundled_demo_checkpoint_is_used_only_when_no_weights_are_given(files, tmp_path, monkeypatch, capsys):
    """checkpoint=auto: the demo checkpoint shipped with the package (here a tiny one holding its own text
    encoder in text/) when hsm-tss is not given, announced on stderr and in run.json; the user's
    weights when given; checkpoint=weights never uses the bundle."""
    import shutil

    from hsm_bench import weights
    from systems.hsm_tss import system as mod

    bundle = tmp_path / "demo_checkpoint"
    shutil.copytree(files["hsm-tss"], bundle)
    shutil.copytree(files["t5"], bundle / "text")
    monkeypatch.setattr(mod, "BUNDLED", bundle)
    s = mod.HsmTss()
    assert s.required_weights() == []  # neither hsm-tss nor flan-t5-base: the bundle has both
    assert s.info()["checkpoint"] == "bundled demo checkpoint"
    assert s.info()["checkpoint_sha256"] == read_config(bundle)["weights_sha256"]
    s.load("cpu")
    assert "using the bundled demo checkpoint" in capsys.readouterr().err
    with weights.overrides({"hsm-tss": files["hsm-tss"]}):
        assert mod.HsmTss().required_weights() == ["hsm-tss", "flan-t5-base"]
        assert mod.HsmTss().info()["checkpoint"] == str(files["hsm-tss"])
    assert mod.HsmTss(checkpoint="weights").required_weights() == ["hsm-tss", "flan-t5-base"]
    with pytest.raises(weights.WeightsError, match="no bundled demo checkpoint of hsm_tss_single"):
        mod.HsmTssSingle(checkpoint="demo").required_weights()
    runs = tmp_path / "runs"
    assert main(["run", "--system", "hsm_tss", "--testset", "demo", "testset.params.n_items=2", "--metrics", "sdr",
                 f"paths.runs_dir={runs}", "runtime.progress=false"]) == 0, capsys.readouterr().err  # fmt: skip
    info = json.loads(next(runs.glob("**/run.json")).read_text())["system"]
    assert info["checkpoint"] == "bundled demo checkpoint" and info["text_encoder"] == str(bundle / "text")


@pytest.mark.slow
def test_the_shipped_demo_checkpoint_runs_the_headline_command(tmp_path, capsys):
    """`hsm-bench run --system hsm_tss --testset demo` with nothing downloaded: the bundled checkpoint
    (systems/hsm_tss/demo_checkpoint) loads strictly, with its own text encoder, and separates."""
    from systems.hsm_tss.system import BUNDLED

    assert (BUNDLED / "config.json").is_file() and (BUNDLED / "text" / "config.json").is_file()
    config = read_config(BUNDLED)
    assert config["architecture"]["variant"] == "hierarchical" and config.get("dtype") == "float16"
    assert (BUNDLED / "model.safetensors").stat().st_size <= 15 * 2**20
    runs = tmp_path / "runs"
    status = main(["run", "--system", "hsm_tss", "--testset", "demo", "testset.params.n_items=2", "--metrics", "signal",
                   f"paths.runs_dir={runs}", "runtime.progress=false"])  # fmt: skip
    io = capsys.readouterr()
    assert status == 0, io.err
    assert "using the bundled demo checkpoint" in io.err and "lsd_aligned" in io.out
    info = json.loads(next(runs.glob("**/run.json")).read_text())["system"]
    assert info["checkpoint"] == "bundled demo checkpoint" and info["checkpoint_sha256"] == config["weights_sha256"]
