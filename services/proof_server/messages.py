"""Messages the proof-server serves: proving one audit winner for a plot-client.

A plot-client reads the winning record's data off its disk (the record's 32 768 stored chunks,
its encoded-chunk bitfield and its record metadata: ``services.protocol.reading.RecordData``,
about 1 MiB) and sends it with everything else ``prove_record`` needs and the slot's deadline
(unix time, seconds). The proof-server rebuilds the record's PoS table, un-masks and recovers
the record, witnesses the chunk and answers with the ``Solution`` (SCALE). Requests go to the
queue group ``subspace.proof-server``, so each is handled by one of the proof-servers.

The answer says why there is no solution when there is none: ``busy`` (all of this server's
proving slots are taken: try again, another member of the queue group may be free), ``expired``
(the deadline had passed when the request came up; it was not worked on), or ``error`` (the
record's data cannot be proven: a corrupt sector, or data this proof-server misreads; the
plot-client proves it locally and schedules the sector for replotting only if that fails too).
"""

from __future__ import annotations

import msgspec

from services.bus.message import Message
from services.protocol.reading import RecordData
from services.protocol.solution import Solution

PROOF_SERVER_QUEUE_GROUP = "subspace.proof-server"


class ProveResult(msgspec.Struct):
    """Exactly one of ``solution`` (SCALE ``Solution``), ``busy``, ``expired``, ``error``."""

    solution: bytes | None = None
    busy: bool = False
    expired: bool = False
    error: str | None = None

    def decoded(self) -> Solution | None:
        return None if self.solution is None else Solution.from_scale(self.solution)


class ProveRequest(Message):
    subject = "subspace.proof-server.prove"
    response = ProveResult
    queue_group = PROOF_SERVER_QUEUE_GROUP
    deadline: float  # unix time after which the solution is useless to the plot-client
    public_key: bytes
    reward_address: bytes
    sector_index: int
    history_size: int
    s_bucket: int
    piece_offset: int
    record: bytes  # RecordData.to_bytes(): bitfield ‖ stored chunks ‖ record metadata

    @classmethod
    def build(cls, record: RecordData, *, deadline: float, public_key: bytes, reward_address: bytes,
              sector_index: int, history_size: int, s_bucket: int) -> ProveRequest:
        return cls(deadline=deadline, public_key=public_key, reward_address=reward_address,
                   sector_index=sector_index, history_size=history_size, s_bucket=s_bucket,
                   piece_offset=record.piece_offset, record=record.to_bytes())

    def record_data(self) -> RecordData:
        """The record (raises ``ReadingError`` when malformed)."""
        return RecordData.from_bytes(self.piece_offset, self.record)
