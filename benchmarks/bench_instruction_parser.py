"""HSM-TSS instruction parser (§III-F) on the committed hand-labelled set: accuracy and speed.

A prediction is right when the task is equal and ``normalise_description`` of both descriptions is
equal (``systems/hsm_tss/instructions.py``). Prints the overall accuracy, the accuracy per split
(``dev``: written before the parser, then used while writing its rules; ``heldout``: written after the
parser's first version), per category and per task, every failure, and the time per instruction.
With ``--llm FOLDER`` the JSON-constrained LLM parser over that local causal LM folder is measured too
(how often it fell back to the rules, and why).

Usage: python benchmarks/bench_instruction_parser.py [--llm FOLDER] [--device cpu] [--limit N]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from systems.hsm_tss.instructions import build_parser, normalise_description  # noqa: E402

SET = ROOT / "tests" / "data" / "instructions" / "instructions.jsonl"


def evaluate(parser, rows: list[dict], label: str) -> None:
    by = {k: collections.defaultdict(lambda: [0, 0]) for k in ("split", "category", "task")}
    failures, fallbacks = [], collections.Counter()
    t0 = time.perf_counter()
    outs = [parser(r["instruction"]) for r in rows]
    elapsed = time.perf_counter() - t0
    for r, p in zip(rows, outs):
        ok = p.task == r["task"] and normalise_description(p.description) == normalise_description(r["description"])
        for k in by:
            by[k][r[k]][0] += ok
            by[k][r[k]][1] += 1
        if not ok:
            failures.append((r, p))
        if p.parser.startswith("llm->rule"):
            fallbacks[p.parser.split("(", 1)[1].rstrip(")").split(":")[0]] += 1
    right = len(rows) - len(failures)
    print(f"\n== {label}: {right}/{len(rows)} = {right / len(rows):.1%} "
          f"({elapsed / len(rows) * 1e3:.3f} ms per instruction, {len(rows) / elapsed:.0f} instructions/s)")
    for k in ("split", "task", "category"):
        print(f"  by {k}:")
        for name, (ok, n) in sorted(by[k].items()):
            print(f"    {name:18s} {ok:4d}/{n:<4d} {ok / n:7.1%}")
    if fallbacks:
        print(f"  fell back to the rules: {sum(fallbacks.values())} ({dict(fallbacks)})")
    print(f"  failures ({len(failures)}):")
    for r, p in failures:
        print(f"    [{r['category']}, {r['split']}] {r['instruction']!r}\n"
              f"        got {p.task} {p.description!r} ({p.parser}); expected {r['task']} {r['description']!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", help="a local causal LM folder (transformers save_pretrained layout)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=0, help="only the first N instructions (for a slow LLM)")
    args = ap.parse_args()
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.limit:
        rows = rows[:args.limit]
    rule = build_parser("rule")
    evaluate(rule, rows, "rule parser")
    # speed on its own: the whole set 20 times
    t0 = time.perf_counter()
    for _ in range(20):
        for r in rows:
            rule(r["instruction"])
    dt = (time.perf_counter() - t0) / (20 * len(rows))
    print(f"\nrule parser speed: {dt * 1e6:.0f} us per instruction over {20 * len(rows)} calls")
    if args.llm:
        t0 = time.perf_counter()
        llm = build_parser("llm", args.llm, device=args.device)
        print(f"\nLLM loaded from {args.llm} in {time.perf_counter() - t0:.1f} s")
        evaluate(llm, rows, f"LLM parser ({Path(args.llm).name})")


if __name__ == "__main__":
    main()
