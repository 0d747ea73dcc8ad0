"""Which sectors a farm should plot next, and when a plotted sector expires (spec 03 §4).

Pure decisions, no I/O: the plotting component feeds in what each sector slot holds, the
latest archived segment index and the segment commitments it fetched, and gets back the
sectors to plot or replot, in order, and the segment headers it still needs.

Expiry (reference replotting rule, spec 03 §4): a sector plotted at history size ``h`` can
expire once the header of its check segment ``h + min_sector_lifetime - 1`` exists; its
``expiration_history_size`` comes from that segment's commitment. On archived segment ``L`` it
is *about to expire* when ``expiration_history_size - 1 <= L + 1`` (scheduled for replotting)
and *expired* (worthless to the verifier) when ``expiration_history_size - 1 <= L``.

Order of work (the slots that earn nothing come first): sectors whose metadata is a dummy
(undecodable, half-written before a crash, failed proof), expired sectors (soonest-expired
first), missing sectors (ascending index: the reference keeps plotted sectors contiguous),
then sectors about to expire.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from services.protocol.sector import (
    derive_expiration_history_size,
    expiration_check_segment_index,
    sector_expires_at,
    should_replot_sector,
)


class SlotKind(enum.Enum):
    MISSING = "missing"  # never plotted
    NEEDS_REPLOT = "needs-replot"  # dummy metadata
    PLOTTED = "plotted"
    WRITING = "writing"  # a sector is being written into it right now


class PlotReason(enum.Enum):
    INTERRUPTED = "interrupted"  # dummy metadata: rewrite it
    EXPIRED = "expired"
    MISSING = "missing"
    ABOUT_TO_EXPIRE = "about-to-expire"


_ORDER = {PlotReason.INTERRUPTED: 0, PlotReason.EXPIRED: 1, PlotReason.MISSING: 2, PlotReason.ABOUT_TO_EXPIRE: 3}


@dataclass(frozen=True)
class Slot:
    """One sector slot of a farm; ``history_size`` / ``sector_id`` for plotted ones."""

    index: int
    kind: SlotKind
    history_size: int = 0
    sector_id: bytes = b""


@dataclass(frozen=True)
class PlotDecision:
    sector_index: int
    reason: PlotReason

    @property
    def replotting(self) -> bool:
        return self.reason is not PlotReason.MISSING


def current_history_size(latest_segment_index: int) -> int:
    return latest_segment_index + 1


class ExpiryTracker:
    """Expiration history sizes of one farm's plotted sectors, each determined once (the
    commitment of a past segment never changes) and forgotten when the slot is rewritten."""

    def __init__(self, min_sector_lifetime: int) -> None:
        self.min_sector_lifetime = min_sector_lifetime
        self._known: dict[int, tuple[int, int | None]] = {}  # index -> (history size, expiration)

    def check_segment(self, history_size: int) -> int | None:
        return expiration_check_segment_index(history_size, self.min_sector_lifetime)

    def needed_segments(self, slots: Iterable[Slot], latest_segment_index: int) -> set[int]:
        """Check segments (already archived) of plotted sectors whose expiry is not known yet."""
        needed = set()
        for slot in slots:
            if slot.kind is not SlotKind.PLOTTED or self._cached(slot) is not None:
                continue
            segment = self.check_segment(slot.history_size)
            if segment is not None and segment <= latest_segment_index:
                needed.add(segment)
        return needed

    def _cached(self, slot: Slot) -> tuple[int, int | None] | None:
        entry = self._known.get(slot.index)
        return entry if entry is not None and entry[0] == slot.history_size else None

    def expiration(self, slot: Slot, commitment_of: Callable[[int], bytes | None]) -> int | None:
        """``expiration_history_size`` of a plotted slot, or None while its check segment's
        header is unknown (the sector cannot expire yet) or on overflow."""
        if slot.kind is not SlotKind.PLOTTED:
            return None
        cached = self._cached(slot)
        if cached is not None:
            return cached[1]
        segment = self.check_segment(slot.history_size)
        commitment = None if segment is None else commitment_of(segment)
        if commitment is None:
            return None
        value = derive_expiration_history_size(slot.sector_id, slot.history_size, commitment, self.min_sector_lifetime)
        self._known[slot.index] = (slot.history_size, value)
        return value

    def forget(self, index: int) -> None:
        self._known.pop(index, None)


def classify(slot: Slot, expiration: int | None, latest_segment_index: int | None) -> PlotReason | None:
    """Why ``slot`` should be (re)plotted now, or None."""
    if slot.kind is SlotKind.MISSING:
        return PlotReason.MISSING
    if slot.kind is SlotKind.NEEDS_REPLOT:
        return PlotReason.INTERRUPTED
    if slot.kind is not SlotKind.PLOTTED or expiration is None or latest_segment_index is None:
        return None
    if sector_expires_at(expiration) <= latest_segment_index:
        return PlotReason.EXPIRED
    if should_replot_sector(expiration, latest_segment_index):
        return PlotReason.ABOUT_TO_EXPIRE
    return None


def choose_sectors(slots: Iterable[Slot], expirations: Mapping[int, int | None], latest_segment_index: int | None,
                   busy: Iterable[int], room: int) -> list[PlotDecision]:
    """Up to ``room`` sectors to plot next, most urgent first, skipping ``busy`` ones (a job in
    flight or a write in progress)."""
    if room <= 0:
        return []
    skip = set(busy)
    ranked = []
    for slot in slots:
        if slot.index in skip:
            continue
        reason = classify(slot, expirations.get(slot.index), latest_segment_index)
        if reason is None:
            continue
        expiration = expirations.get(slot.index) or 0
        ranked.append((_ORDER[reason], expiration, slot.index, reason))
    ranked.sort(key=lambda item: item[:3])
    return [PlotDecision(index, reason) for _, _, index, reason in ranked[:room]]
