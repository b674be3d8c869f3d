"""Inputs and weights of the golden tables, rebuilt bit for bit by the generator and the tests.

Shared by ``benchmarks/make_golden.py`` (which runs the official implementations on them, in
the side environments) and ``tests/test_golden_official.py`` (which runs hsm-bench on them).
Only numpy at import time, so every side environment can import it; the tokenizer builder
imports ``tokenizers`` / ``transformers`` when called.

Determinism
-----------
Every random number comes from ``numpy.random.Generator(PCG64(SeedSequence(...)))`` via
``Generator.random`` (53 random bits times 2**-53: no transcendental function, so the same
values on every CPU and numpy version; PCG64 and SeedSequence are stable by numpy's policy).
Gaussian-like noise is Irwin-Hall (sum of four uniforms, rescaled to unit variance) and
random weights are uniform with the wanted spread, for the same reason: the arithmetic is
plain IEEE add/multiply, exactly rounded everywhere. Tones use ``np.sin`` (whose last bit may
differ between CPUs), so all audio is quantised to multiples of 2**-15 afterwards; the
generator records the sha256 of every array and the tests check them before comparing.

Weights: :func:`fill_state_dict` draws each tensor from its own stream (seeded by the
recipe seed and the sha256 of the key), so a tensor's values depend on its name and shape
only; tensors a rule returns ``None`` for (integer buffers, fixed masks) keep the values the
model builds itself. STFT kernels are a windowed DFT basis whose cos / sin table is rounded
to a 2**-24 grid (again absorbing last-bit differences), mel matrices random band matrices
built with integer edges. :func:`fingerprint` hashes the filled tensors, so both sides can
prove they loaded the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

Q = 32768.0  # audio is quantised to multiples of 1 / Q (16-bit PCM steps; values may exceed 1)


# ---------------------------------------------------------------- random streams
def _key_int(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def stream(*key: int | str) -> np.random.Generator:
    """An independent PCG64 stream for ``key`` (ints and strings)."""
    entropy = [k if isinstance(k, int) else _key_int(k) for k in key]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def gauss(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance, zero-mean Irwin-Hall noise (sum of 4 uniforms): exact arithmetic only."""
    u = rng.random((4, n))
    return (u[0] + u[1] + u[2] + u[3] - 2.0) * math.sqrt(3.0)


def quantise(x: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(x, dtype=np.float64) * Q) / Q).astype(np.float32)


def sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def _tone(f0: float, seconds: float, sr: int, harmonics: int = 3, am: float = 0.0) -> np.ndarray:
    t = _t(seconds, sr)
    x = sum(np.sin(2 * np.pi * f0 * k * t + 0.3 * k) / k for k in range(1, harmonics + 1))
    return x * (1.0 + am * np.sin(2 * np.pi * 1.7 * t))


def _noise(name: str, seconds: float, sr: int, smooth: int = 1) -> np.ndarray:
    x = gauss(stream("noise", name), int(round(seconds * sr)))
    if smooth > 1:  # a crude low-pass (moving average): coloured noise
        x = np.convolve(x, np.full(smooth, 1.0 / smooth), mode="same")
    return x


# ---------------------------------------------------------------- LSD / PSNR pairs (16 kHz)
SIGNAL_SR = 16000


