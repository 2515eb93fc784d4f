"""A record's analysis: every derived figure and the verdict, computed when it is read.

Nothing here is stored in the record, so `sqldiag report` on an old record shows what
this version of sqldiag makes of its measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqldiag.analysis.findings import Facts, Finding, findings
from sqldiag.analysis.leak import LeakVerdict, leak_verdict
from sqldiag.analysis.summary import (
    Summary,
    all_categories,
    instances_counted,
    kept_alive,
    kept_alive_peak,
    peak_queries,
    queries_measured,
    summarise,
)
from sqldiag.record.codec import encode
from sqldiag.record.parts import Holder, HoldersAt, QueryAt, Record


@dataclass(frozen=True)
class Analysis:
    summary: Summary
    categories: dict[str, dict[str, int]]  # moment -> category -> bytes, untraced parts too
    kept_alive: tuple[Holder, ...]
    kept_alive_peak: HoldersAt | None
    leak: LeakVerdict | None
    findings: tuple[Finding, ...]
    queries: tuple[QueryAt, ...] = ()  # at peak, what each statement's results held
    queries_measured: str = ""  # how, when not by a census of the run itself
    instances_counted: bool = True  # False: the table's instances are not known

    @property
    def verdict(self) -> list[str]:
        return [finding.text for finding in self.findings]

    def to_json(self) -> dict[str, Any]:
        """The figures `--json` prints."""
        return {"summary": encode(self.summary), "categories": encode(self.categories),
                "kept_alive": encode(self.kept_alive),
                "kept_alive_peak": encode(self.kept_alive_peak),
                "leak": encode(self.leak), "verdict": self.verdict,
                "findings": encode(self.findings), "queries": encode(self.queries),
                "queries_measured": self.queries_measured,
                "instances_counted": self.instances_counted}


def analyse(record: Record) -> Analysis:
    summary = summarise(record)
    categories = all_categories(record, summary)
    holders, peak_holders = kept_alive(record), kept_alive_peak(record)
    leak = leak_verdict(record.repeat.iterations) if record.repeat is not None else None
    queries = peak_queries(record)
    facts = Facts(record=record, summary=summary, categories=categories,
                  kept_alive=holders, kept_alive_peak=peak_holders, leak=leak, queries=queries)
    return Analysis(summary=summary, categories=categories, kept_alive=holders,
                    kept_alive_peak=peak_holders, leak=leak, findings=findings(facts),
                    queries=queries, queries_measured=queries_measured(record),
                    instances_counted=instances_counted(record))
