"""services.plot_client.plotting_jobs: the journal round-trips jobs in flight (state written or
not), survives being replaced atomically, and sets an unreadable journal aside."""

from __future__ import annotations

from services.plot_client.plotting_jobs import CLAIMED, QUEUED, WRITTEN, JobJournal, JobRecord
from services.plot_server.messages import PlotSectorJob, sector_job_id
from services.protocol.sector import FarmerProtocolInfo

FARM = "01HZY3KQ5V8XG2N4M6P7R9S0TA"


def job(sector_index: int, history_size: int = 7) -> PlotSectorJob:
    return PlotSectorJob.build(FARM, bytes(range(32)), sector_index, FarmerProtocolInfo.test_runtime(history_size),
                               4, "client-1", replotting=sector_index % 2 == 1)


def test_round_trip(tmp_path):
    journal = JobJournal(tmp_path)
    assert journal.load() == []
    records = [JobRecord(job=job(5), sequence=12, state=CLAIMED, holder="ps-1"),
               JobRecord(job=job(2), issue="01J0ISSUE00000000000000000", sequence=9, reissues=2, state=WRITTEN)]
    journal.save(records)
    loaded = journal.load()
    assert [(r.sector_index, r.sequence, r.reissues, r.state, r.holder) for r in loaded] == [
        (2, 9, 2, WRITTEN, None), (5, 12, 0, QUEUED, None)]  # holders are not kept: re-learnt
    assert loaded[1].job == records[0].job and loaded[1].history_size == 7
    assert loaded[1].job.job_id == sector_job_id(FARM, 5, 7) == f"{FARM}-5-7"
    assert loaded[0].msg_id() == f"{FARM}-2-7#01J0ISSUE00000000000000000.2"
    assert loaded[1].msg_id() == f"{FARM}-5-7#{records[0].issue}" == records[0].msg_id()
    # the same slot and history size planned again is a new issue: a new de-duplication id
    assert JobRecord(job=job(5)).msg_id() != records[0].msg_id()
    journal.save([])
    assert journal.load() == [] and not (tmp_path / "plotting_jobs.json.tmp").exists()


def test_unreadable_journal_is_set_aside(tmp_path):
    journal = JobJournal(tmp_path)
    journal.path.write_bytes(b"{not json")
    assert journal.load() == []
    assert (tmp_path / "plotting_jobs.json.corrupt").read_bytes() == b"{not json"
    assert not journal.path.exists()
