"""Farming counters, one plain object per farm.

The plot-client updates these; the metrics task exports them under the official farmer's
``subspace_farmer_*`` names (auditing time, proving time by result, skipped slots, ...). Every
update goes through an ``observe_*`` / ``count_*`` method, so an exporter that needs each
observation (histograms) can wrap those methods instead of polling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ProvingResult(enum.Enum):
    """The reference's ``ProvingResult``: SUCCESS submitted, TIMEOUT proven too late (past the
    slot's deadline), REJECTED refused on submission, FAILED the proof could not be made."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass
class Timing:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)


@dataclass
class FarmingStats:
    farm_id: str
    audits: int = 0
    audit_time: Timing = field(default_factory=Timing)
    last_audit_time_s: float = 0.0
    sectors_audited: int = 0  # in the last audit
    skipped_slots: int = 0
    candidates: int = 0  # audit winners (chunks), before dropping unencoded ones
    proving_time: dict[ProvingResult, Timing] = field(default_factory=lambda: {r: Timing() for r in ProvingResult})
    proofs_by_proof_server: int = 0
    proofs_local: int = 0
    solutions_found: int = 0
    solutions_submitted: int = 0
    solutions_past_deadline: int = 0
    reward_signatures: int = 0
    sectors_marked_for_replot: int = 0

    def observe_audit(self, seconds: float, sectors: int, candidates: int) -> None:
        self.audits += 1
        self.audit_time.observe(seconds)
        self.last_audit_time_s = seconds
        self.sectors_audited = sectors
        self.candidates += candidates

    def count_skipped_slot(self) -> None:
        self.skipped_slots += 1

    def observe_proving(self, result: ProvingResult, seconds: float) -> None:
        self.proving_time[result].observe(seconds)
        if result is ProvingResult.SUCCESS:
            self.solutions_submitted += 1
        elif result is ProvingResult.TIMEOUT:
            self.solutions_past_deadline += 1

    def count_solution_found(self, by_proof_server: bool) -> None:
        self.solutions_found += 1
        if by_proof_server:
            self.proofs_by_proof_server += 1
        else:
            self.proofs_local += 1

    def count_reward_signature(self) -> None:
        self.reward_signatures += 1

    def count_marked_for_replot(self) -> None:
        self.sectors_marked_for_replot += 1

    def snapshot(self) -> dict:
        """Plain dict (JSON-friendly) of every counter."""
        return {
            "farm_id": self.farm_id,
            "audits": self.audits,
            "audit_time_s_total": self.audit_time.total_s,
            "audit_time_s_max": self.audit_time.max_s,
            "last_audit_time_s": self.last_audit_time_s,
            "sectors_audited": self.sectors_audited,
            "skipped_slots": self.skipped_slots,
            "candidates": self.candidates,
            "proving": {r.value: {"count": t.count, "total_s": t.total_s, "max_s": t.max_s}
                        for r, t in self.proving_time.items()},
            "proofs_by_proof_server": self.proofs_by_proof_server,
            "proofs_local": self.proofs_local,
            "solutions_found": self.solutions_found,
            "solutions_submitted": self.solutions_submitted,
            "solutions_past_deadline": self.solutions_past_deadline,
            "reward_signatures": self.reward_signatures,
            "sectors_marked_for_replot": self.sectors_marked_for_replot,
        }
