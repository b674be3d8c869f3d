"""The listening page without a browser: rows, players, order, values, escaping, audio, thumbnails."""

from __future__ import annotations

import dataclasses
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SYSTEMS = ("oracle_irm", "oracle_mixture", "oracle_target")


def make_runs(root: Path, testset: Path, systems=SYSTEMS) -> Path:
    """Run folders of ``systems`` on ``testset`` with the SDR family only (the fastest metrics)."""
    from hydra import compose, initialize_config_dir

    from hsm_bench.paths import CONF_DIR
    from hsm_bench.pipeline.run import run_pipeline

    for system in systems:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[
                f"system={system}", f"testset.root={testset}", f"paths.runs_dir={root}",
                f"paths.cache_dir={root.parent / 'cache'}", "runtime.progress=false", "metrics.names=[sdr]",
            ])  # fmt: skip
        run_pipeline(cfg)
    return root


class Page(HTMLParser):
    """The parts of index.html the tests read: tables as rows of cells (attributes + text), and
    every audio/img source."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self.sources: list[tuple[str, str]] = []
        self._table = self._section = None
        self._row: list | None = None
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), {"head": [], "body": []})
        elif tag in ("thead", "tbody"):
            self._section = "head" if tag == "thead" else "body"
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table[self._section].append((a, self._row))
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"attrs": a, "text": "", "media": []}
            self._row.append(self._cell)
        elif tag in ("audio", "img"):
            self.sources.append((tag, a["src"]))
            if self._cell is not None:
                self._cell["media"].append((tag, a["src"]))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.conftest import build_tiny_testset

    base = tmp_path_factory.mktemp("listen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSM_BENCH_HOME", str(base / "home"))
        testset = build_tiny_testset(base / "tiny" / "v1", n_items=6, seconds=1.0)
        return make_runs(base / "runs", testset)


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    from reports.collect import load
    from reports.listening import write_page

    col = load([runs])
    out = tmp_path_factory.mktemp("page") / "listen"
    written = write_page(col, out)
    return col, out, written, Page((out / "index.html").read_text(encoding="utf-8"))


def _jsonl_values(col, key):
    """(system, id) -> value straight from each run's items.jsonl, not through the collection."""
    from hsm_bench.store.jsonl import read_jsonl

    vals = {}
    for run in col.runs:
        metric = next(m for m, d in run.metric_defs.items() if key in d["outputs"])
        for row in read_jsonl(run.path / "items.jsonl"):
            if row["metric"] == metric:
                vals[(run.label, row["id"])] = row["values"][key]
    return vals


def _header(table):
    """Label -> body column index of the sortable header cells (group and metric, e.g. 'oracle_irm sdri')."""
    groups, sortable = table["head"][0][1], table["head"][-1][1]
    sys_names = {c["attrs"]["data-sys"]: c["text"].strip() for c in groups if "data-sys" in c["attrs"]}
    out = {}
    for c in sortable:
        if "data-col" in c["attrs"]:
            name = c["text"].strip().rstrip("↑↓ ").strip()
            if "data-sys" in c["attrs"]:
                name = f"{sys_names[c['attrs']['data-sys']]} {name}"
            out[name] = int(c["attrs"]["data-col"])
    return out


def test_page_has_a_row_per_item_with_every_player_and_relative_sources(page):
    _, out, written, doc = page
    rows = doc.tables["items"]["body"]
    assert len(rows) == 6
    audio = [s for t, s in doc.sources if t == "audio"]
    images = [s for t, s in doc.sources if t == "img"]
    assert len(audio) == len(images) == 6 * (2 + 3)
    for src in audio + images:
        assert not src.startswith(("/", "http:", "https:", "file:")) and ".." not in src
        assert (out / src).is_file() and (out / src).stat().st_size > 0
    cols = _header(doc.tables["items"])
    for _, cells in rows:
        players = [c for c in cells if c["media"]]
        assert [[t for t, _ in c["media"]] for c in players] == [["audio", "img"]] * 5  # player + thumbnail
        mixture, reference, irm, mix_out, target_out = (c["media"] for c in players)
        i = cells[cols["id"]]["text"]
        assert mixture == [("audio", f"audio/tiny/mixture/{i}.ogg"), ("img", f"img/tiny/mixture/{i}.png")]
        assert irm == [("audio", f"audio/tiny/oracle_irm/{i}.ogg"), ("img", f"img/tiny/oracle_irm/{i}.png")]
        # the mixture oracle returns the mixture sample for sample, the target oracle the reference:
        # encoded once, shared, and said so
        assert mix_out == mixture and target_out == reference
        assert "identical to the mixture audio" in players[3]["text"]
        assert "identical to the reference audio" in players[4]["text"]
        assert "identical" not in players[2]["text"]
    assert set(written.files) >= {out / "index.html", out / "listen.js", out / "listen.css"}
    assert len(written.files) == 3 + 2 * 6 * 3 and written.notes == []  # 3 distinct clips per item
    assert sorted(written.files) == sorted({out / "index.html", out / "listen.js", out / "listen.css",
                                            *(out / src for src in audio + images)})  # fmt: skip
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and str(out) not in html


