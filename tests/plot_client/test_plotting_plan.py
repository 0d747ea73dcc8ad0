"""services.plot_client.plotting_plan: expiry of plotted sectors against the reference's
``derive_expiration_history_size`` outputs (vectors/derivations_ref.json) and the reference
replotting rule (spec 03 §4: scheduled when about to expire, expired as the verifier sees it),
plus the order in which slots are (re)plotted."""

from __future__ import annotations

import json

import pytest

from services.plot_client.plotting_plan import (
    ExpiryTracker,
    PlotReason,
    Slot,
    SlotKind,
    choose_sectors,
    classify,
    current_history_size,
)
from shared_paths import VECTORS_DIR, require_vectors

MIN_SECTOR_LIFETIME = 4


@pytest.fixture(scope="module")
def derivations():
    require_vectors("derivations_ref.json")
    data = json.loads((VECTORS_DIR / "derivations_ref.json").read_text())
    assert data["protocol_params"]["min_sector_lifetime"] == MIN_SECTOR_LIFETIME
    return data


def reference_expirations(derivations):
    """(sector slot, check segment, commitment, reference expiration, reference expired-at list)."""
    for case in derivations["cases"]:
        slot = Slot(case["sector_index"], SlotKind.PLOTTED, case["history_size"], bytes.fromhex(case["sector_id"]))
        for expiration in case["expirations"]:
            yield (slot, case["expiration_check_segment_index"], bytes.fromhex(expiration["segment_commitment"]),
                   expiration["expiration_history_size"], expiration["is_expired"])


def test_expiration_matches_the_reference(derivations):
    checked = 0
    for slot, check_segment, commitment, expected, verdicts in reference_expirations(derivations):
        tracker = ExpiryTracker(MIN_SECTOR_LIFETIME)
        assert tracker.check_segment(slot.history_size) == check_segment
        # before the check segment is archived the sector cannot expire and nothing is fetched
        assert tracker.needed_segments([slot], check_segment - 1) == set()
        assert tracker.needed_segments([slot], check_segment) == {check_segment}
        assert tracker.expiration(slot, lambda segment: None) is None
        asked = []
        value = tracker.expiration(slot, lambda segment: asked.append(segment) or commitment)
        assert value == expected and asked == [check_segment]
        # determined once: no further lookups, no further needs
        assert tracker.expiration(slot, lambda segment: pytest.fail("looked up again")) == expected
        assert tracker.needed_segments([slot], check_segment + 10) == set()
        for verdict in verdicts:
            latest = verdict["current_history_size"] - 1  # archived segment L: history size L + 1
            reason = classify(slot, value, latest)
            # "expired" in our schedule is exactly the verifier's verdict at that history size
            assert (reason is PlotReason.EXPIRED) == verdict["expired"], (slot, verdict)
            # and the reference schedules the replot one segment earlier (about to expire)
            about = value - 1 <= latest + 1
            assert (reason is not None) == about
            if reason is not None and not verdict["expired"]:
                assert reason is PlotReason.ABOUT_TO_EXPIRE
            checked += 1
    assert checked > 1000


def test_a_rewritten_slot_is_determined_again(derivations):
    (slot, check_segment, commitment, expected, _), (_, _, other_commitment, other, _) = list(
        reference_expirations(derivations))[:2]
    tracker = ExpiryTracker(MIN_SECTOR_LIFETIME)
    assert tracker.expiration(slot, {check_segment: commitment}.get) == expected
    # the same slot replotted at a later history size is a different sector
    later = Slot(slot.index, SlotKind.PLOTTED, slot.history_size + 1, slot.sector_id)
    assert tracker.needed_segments([later], 10**6) == {check_segment + 1}
    tracker.forget(slot.index)
    assert tracker.expiration(slot, {check_segment: other_commitment}.get) == other


def test_order_of_work():
    slots = [
        Slot(0, SlotKind.PLOTTED, 1, b"\0" * 32),  # expired (expiration 5, latest 10)
        Slot(1, SlotKind.PLOTTED, 1, b"\0" * 32),  # about to expire (expiration 12 -> at 11 <= 11)
        Slot(2, SlotKind.PLOTTED, 1, b"\0" * 32),  # fine (expiration 40)
        Slot(3, SlotKind.NEEDS_REPLOT),
        Slot(4, SlotKind.WRITING),
        Slot(5, SlotKind.MISSING),
        Slot(6, SlotKind.MISSING),
        Slot(7, SlotKind.PLOTTED, 1, b"\0" * 32),  # expired earlier than slot 0 (expiration 3)
        Slot(8, SlotKind.PLOTTED, 1, b"\0" * 32),  # expiry not determined yet
    ]
    expirations = {0: 5, 1: 12, 2: 40, 7: 3, 8: None}
    chosen = choose_sectors(slots, expirations, 10, busy=[], room=10)
    assert [(d.sector_index, d.reason) for d in chosen] == [
        (3, PlotReason.INTERRUPTED), (7, PlotReason.EXPIRED), (0, PlotReason.EXPIRED),
        (5, PlotReason.MISSING), (6, PlotReason.MISSING), (1, PlotReason.ABOUT_TO_EXPIRE)]
    assert [d.replotting for d in chosen] == [True, True, True, False, False, True]
    limited = choose_sectors(slots, expirations, 10, busy=[3, 7], room=2)
    assert [d.sector_index for d in limited] == [0, 5]
    assert choose_sectors(slots, expirations, 10, busy=[], room=0) == []
    # without any archived segment seen yet only missing / dummy slots are plotted
    assert [d.sector_index for d in choose_sectors(slots, expirations, None, busy=[], room=10)] == [3, 5, 6]
    assert current_history_size(10) == 11
