"""A small SoundFont 2 reader and note renderer (numpy only).

Enough of the SF2 2.01 specification to play General MIDI presets convincingly: preset and
instrument zones with key/velocity ranges and global zones, sample headers with loop points,
the address-offset, tuning, root-key, attenuation, sample-mode and volume-envelope
generators. Modulators, filters, LFOs, effects and stereo linking are ignored (each zone is
rendered mono); the demo set needs recognisable instruments, not a reference synthesiser.

Notes are rendered by reading the sample at the pitch ratio with linear interpolation,
looping between the loop points while the key is held (sample modes 1 and 3), shaped by the
delay-attack-hold-decay-sustain-release volume envelope.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# generator operators (SF2 2.01, section 8.1.2)
START_OFS, END_OFS, LOOP_START_OFS, LOOP_END_OFS = 0, 1, 2, 3
START_COARSE, END_COARSE = 4, 12
PAN = 17
DELAY_VOL, ATTACK_VOL, HOLD_VOL, DECAY_VOL, SUSTAIN_VOL, RELEASE_VOL = 33, 34, 35, 36, 37, 38
INSTRUMENT, KEY_RANGE, VEL_RANGE = 41, 43, 44
LOOP_START_COARSE, LOOP_END_COARSE = 45, 50
ATTENUATION, COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES = 48, 51, 52, 53, 54
SCALE_TUNING, ROOT_KEY = 56, 58
RANGE_OPS = (KEY_RANGE, VEL_RANGE)
# preset-level generators add to instrument-level ones; these are the ones we use
ADDITIVE = (ATTENUATION, COARSE_TUNE, FINE_TUNE, DELAY_VOL, ATTACK_VOL, HOLD_VOL, DECAY_VOL, SUSTAIN_VOL, RELEASE_VOL)
DEFAULTS = {
    DELAY_VOL: -12000, ATTACK_VOL: -12000, HOLD_VOL: -12000, DECAY_VOL: -12000,
    RELEASE_VOL: -12000, SUSTAIN_VOL: 0, ATTENUATION: 0, COARSE_TUNE: 0, FINE_TUNE: 0,
    SAMPLE_MODES: 0, SCALE_TUNING: 100, ROOT_KEY: -1,
}  # fmt: skip


class SoundFontError(ValueError):
    pass


@dataclass
class Zone:
    gens: dict[int, int | tuple[int, int]] = field(default_factory=dict)

    def range(self, op: int) -> tuple[int, int]:
        r = self.gens.get(op, (0, 127))
        return r if isinstance(r, tuple) else (0, 127)


@dataclass
class SampleHeader:
    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    rate: int
    root: int
    correction: int
    kind: int


@dataclass
class Preset:
    name: str
    program: int
    bank: int
    zones: list[Zone]


class SoundFont:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        data = self.path.read_bytes()
        if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError(f"{path} is not a SoundFont 2 file")
        chunks = self._list_chunks(data, 12, len(data))
        self.samples = np.frombuffer(chunks["smpl"], dtype="<i2").astype(np.float32) / 32768.0
        self._parse_pdta(chunks)

    @staticmethod
    def _list_chunks(data: bytes, pos: int, end: int) -> dict[str, bytes]:
        """Flatten RIFF sub-chunks (descending into LISTs) into {id: payload}."""
        out: dict[str, bytes] = {}
        while pos + 8 <= end:
            cid = data[pos : pos + 4].decode("latin-1")
            size = struct.unpack_from("<I", data, pos + 4)[0]
            body = pos + 8
            if cid == "LIST":
                out.update(SoundFont._list_chunks(data, body + 4, body + size))
            else:
                out[cid] = data[body : body + size]
            pos = body + size + (size & 1)
        return out

    @staticmethod
    def _records(blob: bytes, fmt: str) -> list[tuple]:
        size = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, blob, k) for k in range(0, len(blob) - size + 1, size)]

    @staticmethod
    def _gens(records: list[tuple], lo: int, hi: int) -> dict[int, int | tuple[int, int]]:
        gens: dict[int, int | tuple[int, int]] = {}
        for op, raw in records[lo:hi]:
            if op in RANGE_OPS:
                gens[op] = (raw & 0xFF, (raw >> 8) & 0xFF)
            else:
                gens[op] = raw - 65536 if raw >= 32768 else raw
        return gens

    def _zones(self, bags: list[tuple], gens: list[tuple], lo: int, hi: int, terminal: int) -> list[Zone]:
        zones = [Zone(self._gens(gens, bags[b][0], bags[b + 1][0])) for b in range(lo, hi)]
        # a first zone without the terminal generator is the global zone: merge it into the others
        if zones and terminal not in zones[0].gens:
            glob, zones = zones[0], zones[1:]
            zones = [Zone({**glob.gens, **z.gens}) for z in zones]
        return [z for z in zones if terminal in z.gens]

    def _parse_pdta(self, c: dict[str, bytes]) -> None:
        phdr = self._records(c["phdr"], "<20sHHHIII")
        pbag = self._records(c["pbag"], "<HH")
        pgen = self._records(c["pgen"], "<HH")
        inst = self._records(c["inst"], "<20sH")
        ibag = self._records(c["ibag"], "<HH")
        igen = self._records(c["igen"], "<HH")
        shdr = self._records(c["shdr"], "<20sIIIIIBbHH")
        name = lambda b: b.split(b"\0")[0].decode("latin-1").strip()  # noqa: E731
        self.sample_headers = [SampleHeader(name(s[0]), *s[1:7], s[7], s[9]) for s in shdr[:-1]]
        self.instruments = [
            (name(inst[i][0]), self._zones(ibag, igen, inst[i][1], inst[i + 1][1], SAMPLE_ID))
            for i in range(len(inst) - 1)
        ]
        self.presets = {}
        for i in range(len(phdr) - 1):
            p = phdr[i]
            zones = self._zones(pbag, pgen, p[3], phdr[i + 1][3], INSTRUMENT)
            self.presets[(p[2], p[1])] = Preset(name(p[0]), p[1], p[2], zones)

    def preset(self, program: int, bank: int = 0) -> Preset:
        try:
            return self.presets[(bank, program)]
        except KeyError:
            raise SoundFontError(f"{self.path.name} has no preset bank {bank} program {program}") from None

    def _layers(self, preset: Preset, key: int, vel: int) -> list[tuple[dict, SampleHeader]]:
        """(generators, sample) of every instrument zone that plays this key and velocity."""
        out = []
        for pz in preset.zones:
            if not (pz.range(KEY_RANGE)[0] <= key <= pz.range(KEY_RANGE)[1]):
                continue
            if not (pz.range(VEL_RANGE)[0] <= vel <= pz.range(VEL_RANGE)[1]):
                continue
            _, izones = self.instruments[pz.gens[INSTRUMENT]]
            for iz in izones:
                lo, hi = iz.range(KEY_RANGE)
                vlo, vhi = iz.range(VEL_RANGE)
                if lo <= key <= hi and vlo <= vel <= vhi:
                    g = {**DEFAULTS, **iz.gens}
                    for op in ADDITIVE:
                        if op in pz.gens:
                            g[op] = g[op] + pz.gens[op]
                    out.append((g, self.sample_headers[iz.gens[SAMPLE_ID]]))
        return out

    def render_note(self, program: int, key: int, velocity: int, hold_s: float, rate: int, bank: int = 0) -> np.ndarray:
        """One note: held for ``hold_s`` seconds, then its release tail."""
        layers = self._layers(self.preset(program, bank), key, velocity)
        if not layers:
            return np.zeros(int(hold_s * rate), dtype=np.float32)
        parts = [self._render_layer(g, s, key, velocity, hold_s, rate) for g, s in layers]
        n = max(len(p) for p in parts)
        out = np.zeros(n, dtype=np.float64)
        for p in parts:
            out[: len(p)] += p
        return out.astype(np.float32)

    def _render_layer(self, g: dict, s: SampleHeader, key: int, vel: int, hold_s: float, rate: int) -> np.ndarray:
        start = s.start + g.get(START_OFS, 0) + 32768 * g.get(START_COARSE, 0)
        end = s.end + g.get(END_OFS, 0) + 32768 * g.get(END_COARSE, 0)
        loop_start = s.loop_start + g.get(LOOP_START_OFS, 0) + 32768 * g.get(LOOP_START_COARSE, 0) - start
        loop_end = s.loop_end + g.get(LOOP_END_OFS, 0) + 32768 * g.get(LOOP_END_COARSE, 0) - start
        wave = self.samples[start:end].astype(np.float64)
        if len(wave) < 2:
            return np.zeros(1)
        root = g[ROOT_KEY] if g[ROOT_KEY] >= 0 else s.root
        cents = (key - root) * g[SCALE_TUNING] + 100 * g[COARSE_TUNE] + g[FINE_TUNE] + s.correction
        step = 2.0 ** (cents / 1200.0) * s.rate / rate

        def seconds(tc: int) -> float:
            return 2.0 ** (tc / 1200.0)

        release = min(seconds(g[RELEASE_VOL]), 3.0)
        n = int((hold_s + release) * rate)
        pos = np.arange(n) * step
        looping = g[SAMPLE_MODES] in (1, 3) and 0 <= loop_start < loop_end <= len(wave) and loop_end - loop_start > 4
        if looping:
            span = loop_end - loop_start
            over = pos >= loop_end
            pos[over] = loop_start + np.mod(pos[over] - loop_start, span)
        else:
            n = min(n, int((len(wave) - 1) / step))
            pos = pos[:n]
        i = np.floor(pos).astype(np.int64)
        frac = pos - i
        nxt = np.minimum(i + 1, len(wave) - 1)
        if looping:
            nxt = np.where(i + 1 >= loop_end, loop_start, nxt)
        out = wave[i] * (1 - frac) + wave[nxt] * frac
        return out * self._envelope(g, n, hold_s, rate) * (vel / 127.0) ** 2 * 10 ** (-g[ATTENUATION] / 200.0)

    @staticmethod
    def _envelope(g: dict, n: int, hold_s: float, rate: int) -> np.ndarray:
        """Volume envelope: delay, linear attack, hold, decay and release linear in dB."""
        sec = lambda tc: 2.0 ** (tc / 1200.0)  # noqa: E731
        t = np.arange(n) / rate
        delay, attack, hold, decay = sec(g[DELAY_VOL]), sec(g[ATTACK_VOL]), sec(g[HOLD_VOL]), sec(g[DECAY_VOL])
        release = min(sec(g[RELEASE_VOL]), 3.0)
        sustain_db = -min(max(g[SUSTAIN_VOL], 0), 1440) / 10.0
        db = np.full(n, sustain_db)
        t1, t2, t3 = delay + attack, delay + attack + hold, delay + attack + hold + decay
        on = t < t1
        lin = np.where(on, np.clip((t - delay) / max(attack, 1e-6), 0, 1), 1.0)
        db = np.where(t < t2, 0.0, db)
        dec = (t >= t2) & (t < t3)
        db[dec] = sustain_db * (t[dec] - t2) / max(decay, 1e-6)
        env = lin * 10 ** (db / 20)
        rel = t >= hold_s
        if rel.any():
            level = env[max(int(hold_s * rate) - 1, 0)] if int(hold_s * rate) > 0 else 0.0
            tr = t[rel] - hold_s
            env[rel] = level * 10 ** (-100 * np.minimum(tr / max(release, 1e-6), 1.0) / 20)
        return env
