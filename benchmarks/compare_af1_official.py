"""Compare hsm-bench's Audio Flamingo 1 embedder with the official AF1 code (not a test).

The official modules come from a checkout of NVIDIA/audio-flamingo, branch
``legacy_audio_flamingo_1`` (not vendored here; MIT licence), plus ``einops`` and
``einops-exts`` (the official helpers need them; hsm-bench does not).
``bash benchmarks/setup_side_envs.sh af1`` installs the two packages into
``benchmarks/.side/af1/deps`` and prints how to put the five official files
(``inference/src/{helpers,flamingo,flamingo_lm,utils}.py`` and ``inference/data.py``) into
``benchmarks/.side/af1/src`` from a clone (GitHub is not fetched by the script). Then::

    python benchmarks/compare_af1_official.py [--src DIR] [--deps DIR]   # defaults: .side/af1/src, .side/af1/deps

What runs on each side, with the same random weights (a tiny OPT folder, a tiny clapcap
file, and the official ``Flamingo`` module's own ``state_dict`` saved as
``{"model_state_dict": ...}`` with ``module.`` prefixes and the duplicate module lists the
unfiltered official state dict holds):

* official: ``data.AudioTextDataProcessor.process`` on a wav file (soundfile read, peak
  normalisation, sliding windows, int16 round trip, prompt formatting and tokenisation with
  the factory's added tokens), ``Flamingo._encode_audio_x`` + ``_condition_media_locations``
  and the Flamingo-ised ``OPTForCausalLM`` with ``output_hidden_states=True``; CLAP is the
  clapcap audio encoder (hsm-bench's, compared with the official msclap code by
  ``compare_clap_msclap.py``), called as AF1's ``CLAPWrapper.get_audio_embeddings_from_clips``;
* hsm-bench: ``AudioFlamingo1.load()`` on the three files, ``embed_audio`` on the samples.

Printed: token ids, window count, and the max |difference| of the pooled penultimate
hidden states (all tokens and post-audio), for 44.1-kHz files (no resampling) and 16-kHz
files (AF1 resamples with librosa, hsm-bench with its re-implementation of librosa's call).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIDE = Path(__file__).resolve().parent / ".side" / "af1"
OFFICIAL_FILES = ("helpers.py", "flamingo.py", "flamingo_lm.py", "utils.py", "data.py")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# the official cross-attention sizes are fixed (8 heads of 64, ff x4); the rest tiny
ARCH = {"n_head": 2, "n_layers": 2, "d_inner": 24, "max_num_media": 128, "xattn_heads": 8, "xattn_dim_head": 64,
        "ff_mult": 4, "clap": {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "num_classes": 5,
                               "d_proj": 16}}  # fmt: skip
CLAP_CONFIG = {"method": "microsoft-clap", "window_length": 7.0, "window_overlap": 5.25, "max_num_window": 16,
               "max_num_fewshot": 1}  # fmt: skip


def _stub(name: str, **attrs) -> None:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod


class _ClapAsAF1(torch.nn.Module):
    """AF1's ``CLAP.forward`` + ``CLAPWrapper.get_audio_embeddings_from_clips`` around an encoder.

    The encoder is held outside the module tree, as AF1's ``CLAPWrapper`` (a plain object)
    holds it: the Flamingo state dict has no ``clap.*`` keys."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self._encoder = [encoder]

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self._encoder[0](x)

    def forward(self, audio_clips: torch.Tensor) -> torch.Tensor:
        if audio_clips.ndim == 2:
            audio_clips = audio_clips.unsqueeze(0)
        out = []
        for x in audio_clips:  # x: [16, 308700]; 7 s * 44100 = one repeat, nothing changes
            with torch.no_grad():
                out.append(self.encoder(x.reshape(x.shape[0], -1)))
        return torch.stack(out)


