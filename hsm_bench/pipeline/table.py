"""The results table printed at the end of a run or a score."""

from __future__ import annotations

from typing import Any

from hsm_bench.pipeline.aggregate import format_value


def corpus_table(corpus: dict[str, Any], keys: list[str] | None = None) -> str:
    """The table of ``keys`` (default: every output key in the corpus), in that order."""
    metrics = corpus["metrics"] if keys is None else {k: corpus["metrics"][k] for k in keys if k in corpus["metrics"]}
    header = ("metric", "mean", "95% CI", "n", "failed", "non-finite", "better")
    rows = []
    for key, e in metrics.items():
        ci = f"[{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]" if e.get("ci95") else "-"
        rows.append((key, format_value(e), ci, str(e["n"]), str(e["n_failed"]), str(e["n_nonfinite"]),
                     "higher" if e["higher_is_better"] else "lower"))  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    sep = "-" * len(line(header))
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def print_corpus_table(corpus: dict[str, Any], title: str = "", keys: list[str] | None = None) -> None:
    if title:
        print(f"\n{title}")
    print(corpus_table(corpus, keys))


def asked_keys(metric_defs: dict[str, dict[str, Any]], asked: dict[str, list[str] | None]) -> list[str]:
    """Output keys to show: those asked for, in the order of the metrics' declared outputs."""
    keys = []
    for name, wanted in asked.items():
        for key in metric_defs[name]["outputs"]:
            if wanted is None or key in wanted:
                keys.append(key)
    return keys
