"""What a stage did (one line each) and what a whole run or score ended with (exit status).

The exit status follows :mod:`hsm_bench.errors`: 0 when every item of every stage succeeded,
1 when some failed (the line names how many and where their rows are), 2 when nothing
succeeded. It is computed from the final state of the run folder, not from what this
invocation happened to do, so a rerun that resumes a partly failed run still reports it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hsm_bench.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL


@dataclass
class StageSummary:
    stage: str
    total: int
    resumed: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.stage}: {self.done} done, {self.failed} failed, {self.resumed} resumed "
            f"of {self.total} in {self.seconds:.1f} s ({rate:.1f} items/s)"
        )

    def profile(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3), "done": self.done, "failed": self.failed, "resumed": self.resumed,
            "items_per_s": round(self.done / self.seconds, 3) if self.seconds else None,
        }  # fmt: skip


@dataclass
class Outcome:
    """Final state of the items of one run or score: what failed, where the rows are."""

    n_items: int
    separation_failed: list[str] = field(default_factory=list)  # item ids
    separation_first_error: str | None = None
    separation_rows: Path | None = None
    score_ok: int = 0  # (item, metric) pairs with a value
    score_failed: Counter = field(default_factory=Counter)  # metric -> items without a value
    score_first_error: str | None = None
    score_rows: Path | None = None
    scored: bool = True  # False when the score stage did not run

    @property
    def status(self) -> int:
        if self.n_items and len(self.separation_failed) == self.n_items:
            return EXIT_ERROR
        if self.scored and self.score_failed and self.score_ok == 0:
            return EXIT_ERROR
        if self.separation_failed or sum(self.score_failed.values()):
            return EXIT_PARTIAL
        return EXIT_OK

    def problem(self) -> str | None:
        """One line for a status other than 0 (None when everything succeeded)."""
        status = self.status
        if status == EXIT_OK:
            return None
        if self.n_items and len(self.separation_failed) == self.n_items:
            return (f"no item was separated: all {self.n_items} failed (rows in {self.separation_rows}); "
                    f"first error: {self.separation_first_error}")  # fmt: skip
        if status == EXIT_ERROR:
            return (f"no item was scored: every score failed (rows in {self.score_rows}); "
                    f"first error: {self.score_first_error}")  # fmt: skip
        parts = []
        if self.separation_failed:
            parts.append(f"{len(self.separation_failed)} of {self.n_items} items failed separation "
                         f"(rows in {self.separation_rows}; first: {self.separation_first_error})")  # fmt: skip
        if sum(self.score_failed.values()):
            per = ", ".join(f"{m} {n}" for m, n in sorted(self.score_failed.items()) if n)
            parts.append(f"{sum(self.score_failed.values())} item scores failed ({per}; rows in {self.score_rows}; "
                         f"first: {self.score_first_error})")  # fmt: skip
        return "finished with failures: " + "; ".join(parts)


def score_outcome(outcome: Outcome, rows: Iterable[dict[str, Any]], ok_ids: Iterable[str], metrics: list[str],
                  rows_path: Path | None) -> Outcome:  # fmt: skip
    """Fill the score part of ``outcome`` from the latest item rows of ``metrics``.

    An (item, metric) pair counts as failed when its latest row is an error or missing; a
    pair whose outputs are all non-finite still succeeded (the value is recorded).
    """
    latest = {(r["id"], r["metric"]): r for r in rows}
    outcome.score_rows = rows_path
    for i in ok_ids:
        for m in metrics:
            row = latest.get((i, m))
            if row is not None and row.get("status") == "ok":
                outcome.score_ok += 1
                continue
            outcome.score_failed[m] += 1
            if outcome.score_first_error is None:
                outcome.score_first_error = f"{i} [{m}]: {row.get('error') if row else 'not scored'}"
    return outcome
