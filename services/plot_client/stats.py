"""Farming counters, one plain object per farm.

The plot-client updates these; every update goes through an ``observe_*`` / ``count_*`` method,
which also feeds the farm's Prometheus view when one is given (``metrics``: a
:class:`services.metrics.farm.FarmView`, the official ``subspace_farmer_farm_*`` names: auditing
time, proving time by result, skipped slots, farming errors, and our solution pipeline:
found -> submitted (``Success``) / past deadline (``Timeout``), accepted = reward signed).

Plotting feeds the official farm sector metrics as the reference's cluster farmer does, stage
by stage of a sector job (``services.plot_client.plotting``): ``sector_plotting`` when a
plot-server's claim is accepted; on the ready sector, ``sector_downloading``/``downloaded`` and
``..._encoding``/``encoded`` with the plot-server's own piece downloading and encoding times;
``sector_writing`` when its transfer into the farm's slot starts and ``sector_written`` with the
time of that transfer and commit; ``sector_plotted`` with the time from the claim to the commit;
``sector_plotting_error`` when the sector could not be taken into the farm. The
``sectors_total{state}`` gauge follows the farm's plotted count.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class ProvingResult(enum.Enum):
    """The reference's ``ProvingResult``: SUCCESS submitted, TIMEOUT proven too late (past the
    slot's deadline), REJECTED refused on submission, FAILED the proof could not be made."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def official(self) -> str:
        """The reference's metric label (``Success Timeout Rejected Failed``)."""
        return self.value.capitalize()


@dataclass
class Timing:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)


PLOTTING_RATE_WINDOW_S = 3600.0  # sectors per hour over the last hour of samples
PLOTTING_RATE_MIN_S = 60.0  # no rate from less than a minute of samples


class PlottingRate:
    """Sectors per hour from samples of a farm's plotted count (taken at membership refreshes)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, plotted: int) -> None:
        if self._samples and plotted < self._samples[-1][1]:
            self._samples.clear()  # sectors expired or were dropped: start over
        self._samples.append((now, plotted))
        while len(self._samples) > 2 and now - self._samples[1][0] >= PLOTTING_RATE_WINDOW_S:
            self._samples.popleft()

    @property
    def sectors_per_hour(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        if t1 - t0 < PLOTTING_RATE_MIN_S:
            return 0.0
        return (p1 - p0) * 3600.0 / (t1 - t0)


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
    farming_errors: int = 0
    sectors_plotted: int = 0  # written into the farm by this process's plotting
    sector_plotting_errors: int = 0
    last_audit_at: float = 0.0  # unix time of the latest finished audit
    last_solution_at: float = 0.0
    last_reward_at: float = 0.0
    metrics: Any = field(default=None, repr=False, compare=False)  # services.metrics.farm.FarmView
    plotting_rate: PlottingRate = field(default_factory=PlottingRate, repr=False, compare=False)

    def observe_sectors(self, now: float, target: int, plotted: int) -> None:
        """The farm's sector counts right now (the rate and the official sector-state gauge)."""
        self.plotting_rate.sample(now, plotted)
        if self.metrics is not None:
            self.metrics.set_sectors_total(NotPlotted=max(0, target - plotted), Plotted=plotted)

    def count_sector_plotting(self) -> None:
        """A plot-server started on one of this farm's sectors (its claim was accepted)."""
        if self.metrics is not None:
            self.metrics.sector_plotting.inc()

    def observe_sector_ready(self, downloading_s: float, encoding_s: float) -> None:
        """A plot-server finished a sector (its piece downloading and encoding times); its
        transfer into the farm's slot starts."""
        if self.metrics is not None:
            m = self.metrics
            m.sector_downloading.inc()
            m.sector_downloading_time.observe(downloading_s)
            m.sector_downloaded.inc()
            m.sector_encoding.inc()
            m.sector_encoding_time.observe(encoding_s)
            m.sector_encoded.inc()
            m.sector_writing.inc()

    def observe_sector_plotted(self, writing_s: float, plotting_s: float) -> None:
        """The sector and its metadata are committed to the farm."""
        self.sectors_plotted += 1
        if self.metrics is not None:
            m = self.metrics
            m.sector_writing_time.observe(writing_s)
            m.sector_written.inc()
            m.sector_plotting_time.observe(plotting_s)
            m.sector_plotted.inc()

    def count_sector_plotting_error(self) -> None:
        self.sector_plotting_errors += 1
        if self.metrics is not None:
            self.metrics.sector_plotting_error.inc()

    def observe_audit(self, seconds: float, sectors: int, candidates: int) -> None:
        self.audits += 1
        self.audit_time.observe(seconds)
        self.last_audit_time_s = seconds
        self.sectors_audited = sectors
        self.candidates += candidates
        self.last_audit_at = time.time()
        if self.metrics is not None:
            self.metrics.auditing_time.observe(seconds)
            self.metrics.audited_sectors.set(sectors)

    def count_skipped_slot(self) -> None:
        self.skipped_slots += 1
        if self.metrics is not None:
            self.metrics.skipped_slots.inc()

    def count_farming_error(self, kind: str) -> None:
        """A non-fatal farming error (``kind``: the official metric's ``error`` label)."""
        self.farming_errors += 1
        if self.metrics is not None:
            self.metrics.note_farming_error(kind)

    def observe_proving(self, result: ProvingResult, seconds: float) -> None:
        self.proving_time[result].observe(seconds)
        if result is ProvingResult.SUCCESS:
            self.solutions_submitted += 1
            self.last_solution_at = time.time()
        elif result is ProvingResult.TIMEOUT:
            self.solutions_past_deadline += 1
        if self.metrics is not None:
            self.metrics.observe_proving_time(seconds, result.official)
            if result is ProvingResult.SUCCESS:
                self.metrics.solutions_submitted.inc()
            elif result is ProvingResult.TIMEOUT:
                self.metrics.solutions_past_deadline.inc()

    def count_solution_found(self, by_proof_server: bool) -> None:
        self.solutions_found += 1
        if by_proof_server:
            self.proofs_by_proof_server += 1
        else:
            self.proofs_local += 1
        if self.metrics is not None:
            self.metrics.solutions_found.inc()

    def count_reward_signature(self) -> None:
        self.reward_signatures += 1
        self.last_reward_at = time.time()
        if self.metrics is not None:
            self.metrics.solutions_accepted.inc()

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
            "farming_errors": self.farming_errors,
            "sectors_plotted": self.sectors_plotted,
            "sector_plotting_errors": self.sector_plotting_errors,
        }