def test_rows_start_worst_first_by_mean_sdri_over_systems(page):
    col, out, _, doc = page
    table = doc.tables["items"]
    cols = _header(table)
    sdri = _jsonl_values(col, "sdri")
    ids = [i for (_, i) in sdri]
    expected = {i: np.mean([sdri[(s, i)] for s in SYSTEMS]) for i in ids}
    got_ids = [cells[cols["id"]]["text"] for _, cells in table["body"]]
    assert got_ids == sorted(expected, key=expected.get)  # ascending: higher sdri is better
    for _, cells in table["body"]:
        i = cells[cols["id"]]["text"]
        assert float(cells[cols["mean sdri"]]["attrs"]["data-v"]) == pytest.approx(expected[i], rel=1e-12)
    sort_th = next(c for c in table["head"][-1][1] if c["attrs"].get("data-col") == str(cols["mean sdri"]))
    assert sort_th["attrs"]["aria-sort"] == "ascending"
    assert "worst first: by the mean over systems of <b>sdri</b> (lowest first" in (out / "index.html").read_text()


def test_item_metrics_and_manifest_fields_match_the_run_files(page):
    col, _, _, doc = page
    table = doc.tables["items"]
    cols = _header(table)
    man = col.manifest("tiny")
    for key in ("sdr", "si_sdri"):
        vals = _jsonl_values(col, key)
        for _, cells in table["body"]:
            i = cells[cols["id"]]["text"]
            for s in SYSTEMS:
                cell = cells[cols[f"{s} {key}"]]
                assert float(cell["attrs"]["data-v"]) == vals[(s, i)]  # the stored float, unrounded
                assert cell["text"] == f"{vals[(s, i)]:.2f}"
    for _, cells in table["body"]:
        i = cells[cols["id"]]["text"]
        assert cells[cols["task"]]["text"] == man.loc[i, "task"]
        assert cells[cols["instruction"]]["text"] == man.loc[i, "instruction"]
        assert float(cells[cols["SNR (dB)"]]["attrs"]["data-v"]) == pytest.approx(man.loc[i, "snr_db"])
    assert {cells[cols["task"]]["text"] for _, cells in table["body"]} == {"extract", "remove"}


def test_summary_shows_each_runs_corpus_means(page):
    col, _, _, doc = page
    import json

    body = doc.tables["summary"]["body"]
    head = [c["text"].strip().rstrip("↑↓ ").strip() for c in doc.tables["summary"]["head"][0][1]]
    assert [cells[1]["text"] for _, cells in body] == list(SYSTEMS)
    for _, cells in body:
        run = col.run(cells[1]["text"], "tiny")
        corpus = json.loads((run.path / "corpus.json").read_text())["metrics"]
        for key in ("sdr", "sdri", "si_sdr", "si_sdri"):
            cell = cells[head.index(key)]
            assert float(cell["attrs"]["data-v"]) == corpus[key]["mean"]
            lo, hi = corpus[key]["ci95"]
            assert f"[{lo:.2f}, {hi:.2f}]" in cell["text"]
    # the mixture oracle improves nothing: its SDRi mean is exactly 0
    mix = next(cells for _, cells in body if cells[1]["text"] == "oracle_mixture")
    assert float(mix[head.index("sdri")]["attrs"]["data-v"]) == 0.0


def test_page_audio_is_compact_vorbis_that_decodes_to_the_source(page):
    col, out, _, _ = page
    man = col.manifest("tiny")
    i = man.index[0]
    for src, enc in [(man.loc[i, "mixture"], out / "audio/tiny/mixture" / f"{i}.ogg"),
                     (col.run("oracle_irm", "tiny").output(i), out / "audio/tiny/oracle_irm" / f"{i}.ogg")]:  # fmt: skip
        ref, sr = sf.read(src, dtype="float64")
        dec, sr2 = sf.read(enc, dtype="float64")
        assert sf.info(str(enc)).format == "OGG" and sf.info(str(enc)).subtype == "VORBIS"
        assert sr2 == sr and len(dec) == len(ref)
        snr = 10 * math.log10(np.sum(ref**2) / np.sum((dec - ref) ** 2))
        assert snr > 10.0  # a lossy codec at ~40 kbit/s, still the same signal sample for sample
        # under a third of 16-bit PCM even for this 1-s clip of mostly noise, whose ~4 KB of
        # Vorbis headers a 10-s clip amortises (there: about a sixth)
        assert enc.stat().st_size < len(ref) * 2 / 3


def _mel(f):
    return 2595 * np.log10(1 + f / 700)


