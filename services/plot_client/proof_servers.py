"""Proving on the cluster's proof-servers (``services.proof_server.messages``).

The record's data is read off the farm here (cheap: no PoS work) and sent with the slot's
deadline; the proof-server does the rest. Any proof-server of the queue group may answer. A
``busy`` answer is retried (the queue group then picks a member at random, so another one is
likely reached); no responders, a timeout, ``expired``, repeated ``busy`` and ``error`` all mean
"prove locally" (:class:`~services.plot_client.proving.RemoteUnavailable`): a sector is marked
for replotting only when proving fails here too, so a misbehaving proof-server cannot make a
plot-client give up its sectors.
"""

from __future__ import annotations

import asyncio
import time

from services.bus.client import Bus
from services.bus.errors import BusError
from services.farm import Farm
from services.plot_client.proving import RemoteUnavailable, SlotContext
from services.proof_server.messages import ProveRequest
from services.protocol.proving import ProvingCandidate, ProvingError
from services.protocol.reading import RecordData, ReadingError, read_record_data
from services.protocol.sector import SectorContentsMap, SectorError, SectorMetadata
from services.protocol.solution import Solution

BUSY_ATTEMPTS = 3


def read_record(farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap, piece_offset: int) -> RecordData:
    view = farm.sector_view(metadata.sector_index)
    try:
        return read_record_data(view, metadata, piece_offset, contents_map)
    finally:
        view.release()


class ProofServers:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def prove(self, farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap,
                    candidate: ProvingCandidate, reward_address: bytes, slot: SlotContext,
                    timeout: float) -> Solution:
        give_up_at = time.monotonic() + timeout
        try:
            record = await asyncio.to_thread(read_record, farm, metadata, contents_map, candidate.piece_offset)
        except (ReadingError, SectorError) as exc:
            raise ProvingError(f"sector {metadata.sector_index}: {exc}") from None
        request = ProveRequest.build(record, deadline=slot.deadline, public_key=farm.public_key,
                                     reward_address=reward_address, sector_index=metadata.sector_index,
                                     history_size=metadata.history_size, s_bucket=candidate.s_bucket)
        for _ in range(BUSY_ATTEMPTS):
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise RemoteUnavailable("no time left for a proof-server")
            try:
                result = await self.bus.request(request, timeout=remaining, retries=0)
            except BusError as exc:  # no responders, timeout, a failed handler
                raise RemoteUnavailable(str(exc)) from None
            if result.busy:
                continue
            if result.expired:
                raise RemoteUnavailable("the proof-server found the deadline passed")
            if result.error is not None:  # confirmed locally before the sector is given up
                raise RemoteUnavailable(f"a proof-server could not prove the record: {result.error}")
            solution = result.decoded()
            expected = (farm.public_key, reward_address, metadata.sector_index, metadata.history_size,
                        candidate.piece_offset, record.metadata.commitment, record.metadata.witness)
            got = (solution.public_key, solution.reward_address, solution.sector_index, solution.history_size,
                   solution.piece_offset, solution.record_commitment, solution.record_witness)
            if got != expected:
                raise RemoteUnavailable("a proof-server answered with a solution for another record")
            return solution
        raise RemoteUnavailable(f"proof-servers busy ({BUSY_ATTEMPTS} attempts)")