def official_model(opt_folder: Path, encoder: torch.nn.Module, seed: int):
    from transformers import AutoTokenizer, OPTForCausalLM

    import flamingo as off_flamingo
    import flamingo_lm as off_lm
    import utils as off_utils

    tok = AutoTokenizer.from_pretrained(str(opt_folder), local_files_only=True)  # as factory.create_model_and_transforms
    tok.add_special_tokens({"additional_special_tokens": ["<audio>", "<|endofchunk|>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    if tok.sep_token is None:
        tok.add_special_tokens({"sep_token": "<SEP>"})
    lm = OPTForCausalLM.from_pretrained(str(opt_folder), local_files_only=True)
    off_utils.extend_instance(lm, off_lm.FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.decoder.layers")
    lm.resize_token_embeddings(len(tok))
    torch.manual_seed(seed)
    kwargs = {k: ARCH[k] for k in ("n_head", "n_layers", "d_inner", "max_num_media")}
    model = off_flamingo.Flamingo(
        _ClapAsAF1(encoder), False, lm, tok.encode("<|endofchunk|>")[-1], tok.encode("<audio>")[-1], tok.sep_token_id,
        audio_embed_dim=ARCH["clap"]["d_proj"], audio_transformer_kwargs={**kwargs, "max_window_per_audio": 16},
        cross_attn_every_n_layers=1,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random gates, norms and embeddings: every tensor matters
        for name, p in model.named_parameters():
            if name.endswith("_gate"):
                p.copy_(0.3 + 0.4 * torch.rand(p.shape, generator=g))
            elif "norm" in name or "embed_tokens" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval(), tok


def official_hidden(model, tok, processor, wav: Path) -> tuple[np.ndarray, np.ndarray, int]:
    item = {"name": wav.name, "prefix": "The task is audio captioning.", "prompt": "Describe the sound in a sentence."}
    _, clips, mask, ids, attn = processor.process(item)
    with torch.no_grad():
        model._encode_audio_x(audio_x=clips[None], audio_x_mask=mask[None])
        model._condition_media_locations(input_ids=ids)
        out = model.lang_encoder(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        model.lang_encoder.clear_conditioned_layers()
    hidden = out.hidden_states[-2][0].double()
    first = int((ids[0] == tok.encode("<audio>")[-1]).nonzero()[0])
    return hidden.mean(0).numpy(), hidden[first:].mean(0).numpy(), int(mask.sum()), ids[0].tolist()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SIDE / "src",
                    help=f"folder with the official helpers/flamingo/flamingo_lm/utils/data.py (default {SIDE / 'src'})")  # fmt: skip
    ap.add_argument("--deps", type=Path, default=SIDE / "deps",
                    help=f"folder holding einops and einops_exts, pip install --target (default {SIDE / 'deps'})")  # fmt: skip
    ap.add_argument("--seconds", type=float, nargs="+", default=[3.0, 10.0, 40.0])
    a = ap.parse_args()
    missing = [f for f in OFFICIAL_FILES if not (a.src / f).exists()]
    if missing:
        sys.exit(f"{a.src} lacks the official AF1 file(s) {', '.join(missing)}: run `bash benchmarks/setup_side_envs.sh af1`, "
                 "which says how to copy them from a clone of NVIDIA/audio-flamingo (or pass --src)")  # fmt: skip
    if a.deps.exists():
        sys.path.insert(0, str(a.deps))
    sys.path.insert(0, str(a.src))
    import transformers  # noqa: F401 - before the stubs: it probes for torchvision

    _stub("pydub", AudioSegment=None)  # data.py: mp3 only
    _stub("torchvision")  # data.py imports it, never uses it on this path

    import soundfile as sf

    import data as off_data
    from hsm_bench import weights
    from hsm_bench.embedders.audio_flamingo1 import AudioFlamingo1
    from tests import af1_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opt = af1_tiny.opt_folder(tmp / "opt")
        clapcap = af1_tiny.clapcap_checkpoint(tmp / "clapcap_weights_2023.pth", seed=1)
        ours = AudioFlamingo1(arch=ARCH)
        encoder = ours._load_clap(clapcap).eval()  # CLAPWrapper puts clapcap in eval mode
        model, tok = official_model(opt, encoder, seed=2)
        sd = model.state_dict()  # unfiltered: also old_decoder_blocks.* / gated_cross_attn_layers.*
        torch.save({"model_state_dict": {"module." + k: v for k, v in sd.items()}}, tmp / "foundation.pt")
        files = {"audio-flamingo-1-foundation": tmp / "foundation.pt", "opt-iml-max-1_3b": opt, "msclap-clapcap-2023": clapcap}
        with weights.overrides(files):
            ours.load()
        processor = off_data.AudioTextDataProcessor(data_root=str(tmp), clap_config=CLAP_CONFIG, tokenizer=tok, max_tokens=512)
        worst = 0.0
        rng = np.random.default_rng(0)
        for sr in (44100, 16000):
            for sec in a.seconds:
                t = np.arange(int(sr * sec)) / sr
                x = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
                     + 0.05 * rng.standard_normal(t.size)).astype(np.float32)  # fmt: skip
                wav = tmp / f"x{sr}_{sec}.wav"
                sf.write(wav, x, sr, subtype="FLOAT")
                all_o, post_o, n_win, ids = official_hidden(model, tok, processor, wav)
                ours.sample_rate = sr  # the embedder takes 16 kHz; its resampling step is rate-generic
                feats = ours.embed_audio([x])[0]
                ours.pooling = "post_audio"
                post_m = ours.embed_audio([x])[0]["embedding"]
                ours.pooling = "all"
                d_all = float(np.abs(feats["embedding"] - all_o).max())
                d_post = float(np.abs(post_m - post_o).max())
                same_ids = ids == ours.input_ids.tolist()
                print(f"{sr:>5} Hz {sec:5.1f} s: windows {int(feats['n_windows'][0])} (official {n_win}), token ids "
                      f"{'identical' if same_ids else 'DIFFER'}, max |diff| all {d_all:.2e}, post_audio {d_post:.2e} "
                      f"(|h| max {np.abs(all_o).max():.2f})")  # fmt: skip
                worst = max(worst, d_all, d_post)
                if not same_ids or n_win != int(feats["n_windows"][0]):
                    worst = float("inf")
        print(f"worst difference: {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