def test_thumbnail_uses_a_fixed_dbfs_scale_and_mel_rows():
    from reports.listening import DB_CEIL, DB_FLOOR, colour_table, spectrogram_image

    lut = colour_table()
    assert lut.shape == (256, 3) and tuple(lut[0]) == (0x44, 0x01, 0x54) and tuple(lut[-1]) == (0xFD, 0xE7, 0x25)
    sr, n = 16000, 16000
    silent = spectrogram_image(np.zeros(n), sr)
    assert silent.shape == (64, 192, 3) and silent.dtype == np.uint8 and (silent == lut[0]).all()

    # 1 kHz falls on an STFT bin (512-point frames at 16 kHz: 31.25 Hz apart), so a full-scale
    # sine reads exactly 0 dBFS in its band and half of it -6.02 dBFS
    t = np.arange(n) / sr
    for amp in (1.0, 0.5):
        img = spectrogram_image(amp * np.sin(2 * np.pi * 1000 * t), sr)
        band = int(_mel(1000) / (_mel(sr / 2) / 64))  # band whose mel range holds 1 kHz
        row = 63 - band  # low frequencies at the bottom
        level = round((20 * math.log10(amp) - DB_FLOOR) / (DB_CEIL - DB_FLOOR) * 255)
        assert (img[row, 10:-10] == lut[level]).all()
        lum = img.astype(int).sum(axis=2)[:, 96]
        assert int(np.argmax(lum)) == row
        assert (img[:5, 96] == lut[0]).all()  # nothing near Nyquist


def test_escaping_max_items_and_the_report_command_path(runs, tmp_path, monkeypatch):
    """Text is escaped, --max-items spreads rows from worst to best, and `make_report` writes the part."""
    from reports import report
    from reports.collect import load

    col = load([runs])
    man = col.manifest("tiny").copy()
    evil = '<script>alert("x")</script> & <b>'
    man["instruction"] = evil  # every item, since --max-items keeps only some
    monkeypatch.setattr(report, "load", lambda paths: dataclasses.replace(col, manifests={"tiny": man}))
    summary = report.make_report([runs], tmp_path / "rep", parts=("listen",), max_items=3, progress=False)
    html = (tmp_path / "rep/listen/index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    doc = Page(html)
    cols = _header(doc.tables["items"])
    shown = [cells[cols["id"]]["text"] for _, cells in doc.tables["items"]["body"]]
    sdri = _jsonl_values(col, "sdri")
    mean = {i: np.mean([sdri[(s, i)] for s in SYSTEMS]) for (_, i) in sdri}
    ranked = sorted(mean, key=mean.get)
    assert shown == [ranked[0], ranked[round(2.5)], ranked[-1]]  # positions 0, 2.5 -> 2, 5 of six
    assert len([1 for t, _ in doc.sources if t == "audio"]) == 3 * 5
    notes = summary["parts"]["listen"]["notes"]
    assert notes == [("tiny: 3 of 6 items on the listening page (--max-items 3), spread evenly from worst to best "
                      "by mean sdri; leave --max-items out for all")]  # fmt: skip
    assert "listen/index.html" in summary["parts"]["listen"]["files"]


def test_missing_and_unreadable_outputs_are_shown_and_noted(runs, tmp_path):
    import shutil

    from reports.collect import load
    from reports.listening import write_page

    col = load([runs])
    run = col.run("oracle_irm", "tiny")
    copy = tmp_path / "irm"
    shutil.copytree(run.path, copy)
    ids = list(col.manifest("tiny").index)
    (copy / "outputs" / f"{ids[0]}.wav").unlink()
    (copy / "outputs" / f"{ids[1]}.wav").write_bytes(b"not audio at all")
    col.runs[col.runs.index(run)] = dataclasses.replace(run, path=copy)
    written = write_page(col, tmp_path / "listen")
    doc = Page((tmp_path / "listen/index.html").read_text(encoding="utf-8"))
    assert len([1 for t, _ in doc.sources if t == "audio"]) == 6 * 5 - 2  # one missing, one unreadable
    texts = " | ".join(c["text"] for _, cells in doc.tables["items"]["body"] for c in cells)
    assert "no output: no output file" in texts and texts.count("unreadable audio") == 1
    assert len(written.notes) == 2
    assert written.notes[0] == ("tiny: oracle_irm has no output file for 1 item(s) (failed or removed), shown as "
                                "'no output' without a player; rerunning the system fills them")  # fmt: skip
    assert written.notes[1].startswith(f"1 audio file(s) could not be read and have no player (first: {copy}")


def test_bad_max_items_is_a_one_line_config_error(page, tmp_path):
    from hsm_bench.errors import ConfigError
    from reports.listening import write_page

    with pytest.raises(ConfigError, match="--max-items 0: give at least 1"):
        write_page(page[0], tmp_path / "x", max_items=0)
