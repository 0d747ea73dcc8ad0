"""The plot-client daemon: owns farms, farms them every slot, signs their rewards.

``cluster ... plot-client --reward-address ADDR path=DIR,sectors=N ...`` (one farm per
``path=``). At start it asks the controller for the farmer app info (genesis hash, protocol
parameters, farming timeout), opens every farm in parallel (``services.farm``: farms the
official farmer wrote are farmed as they are, new farms are created in its layout), loads the
KZG setup for local proving and registers in the membership bucket (role ``plot-client``,
capacity: farm and sector counts, per farm ``farm.<ID>.sectors`` / ``.plotted``).

Components, each a task of this daemon:

* **farming** (:mod:`.farming`, :mod:`.proving`): every ``SlotInfoBroadcast`` (newest slot only;
  older or repeated slot numbers are dropped) is audited by every farm; winners become proving
  jobs; solutions go as ``SolutionNotification`` to the controller instance named in that slot's
  broadcast. Proof-servers answer proving requests (``services.proof_server.messages``) when
  present; otherwise, or when none answers in time, the plot-client proves locally.
* **reward signing**: a ``RewardSigningBroadcast`` for one of our farms' public keys is signed
  with that farm's identity and sent back as ``RewardSignatureNotification``; logged as the
  official farmer words it, ``Successfully signed reward hash 0x...``.
* **membership**: the record follows the farms' counters (checked every 5 s, put when changed,
  refreshed every 30 s regardless): sector counts, plotting rate, solutions and rewards, the
  latest audit, for ``autonomys-farmer status``. The same counters feed the official
  ``subspace_farmer_farm_*`` metrics (``FarmingStats`` with the farm's metrics view).

* **plotting** (:mod:`.plotting`): keeps every farm's sector slots plotted by the cluster's
  plot-servers (missing, half-written and expiring sectors, ``--plotting-concurrency`` per farm)
  and writes the downloaded sectors through ``Farm.begin_sector_write(i)``; farming needs no
  notification: a committed sector is audited from the next slot on, and the membership refresh
  picks up the new counts.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import nats.errors

from services.bus.client import Bus
from services.bus.errors import BusError, NoResponders, RequestTimeout
from services.bus.membership import Member, Membership
from services.controller.messages import (
    FarmerAppInfoRequest,
    RewardSignatureNotification,
    RewardSigningBroadcast,
    SlotInfoBroadcast,
    SolutionNotification,
)
from services.daemon import Daemon, DaemonError
from services.farm import Farm, FarmError
from services.node.rpc_types import FarmerAppInfo, RewardSignatureResponse, SolutionResponse
from services.plot_client.config import PlotClientConfig
from services.plot_client.farming import FarmFarming
from services.plot_client.proof_servers import ProofServers
from services.plot_client.plotting import PlottingComponent
from services.plot_client.proving import FarmContext, LocalProver, ProvingScheduler, SlotContext
from services.plot_client.stats import FarmingStats
from services.protocol.solution import Solution

APP_INFO_TIMEOUT_S = 10.0
PROOF_SERVER_REQUESTS_IN_FLIGHT = 8  # candidates sent to proof-servers at once
APP_INFO_MAX_BACKOFF_S = 10.0


def load_proving_backend(kzg_params: str | None, backend: str | None = None):  # noqa: ANN201
    """``(Kzg, ErasureCoding(16), ProofsForSeed)``: the trusted setup named by ``--kzg-params``
    (``services.kzg_setup.load_kzg``), erasure coding and K=20 PoS tables on ``backend``."""
    from services.kzg_setup import KzgSetupError, load_kzg
    from services.protocol.erasure import ErasureCoding
    from services.protocol.s_bucket_proofs import chia_proofs_for_seed

    try:
        kzg = load_kzg(kzg_params)
    except KzgSetupError as exc:
        raise DaemonError(f"{exc} (--kzg-params PATH|mainnet|dev)") from None
    return kzg, ErasureCoding(16), chia_proofs_for_seed(backend)


class PlotClientService(Daemon):
    name = "plot-client"

    def __init__(self, config: PlotClientConfig) -> None:
        super().__init__()
        self.config = config
        self.log = self.log.bind(instance=config.instance)
        self.reward_address = bytes.fromhex(config.reward_account_id)
        self.bus: Bus | None = None
        self.app_info: FarmerAppInfo | None = None
        self.farms: list[FarmContext] = []
        self._by_public_key: dict[bytes, FarmContext] = {}
        self._farming: list[FarmFarming] = []
        self._reading_pool: ThreadPoolExecutor | None = None
        self._local: LocalProver | None = None
        self._scheduler: ProvingScheduler | None = None
        self._registration = None
        self._plotting: PlottingComponent | None = None
        self._last_slot = -1
        self.skipped_stale_slots = 0

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        self.bus = await Bus.connect(list(cfg.nats_servers), name=f"plot-client-{cfg.instance}",
                                     metrics=self.metrics.bus)
        self.app_info = await self._farmer_app_info()
        info = self.app_info
        self.log.info("farmer app info", genesis=info.genesis_hash.hex(), history_size=info.protocol_info.history_size,
                      max_pieces_in_sector=info.protocol_info.max_pieces_in_sector,
                      farming_timeout_s=info.farming_timeout_ms / 1000)
        kzg, erasure, proofs_for_seed = await asyncio.to_thread(load_proving_backend, cfg.kzg_params)
        await self._open_farms()
        self._reading_pool = ThreadPoolExecutor(cfg.farming_threads, thread_name_prefix="farming")
        self._local = LocalProver(kzg, erasure, proofs_for_seed, cfg.proving_threads)
        self._scheduler = ProvingScheduler(self._local, self._submit, self.reward_address,
                                           workers=cfg.proving_threads + PROOF_SERVER_REQUESTS_IN_FLIGHT,
                                           remote=ProofServers(self.bus))
        self._farming = [FarmFarming(ctx, self._reading_pool, self._scheduler) for ctx in self.farms]
        self._plotting = PlottingComponent(self.bus, [c.farm for c in self.farms], info.protocol_info,
                                           instance=cfg.instance, plotting_concurrency=cfg.plotting_concurrency,
                                           cluster_secret=cfg.cluster_secret,
                                           stats={c.farm.farm_id: c.stats for c in self.farms})
        await self._plotting.start()
        self._slot_sub = await self.bus.subscribe(SlotInfoBroadcast)
        self._reward_sub = await self.bus.subscribe(RewardSigningBroadcast)
        membership = await Membership.open(self.bus)
        self._registration = await membership.register(
            Member(role="plot-client", instance=cfg.instance, capacity=self._capacity())
        )
        self.log.info("plot-client started", farms=len(self.farms), reward_address=cfg.reward_address,
                      sectors=sum(len(c.farm.plotted_sectors()) for c in self.farms))

    async def _farmer_app_info(self) -> FarmerAppInfo:
        """Ask the controller, waiting for one to come up (supervisor starts everything at once)."""
        assert self.bus is not None
        delay = 0.5
        while True:
            try:
                result = await self.bus.request(FarmerAppInfoRequest(), timeout=APP_INFO_TIMEOUT_S, retries=0)
                return result.unwrap()
            except (NoResponders, RequestTimeout, RuntimeError) as exc:
                if self.stop_event.is_set():
                    raise DaemonError("stopped while waiting for the controller") from None
                self.log.warning("waiting for the controller's farmer app info", error=str(exc), retry_in_s=delay)
            try:
                await asyncio.wait_for(self.stop_event.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(2 * delay, APP_INFO_MAX_BACKOFF_S)

    async def _open_farms(self) -> None:
        assert self.app_info is not None
        info = self.app_info

        def open_farm(spec) -> Farm:  # noqa: ANN001 - FarmSpec
            return Farm.open(spec.path, sectors=spec.sectors, genesis_hash=info.genesis_hash,
                             max_pieces_in_sector=info.protocol_info.max_pieces_in_sector)

        results = await asyncio.gather(*(asyncio.to_thread(open_farm, spec) for spec in self.config.farms),
                                       return_exceptions=True)
        opened = [r for r in results if isinstance(r, Farm)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        keys: dict[bytes, Farm] = {}
        for farm in opened:
            other = keys.setdefault(farm.public_key, farm)
            if other is not farm and failure is None:
                failure = FarmError(f"farms {other.directory} and {farm.directory} share one identity (a copied farm?)")
        if failure is not None:
            for farm in opened:
                farm.close()
            if isinstance(failure, FarmError):
                raise DaemonError(str(failure)) from None
            raise failure
        for farm in opened:
            context = FarmContext(farm, FarmingStats(farm.farm_id, metrics=self.metrics.farm(farm.farm_id)))
            self.farms.append(context)
            self._by_public_key[farm.public_key] = context
            self.log.info("farm opened", farm=farm.farm_id, path=str(farm.directory), public_key=farm.public_key.hex(),
                          sectors=farm.target_sector_count, plotted=len(farm.plotted_sectors()),
                          to_replot=len(farm.sectors_to_replot()), interrupted=farm.interrupted_sectors)

    async def run(self) -> None:
        assert self._scheduler is not None
        self.spawn(self._scheduler.run(), fatal=True)
        self.spawn(self._follow_slots(), fatal=True)
        self.spawn(self._sign_rewards(), fatal=True)
        self.spawn(self._registration.follow(self._capacity), fatal=True)
        if self._plotting is not None:
            self.spawn(self._plotting.run(), fatal=True)
        await self.stop_event.wait()

    async def stop(self) -> None:
        await self.cancel_tasks()
        if self._plotting is not None:
            await self._plotting.stop()
        for farming in self._farming:
            await farming.stop()
        if self._registration is not None:
            await self._registration.stop()  # best effort: failures are logged there
        if self.bus is not None:
            await self.bus.close()
        if self._local is not None:
            await asyncio.to_thread(self._local.close)
        if self._reading_pool is not None:
            self._reading_pool.shutdown(wait=True)
        for context in self.farms:
            context.farm.close()
        for context in self.farms:
            self.log.info("farming stats", **context.stats.snapshot())

    # ---- farming

    async def _follow_slots(self) -> None:
        async for msg in self._slot_sub:
            try:
                info = msg.decoded()
            except ValueError as exc:
                self.log.warning("malformed slot info from the cluster", error=str(exc))
                continue
            if info.slot_number <= self._last_slot:
                self.skipped_stale_slots += 1
                continue
            self._last_slot = info.slot_number
            assert self.app_info is not None
            slot = SlotContext(info.slot_number, msg.instance, info.global_challenge, info.voting_solution_range,
                               time.time() + self.app_info.farming_timeout_ms / 1000)
            for farming in self._farming:
                farming.on_slot(slot)

    async def _submit(self, slot: SlotContext, solution: Solution) -> None:
        assert self.bus is not None
        response = SolutionResponse(slot.slot_number, solution)
        await self.bus.publish(SolutionNotification.build(response), instance=slot.instance)
        self.log.info("solution submitted", slot=slot.slot_number, controller=slot.instance,
                      public_key=solution.public_key.hex()[:16], sector_index=solution.sector_index,
                      piece_offset=solution.piece_offset)

    # ---- rewards

    async def _sign_rewards(self) -> None:
        assert self.bus is not None
        async for msg in self._reward_sub:
            try:
                info = msg.decoded()
            except ValueError as exc:
                self.log.warning("malformed reward signing request from the cluster", error=str(exc))
                continue
            context = self._by_public_key.get(info.public_key)
            if context is None:
                continue  # another farmer's solution
            signature = context.farm.identity.sign_reward_hash(info.hash)
            try:
                await self.bus.publish(RewardSignatureNotification.build(RewardSignatureResponse(info.hash, signature)))
            except (BusError, nats.errors.Error) as exc:
                self.log.warning(f"Failed to send signature for reward hash 0x{info.hash.hex()}", error=str(exc))
                continue
            context.stats.count_reward_signature()
            self.log.info(f"Successfully signed reward hash 0x{info.hash.hex()}", farm=context.farm.farm_id)

    # ---- membership

    def _capacity(self) -> dict[str, int | float | str]:
        """The membership record's counters (kept small: a few fields per farm)."""
        now = time.time()
        farms = [(c, c.farm.target_sector_count, len(c.farm.plotted_sectors())) for c in self.farms]
        stats = [c.stats for c in self.farms]
        capacity: dict[str, int | float | str] = {
            "farms": len(self.farms),
            "sectors": sum(target for _, target, _ in farms),
            "plotted": sum(plotted for _, _, plotted in farms),
            "solutions": sum(s.solutions_submitted for s in stats),
            "rewards": sum(s.reward_signatures for s in stats),
            "skipped_slots": sum(s.skipped_slots for s in stats),
            "audit_ms": round(1000 * max((s.last_audit_time_s for s in stats), default=0.0), 1),
            "last_audit_at": round(max((s.last_audit_at for s in stats), default=0.0)),
            "last_solution_at": round(max((s.last_solution_at for s in stats), default=0.0)),
            "last_reward_at": round(max((s.last_reward_at for s in stats), default=0.0)),
        }
        for context, target, plotted in farms:
            context.stats.observe_sectors(now, target, plotted)
            prefix = f"farm.{context.farm.farm_id}"
            capacity[f"{prefix}.sectors"] = target
            capacity[f"{prefix}.plotted"] = plotted
            capacity[f"{prefix}.sectors_per_hour"] = round(context.stats.plotting_rate.sectors_per_hour, 2)
            capacity[f"{prefix}.solutions"] = context.stats.solutions_submitted
            capacity[f"{prefix}.rewards"] = context.stats.reward_signatures
            capacity[f"{prefix}.public_key"] = context.farm.public_key.hex()[:16]
        return capacity