def signal_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (estimate, reference)}`` at 16 kHz, float32 on the 2**-15 grid."""
    sr = SIGNAL_SR
    ref1 = 0.3 * _tone(220.0, 2.0, sr, am=0.5) + 0.01 * _noise("r1", 2.0, sr)
    ref2 = 0.2 * _noise("r2", 3.0, sr, smooth=8)
    ref3 = 0.4 * _tone(330.0, 1.5, sr)
    ref6 = 0.25 * _tone(150.0, 1.8, sr, harmonics=5) + 0.02 * _noise("r6", 1.8, sr)
    pairs = {
        # a partial separation: the target plus some interference
        "tone_plus_noise": (ref1 + 0.05 * _noise("e1", 2.0, sr), ref1),
        # coloured noise against differently coloured noise
        "noise_colours": (0.3 * _noise("e2", 3.0, sr, smooth=2), ref2),
        # two different harmonic tones
        "tone_vs_tone": (0.4 * _tone(523.0, 1.5, sr), ref3),
        # barely above silence on both sides (a few quantisation steps)
        "quiet": (4e-4 * _noise("e4", 2.0, sr, smooth=3), 1e-3 * _tone(440.0, 2.0, sr) + 2e-4 * _noise("r4", 2.0, sr)),
        # an estimate driven past full scale: the mel path clips the waveform to [-1, 1]
        "clipped": (np.clip(2.5 * ref1, -1.6, 1.6), ref1),
        # estimate longer / shorter than the reference (crop to the shorter one)
        "longer_estimate": (np.concatenate([ref6, 0.05 * _noise("e6", 0.7, sr)]), ref6),
        "shorter_estimate": (ref2[:20000] + 0.02 * _noise("e7", 20000 / sr, sr), ref2),
        # a large DC offset (removed on load) on a noisy tone
        "dc_offset": (ref3 + 0.3 + 0.02 * _noise("e8", 1.5, sr), ref3),
        # identical signals: PSNR is +inf (audioldm-eval skips it in the mean)
        "identical": (ref6, ref6),
    }
    return {k: (quantise(e), quantise(r)) for k, (e, r) in pairs.items()}


# ---------------------------------------------------------------- KL pairs
def kl_pairs() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """``{name: (estimate, reference, sample_rate)}``, float32 on the 2**-15 grid."""
    pairs: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    sr = 16000
    ref = 0.3 * _tone(220.0, 2.0, sr, am=0.5) + 0.02 * _noise("k1", 2.0, sr)
    pairs["tone_plus_noise"] = (ref + 0.1 * _noise("k1e", 2.0, sr), ref, sr)
    pairs["tone_vs_square"] = (0.3 * np.sign(_tone(180.0, 3.0, sr, harmonics=1)) + 0.01 * _noise("k2e", 3.0, sr),
                               0.3 * _tone(660.0, 3.0, sr), sr)  # fmt: skip
    pairs["noise_colours"] = (0.3 * _noise("k3e", 2.5, sr, smooth=2), 0.3 * _noise("k3r", 2.5, sr, smooth=12), sr)
    short = 0.3 * _tone(440.0, 1.2, sr, am=0.3)  # shorter than 2 s: zero-padded to 32000 samples
    pairs["short_padded"] = (short + 0.05 * _noise("k4e", 1.2, sr), short, sr)
    pairs["length_mismatch"] = (0.3 * _tone(300.0, 2.2, sr), 0.3 * _tone(300.0, 3.1, sr, am=0.4), sr)
    dc = 0.2 * _tone(250.0, 2.0, sr) + 0.02 * _noise("k6", 2.0, sr)
    pairs["dc_offset"] = (dc + 0.4, dc, sr)  # removed on load: KL ~ 0 up to float rounding
    pairs["quiet"] = (2e-3 * _noise("k7e", 2.0, sr, smooth=4), 1e-3 * _tone(500.0, 2.0, sr), sr)
    same = 0.3 * _tone(200.0, 2.0, sr, harmonics=4) + 0.05 * _noise("k8", 2.0, sr)
    pairs["identical"] = (same, same, sr)
    sr2 = 22050  # not the evaluation rate: resampled with torchaudio's sinc resampler
    ref = 0.3 * _tone(350.0, 2.5, sr2, am=0.5) + 0.02 * _noise("k9", 2.5, sr2)
    pairs["resampled_22050"] = (ref + 0.2 * _noise("k9e", 2.5, sr2, smooth=3), ref, sr2)
    return {k: (quantise(e), quantise(r), s) for k, (e, r, s) in pairs.items()}


# ---------------------------------------------------------------- resampling
RESAMPLE_RATES = ((22050, 16000), (44100, 16000), (16000, 44100), (48000, 32000))


def resample_inputs() -> dict[str, tuple[np.ndarray, int, int]]:
    """``{name: (signal, rate in, rate out)}``: 600 samples of tone + noise, float32 on the 2**-15 grid."""
    out = {}
    for a, b in RESAMPLE_RATES:
        x = 0.3 * _tone(440.0 * a / 22050, 600 / a, a, am=0.3) + 0.05 * _noise(f"rs{a}-{b}", 600 / a, a)
        out[f"{a}_to_{b}"] = (quantise(x), a, b)
    return out


# ---------------------------------------------------------------- CLAP items
CLAP_CAPTIONS = {
    "tone_short": "a harmonic tone hums",
    "window_exact": "a dog barks while cars pass by",
    "long_crop": "birds are chirping and a man speaks",
    "rain_bang": "rain falls on a metal roof!",  # '!' is GPT-2's pad id 0 in msclap: moves the pooled token
    "sr16k_short": "a woman sings with a piano",
    "sr16k_long": "an engine idles, then a vehicle accelerates away",
}


def clap_items() -> list[dict]:
    """Items for the ``clap`` metric: id, caption, sample_rate, estimate, reference, mixture."""
    spec = {  # id: (sample rate, seconds, f0)
        "tone_short": (44100, 3.0, 330.0),  # shorter than the 7-s window: tiled
        "window_exact": (44100, 7.0, 550.0),  # exactly one window
        "long_crop": (44100, 10.0, 440.0),  # longer: msclap's random crop
        "rain_bang": (44100, 4.2, 700.0),
        "sr16k_short": (16000, 5.0, 260.0),  # resampled to 44.1 kHz first
        "sr16k_long": (16000, 9.0, 390.0),  # resampled, then cropped
    }
    items = []
    for k, (iid, (sr, sec, f0)) in enumerate(spec.items()):
        target = 0.3 * _tone(f0, sec, sr, am=0.5) + 0.02 * _noise(f"c{k}t", sec, sr)
        interferer = 0.2 * _noise(f"c{k}i", sec, sr, smooth=1 + 3 * k) + 0.1 * _tone(97.0 + 31 * k, sec, sr, harmonics=5)
        estimate = target + 0.3 * interferer + 0.02 * _noise(f"c{k}e", sec, sr)
        items.append({"id": iid, "caption": CLAP_CAPTIONS[iid], "sample_rate": sr, "estimate": quantise(estimate),
                      "reference": quantise(target), "mixture": quantise(target + interferer)})  # fmt: skip
    return items


# ---------------------------------------------------------------- weights
# A rule maps (key, shape) to None (keep the values the model builds itself) or a recipe:
#   ("uniform", lo, hi, zero_sum): uniform [lo, hi); with zero_sum each output unit's
#       weights are made to sum to exactly 0 (x_j - x_{n-1-j}: the pairs cancel);
#   ("dft", part): a windowed DFT basis [bins, 1, n_fft] ("real" or "imag"), periodic Hann;
#   ("bands", _): a non-negative band matrix [bins, bands] with random weights.
Rule = Callable[[str, tuple], "tuple | None"]
QUANT = 2.0**-24  # grid of the DFT table (absorbs last-bit differences of np.cos/np.sin)


def _base_rule(key: str, shape: tuple) -> tuple | None:
    """The recipe of one tensor, from its name and shape (spreads of a trained network).

    Matrices and kernels are zero-sum per output unit: random non-negative activations (after
    a ReLU) would otherwise give every unit a large input-independent offset that swamps the
    signal after a few layers (trained networks learn that away, random ones do not). The
    STFT kernels are a real windowed DFT basis and the mel matrix a band matrix, so that the
    front end stays frequency-selective; everything downstream is random."""
    if key.endswith(("num_batches_tracked", "relative_position_index", "position_ids", "attn_mask")):
        return None  # integer buffers and fixed masks: as the model builds them
    if key.endswith("running_var"):
        return ("uniform", 0.5, 1.5, False)
    if key.endswith("running_mean"):
        return ("uniform", -0.05, 0.05, False)
    if key.endswith("conv_real.weight"):
        return ("dft", "real")
    if key.endswith("conv_imag.weight"):
        return ("dft", "imag")
    if key.endswith("melW"):
        return ("bands", None)
    if len(shape) == 0:
        return ("uniform", 2.0, 3.0, False)  # logit scales
    if key.endswith("bias"):
        return ("uniform", -0.02, 0.02, False)
    if len(shape) == 1:  # norm scales
        return ("uniform", 0.8, 1.2, False)
    a = math.sqrt(6.0 / int(np.prod(shape[1:])))  # variance 2 / fan-in, doubled by the zero-summing
    return ("uniform", -a, a, True)


FC_GAIN = 1.0  # spread of Cnn14's classifier: logits of a few units, KL of ~0.4-4 on the pairs


def cnn14_rule(key: str, shape: tuple) -> tuple | None:
    """PANNs Cnn14: bn0 normalising the log-mel energies (dB), a gentler classifier."""
    if key == "bn0.running_mean":
        return ("uniform", -5.0, 5.0, False)
    if key == "bn0.running_var":
        return ("uniform", 50.0, 100.0, False)
    if key == "fc_audioset.weight":
        a = math.sqrt(3.0) * FC_GAIN / math.sqrt(shape[1])
        return ("uniform", -a, a, True)
    return _base_rule(key, shape)


def clap_rule(key: str, shape: tuple) -> tuple | None:
    return _base_rule(key, shape)


def _dft(shape: tuple, part: str) -> np.ndarray:
    bins, _, n_fft = shape
    m = np.arange(n_fft)
    table = np.round(np.cos(2 * np.pi * m / n_fft) / QUANT) * QUANT  # cos(2 pi m / N) on a 2**-24 grid
    sine = np.round(np.sin(2 * np.pi * m / n_fft) / QUANT) * QUANT
    window = 0.5 - 0.5 * table  # periodic Hann
    idx = (np.arange(bins)[:, None] * m[None, :]) % n_fft
    basis = table[idx] if part == "real" else -sine[idx]
    return (basis * window[None, :])[:, None, :]


def _bands(key: str, shape: tuple, seed: int) -> np.ndarray:
    bins, bands = shape
    k = bins - bands  # band edges e(m) = m + k m^2 / bands^2 (integers): narrow low, wide high
    edges = [m + (k * m * m) // (bands * bands) for m in range(bands + 1)]
    u = stream(seed, key).random(shape)
    out = np.zeros(shape)
    for m in range(bands):
        lo, hi = edges[m], min(edges[m + 1] + 1, bins)  # neighbours share an edge bin
        out[lo:hi, m] = (0.5 + u[lo:hi, m]) / (hi - lo)
    return out


def fill_state_dict(shapes: dict[str, tuple], seed: int, rule: Rule) -> dict[str, np.ndarray]:
    """float32 arrays for the keys ``rule`` fills (sorted key order; one stream per key)."""
    out = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        r = rule(key, shape)
        if r is None:
            continue
        if r[0] == "dft":
            x = _dft(shape, r[1])
        elif r[0] == "bands":
            x = _bands(key, shape, seed)
        else:
            _, lo, hi, zero_sum = r
            u = stream(seed, key).random(int(np.prod(shape, dtype=np.int64)))
            x = (lo + (hi - lo) * u).reshape(shape[0], -1) if shape else lo + (hi - lo) * u
            if zero_sum:  # x_j - x_{n-1-j}: pairs cancel exactly, so each row sums to 0
                x = x - x[:, ::-1]
        out[key] = np.asarray(x, dtype=np.float32).reshape(shape)
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over (key, shape, float32 bytes) of ``arrays`` in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key], dtype="<f4")
        h.update(f"{key}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- a local GPT-2 tokenizer
GPT2_MERGES = [("Ġ", "a"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("Ġ", "s"), ("o", "n"),
               ("Ġ", "b"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("Ġ", "w"), ("a", "r"), ("in", "g")]  # fmt: skip
GPT2_TEXT = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128}


def byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet in its id order: printable bytes stand for themselves
    ('!' first, so '!' is id 0), the other 68 bytes map to U+0100 onwards."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def gpt2_folder(path: Path) -> Path:
    """A GPT-2 folder (config + byte-level BPE tokenizer from an explicit vocabulary and merge
    list, nothing trained): ``'!'`` is id 0, ``<|endoftext|>`` the last id. No model weights:
    the golden checkpoints carry the text encoder's weights."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2TokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {s: i for i, s in enumerate(byte_symbols())}
    for a, b in GPT2_MERGES:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=list(GPT2_MERGES)))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")  # fmt: skip
    tok.save_pretrained(str(path))
    GPT2Config(vocab_size=len(vocab), bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1, **GPT2_TEXT).save_pretrained(str(path))
    return path


# the tiny HTS-AT of the CLAP table: the real front end and token grid, narrow layers
TINY_HTSAT = {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2], "num_classes": 5}
CLAP_D_PROJ = 16
# the narrow Cnn14 of the KL table (the official forward with these widths)
CNN14_WIDTHS = (16, 16, 32, 32, 64, 64)


def load_table(name: str) -> dict:
    return json.loads((Path(__file__).parent / name).read_text())
