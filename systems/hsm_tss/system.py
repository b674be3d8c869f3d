"""HSM-TSS and its single-stage variant as benchmark systems (paper III, IV-C, V-A).

Per batch: parse each instruction into (task, description) (``parser``), encode the
descriptions with FLAN-T5 and the tasks with T5's vocabulary embeddings, compute the
mixture's AudioMAE features, run the global stage (hierarchical only) and the local stage,
decode codec tokens with the acoustic decoder and turn them into audio with the codec. Both
tasks are native: "remove" is a task token, not mixture minus extraction.

Inputs longer than AudioMAE's 10.24-s window (1024 frames of 10 ms) are separated by the
harness in windows of 10.24 s advancing by 9.216 s (10 % overlap, the last window aligned to
the end), joined with complementary linear cross-fades over the overlaps
(``hsm_bench.audio.chunking``): the paper evaluates 10-s AudioCaps mixtures and does not say
how it handles its 15-30-s Clotho and FSD50K ones. Shorter inputs are zero-padded to 1024
fbank frames as AudioMAE's loader does, and the decoder generates exactly the frames that
cover the input.

Parameters:
``parser``: "rule" (default, deterministic), "llm" (``parser_model``: a local causal-LM
folder; the rule parser is its fallback) or "none" (the manifest's task and description as
given, skipping the parse). ``top_k``/``temperature``/``seed``: token choice in the acoustic
decoder (``top_k=1``: greedy, deterministic). ``save_features``: write, per item,
``features/global/<id>.npz`` (``predicted`` G_hat and ``reference``, Q-Audio's feature of the
reference audio; hierarchical only), ``features/local/<id>.npz`` (``predicted`` S_hat,
``mixture`` S_mix, [512, 768] each), ``features/attention/<id>.npy`` (the local stage's
last-layer attention from the patches to the conditioning tokens, averaged over heads and
over the 8 frequency patches of a time step: ``[conditioning tokens, 64 time steps]``) and
``features/parse/<id>.npz`` (the parsed task and description); this reads the reference
audio, which only these features use: the separated output does not depend on it.

Weights: ``hsm-tss`` / ``hsm-tss-single`` (a checkpoint folder, systems/hsm_tss/checkpoint.py;
none is public) and ``flan-t5-base`` (unless the checkpoint folder holds its own text encoder in
``text/``); an EnCodec or DAC token space names its folder too. ``checkpoint``: "weights" uses
``hsm-tss`` only; "demo" the demo checkpoint shipped with the package (when this install has
one: ``systems/hsm_tss/demo_checkpoint``, made by ``hsm-bench train hsm_tss preset=demo``);
"auto" (default) the demo one only when no ``hsm-tss`` weights are given or downloaded, saying
so on stderr and in run.json (``checkpoint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.weights import WeightsError

TEXT_MODEL = "flan-t5-base"
PARSERS = ("rule", "llm", "none")
CHECKPOINTS = ("auto", "weights", "demo")
# the demo checkpoint shipped with the package (`hsm-bench train hsm_tss preset=demo`), when there is one
BUNDLED = Path(__file__).with_name("demo_checkpoint")
OWN_TEXT = "text"  # a checkpoint folder holding its own text encoder (the demo's small T5) in this subfolder
WINDOW_S = 10.24  # AudioMAE's 1024 frames of 10 ms


class HsmTss(System):
    name: ClassVar[str] = "hsm_tss"
    sample_rate: ClassVar[int] = 16000
    max_duration_s: ClassVar[float | None] = WINDOW_S
    tasks: ClassVar[tuple[str, ...]] = ("extract", "remove")
    version: ClassVar[str] = "1"
    variant: ClassVar[str] = "hierarchical"
    checkpoint_name: ClassVar[str] = "hsm-tss"
    weights: ClassVar[tuple[str, ...]] = ("hsm-tss", TEXT_MODEL)

    def __init__(self, parser: str = "rule", parser_model: str | None = None, top_k: int = 1, temperature: float = 1.0,
                 seed: int = 0, save_features: bool = False, checkpoint: str = "auto"):  # fmt: skip
        super().__init__(parser=parser, parser_model=parser_model, top_k=top_k, temperature=temperature, seed=seed,
                         save_features=save_features, checkpoint=checkpoint)  # fmt: skip
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint {checkpoint!r}: one of {', '.join(CHECKPOINTS)}")
        if parser not in PARSERS:
            raise ValueError(f"parser {parser!r}: one of {', '.join(PARSERS)}")
        if parser == "llm" and not parser_model:
            raise ValueError("parser=llm needs parser_model=<a local causal language model folder>")
        if int(top_k) < 1 or float(temperature) <= 0:
            raise ValueError("top_k must be >= 1 and temperature > 0")
        self.top_k, self.temperature, self.seed = int(top_k), float(temperature), int(seed)
        self.save_features = bool(save_features)
        # the reference audio is read only for the reference global feature of the report's Fig. 5
        self.requires_target = self.save_features
        self.model = self.text = self.parse = None
        self.config: dict = {}
        self._loaded: dict[str, Path] = {}
        self._artifacts: dict[str, dict[str, list]] = {}

    # -- loading ------------------------------------------------------------------------------
    def _bundled(self) -> Path | None:
        """The shipped demo checkpoint when this instance uses it: ``checkpoint=demo``, or ``auto``
        with no ``hsm-tss`` weights given or downloaded."""
        mode = self.params["checkpoint"]
        if mode == "weights":
            return None
        have = self.variant == "hierarchical" and (BUNDLED / "config.json").is_file()  # only hsm_tss has one
        if mode == "demo":
            if not have:
                raise WeightsError(f"checkpoint=demo: this install has no bundled demo checkpoint of {self.name} (train "
                                   f"one with `hsm-bench train {self.name} preset=demo out=DIR` and pass --weights "
                                   f"{self.checkpoint_name}=DIR/model)")  # fmt: skip
            return BUNDLED
        return BUNDLED if have and weights.missing([self.checkpoint_name]) else None

    def _checkpoint_folder(self) -> Path | None:
        bundled = self._bundled()
        if bundled is not None:
            return bundled
        return None if weights.missing([self.checkpoint_name]) else weights.resolve(self.checkpoint_name, verify=False)

    def required_weights(self) -> list[str]:
        folder = self._checkpoint_folder()
        names = [] if folder is not None and folder == self._bundled() else [self.checkpoint_name]
        if folder is None or not (folder / OWN_TEXT / "config.json").is_file():
            names.append(TEXT_MODEL)
        codec_weights = self._codec_weights(folder)
        return names + ([codec_weights] if codec_weights else [])

    def _codec_weights(self, folder: Path | None) -> str | None:
        """The weights name of an EnCodec/DAC token space, read from the checkpoint's config."""
        from systems.hsm_tss.checkpoint import read_config

        if folder is None:
            return None
        try:
            codec = read_config(folder)["architecture"].get("codec", {})
        except WeightsError:
            return None
        name = codec.get("weights") if isinstance(codec, dict) else None
        weights._ensure_registered()
        return name if name in weights.WEIGHTS else None  # a folder path is checked when the codec loads

    def load(self, device: str | torch.device = "cpu") -> None:
        import sys

        from systems.hsm_tss.checkpoint import load_checkpoint
        from systems.hsm_tss.text import TextEncoder

        bundled = self._bundled()
        folder = bundled if bundled is not None else weights.resolve(self.checkpoint_name)
        if bundled is not None and self.params["checkpoint"] == "auto":
            print(f"{self.name}: no {self.checkpoint_name} weights given: using the bundled demo checkpoint (small, "
                  f"trained on the demo sources only; not the paper's model). Pass --weights {self.checkpoint_name}=PATH "
                  "for yours, or system.params.checkpoint=weights to require it", file=sys.stderr)  # fmt: skip
        model, config = load_checkpoint(folder, variant=self.variant)
        own = folder / OWN_TEXT
        text_folder = own if (own / "config.json").is_file() else weights.resolve(TEXT_MODEL)
        text = TextEncoder.from_folder(text_folder)
        want = config["architecture"]["text"]
        if text.d_model != int(want["d_model"]) or text.vocab_size != int(want["vocab_size"]):
            raise WeightsError(f"{TEXT_MODEL} at {text.source} has d_model {text.d_model} and vocabulary "
                               f"{text.vocab_size}; the checkpoint {folder} was trained with {want['d_model']} and "
                               f"{want['vocab_size']}: pass the FLAN-T5 it was trained with")  # fmt: skip
        self._use(model, config, text, device)
        self._loaded = {self.checkpoint_name: folder, TEXT_MODEL: Path(text.source)}

    def _use(self, model, config: dict, text, device) -> None:
        super().load(device)
        self.model, self.config, self.text = model.eval().to(self.device), config, text.to(self.device)
        self.parse = self._parser()

    def _parser(self):
        from systems.hsm_tss.instructions import build_parser

        if self.params["parser"] == "none":
            return None
        return build_parser(self.params["parser"], self.params["parser_model"])

    # -- separation ---------------------------------------------------------------------------
    def _queries(self, batch: SeparationBatch) -> tuple[list[str], list[str]]:
        if self.parse is None:
            return list(batch.task), list(batch.caption)
        parsed = [self.parse(text) for text in batch.instructions]
        return [p.task for p in parsed], [p.description for p in parsed]

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("HsmTss.separate() before load()")
        m = self.model
        tasks, descriptions = self._queries(batch)
        mix = batch.mixture[:, 0]
        lengths = batch.lengths.to(mix.device)
        s_mix = m.local_features(mix, lengths)
        caption, caption_valid = self.text.captions(descriptions)
        task, task_valid = self.text.tasks(tasks)
        out = m.separate_features(s_mix, task, task_valid, caption, caption_valid, attention=self.save_features)
        n = mix.shape[-1]
        frames = [m.n_frames(int(v)) for v in lengths.tolist()]
        codes = m.acoustic_tokens(out["s_hat"], max(frames), top_k=self.top_k, temperature=self.temperature,
                                  seed=self.seed)  # fmt: skip
        wave = mix.new_zeros(len(frames), n)
        # each item decoded from its own frames only (decoding is causal, so its tokens do not depend
        # on the longer items of the batch; the codec's last frame would)
        for f in sorted(set(frames)):
            rows = [k for k, v in enumerate(frames) if v == f]
            y = m.decode_tokens(codes[rows, :f])
            for r, k in enumerate(rows):
                length = int(lengths[k])
                wave[k, : min(length, y.shape[-1])] = y[r, :length]
        if self.save_features:
            self._keep_features(batch, tasks, descriptions, out, task_valid, caption_valid, s_mix)
        return wave[:, None]

    def _keep_features(self, batch, tasks, descriptions, out, task_valid, caption_valid, s_mix) -> None:
        m = self.model
        ref = None
        if out["g_hat"] is not None and batch.target is not None:
            ref = m.global_features(m.local_features(batch.target[:, 0], batch.lengths.to(s_mix.device)))
        valid = torch.cat([task_valid, caption_valid], 1)
        if out["g_hat"] is not None:
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
        grid = m.audiomae.grid
        att = out["attention"].mean(1)  # over heads: [B, n_cond, P]
        att = att.view(*att.shape[:2], grid[0], grid[1]).mean(-1)  # patches are time-major
        for k, item in enumerate(batch.item_ids):
            keep = self._artifacts.setdefault(item, {})
            if out["g_hat"] is not None:
                keep.setdefault("g_hat", []).append(_np(out["g_hat"][k]))
                if ref is not None:
                    keep.setdefault("g_ref", []).append(_np(ref[k]))
            keep.setdefault("s_hat", []).append(_np(out["s_hat"][k]))
            keep.setdefault("s_mix", []).append(_np(s_mix[k]))
            keep.setdefault("attention", []).append(_np(att[k][valid[k]]))
            keep["parse"] = [np.array([tasks[k], descriptions[k]])]

    def take_artifacts(self, item_id: str) -> dict[str, Any]:
        keep = self._artifacts.pop(item_id, None)
        if not keep:
            return {}
        windows = len(keep["s_hat"])

        def joined(name):  # one window: as is; several: stacked [windows, ...]
            return keep[name][0] if windows == 1 else np.stack(keep[name])

        files: dict[str, Any] = {
            f"local/{item_id}.npz": {"predicted": joined("s_hat"), "mixture": joined("s_mix")},
            f"attention/{item_id}.npy": np.concatenate(keep["attention"], axis=-1),  # windows side by side in time
            f"parse/{item_id}.npz": {"task_description": keep["parse"][0]},
        }
        if "g_hat" in keep:
            files[f"global/{item_id}.npz"] = {"predicted": joined("g_hat"),
                                              **({"reference": joined("g_ref")} if "g_ref" in keep else {})}  # fmt: skip
        return files

    # -- random weights (timing, smoke runs) --------------------------------------------------
    def load_random(self, device: str | torch.device = "cpu", seed: int = 0, arch: dict | None = None,
                    text_folder: str | Path | None = None) -> None:  # fmt: skip
        """The paper's architecture (or ``arch``) with random weights and a random T5 encoder
        made here (FLAN-T5-base's sizes unless ``text_folder`` names a T5 folder): for timing."""
        import tempfile

        from systems.hsm_tss.model import HsmTssModel, architecture
        from systems.hsm_tss.text import TextEncoder, local_t5_folder

        arch = arch or architecture(self.variant)
        if text_folder is None:
            t = arch["text"]
            text_folder = local_t5_folder(tempfile.mkdtemp(prefix="hsm-tss-t5-"), d_model=int(t["d_model"]), layers=12,
                                          heads=12, d_ff=2048, seed=seed)  # fmt: skip
        text = TextEncoder.from_folder(text_folder)
        arch = {**arch, "text": {**arch["text"], "d_model": text.d_model, "vocab_size": text.vocab_size}}
        torch.manual_seed(seed)
        self._use(HsmTssModel(arch), {"architecture": arch, "info": {"random_init_seed": seed}}, text, device)

    # -- provenance ---------------------------------------------------------------------------
    def _path(self, name: str) -> Path | None:
        """The folder in use once loaded; before (the run signature is computed before load), where
        ``name`` resolves now; None when it does not resolve (the run stops at its weights check)."""
        if name in self._loaded:
            return self._loaded[name]
        try:
            folder = self._checkpoint_folder()
            if name == self.checkpoint_name:
                return folder
            if folder is not None and (folder / OWN_TEXT / "config.json").is_file():
                return folder / OWN_TEXT
            return weights.resolve(name, verify=False)
        except WeightsError:
            return None

    def checkpoint_sha256(self) -> str | None:
        """The digest of the checkpoint's weights, from its config.json (checked against the file
        when it loads); None for random weights (``load_random``)."""
        from systems.hsm_tss.checkpoint import read_config

        if self.model is not None and self.checkpoint_name not in self._loaded:
            return None
        folder = self._path(self.checkpoint_name)
        if folder is None:
            return None
        try:
            return read_config(folder).get("weights_sha256")
        except WeightsError:
            return None

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["variant"] = self.variant
        ckpt = self._path(self.checkpoint_name) if (self.model is None or self._loaded) else None
        info["checkpoint"] = None if ckpt is None else ("bundled demo checkpoint" if ckpt == BUNDLED else str(ckpt))
        info["architecture"] = self.config.get("architecture")
        info["checkpoint_info"] = self.config.get("info")
        text = None if self.model is not None and not self._loaded else self._path(TEXT_MODEL)
        info["text_encoder"] = str(text) if text else None
        info["text_encoder_sha256"] = weights.path_sha256(text) if text else None
        info["long_inputs"] = f"windows of {WINDOW_S} s, 10 % overlap, linear cross-fades (harness)"
        info["token_choice"] = "greedy" if self.top_k == 1 else \
            f"top-{self.top_k}, temperature {self.temperature}, seed {self.seed}"  # fmt: skip
        return info


class HsmTssSingle(HsmTss):
    """The paper's single-stage variant ("Ours single", V-A): no Q-Audio, no global stage."""

    name: ClassVar[str] = "hsm_tss_single"
    variant: ClassVar[str] = "single"
    checkpoint_name: ClassVar[str] = "hsm-tss-single"
    weights: ClassVar[tuple[str, ...]] = ("hsm-tss-single", TEXT_MODEL)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
