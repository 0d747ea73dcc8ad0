"""Machine topology for ``autonomys-farmer conf generate``: which CPUs sit next to which GPU
(``nvidia-smi topo -m``), which logical CPUs are SMT siblings of one core (``lscpu``), and the
``numactl -C`` list each GPU program gets.

Why: a plot-server encodes on ~30 CPU cores and feeds one GPU; pinned to the far socket it pays
the interconnect on every transfer, and two plot-servers pinned to the same cores (the manual's
own example gives ``96-127`` to GPU1 and GPU2, and GPU2 sits on the other NUMA node) fight for
them. The allocation therefore splits each NUMA node's *physical cores* evenly between the GPUs
attached to it, keeping every core's SMT siblings together.

Inputs, as the real tools print them:

* ``nvidia-smi topo -m``: a tab-separated matrix whose header names the columns (``CPU
  Affinity``, ``NUMA Affinity``; the header may carry ANSI underline codes); rows ``GPU<i>``.
  Hand-copied text without tabs is read by tokens.
* ``lscpu`` (human form: ``Thread(s) per core``, ``NUMA nodeN CPU(s)``...) or the parsable
  ``lscpu -p=CPU,CORE,SOCKET,NODE`` (exact core ids; what ``conf generate`` runs locally). From the
  human form siblings are inferred with Linux's usual numbering (a node's CPU list split into
  ``threads per core`` equal parts: ``0-47,96-143`` -> core i = CPUs i and 96+i). Without lscpu
  the same rule applies to the affinity list's runs when they have equal lengths.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import OrderedDict
from typing import Sequence

import msgspec

from services.config import ConfigError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpu_list(text: str, what: str = "CPU list") -> list[int]:
    """``0-31,96-127`` -> sorted unique CPU numbers."""
    value = text.strip()
    if not _CPU_LIST.match(value):
        raise ConfigError(f"invalid {what} {text!r}: expected ranges like 0-31,96-127")
    cpus: set[int] = set()
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ConfigError(f"invalid {what} {text!r}: range {part!r} is backwards")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def runs(cpus: Sequence[int]) -> list[list[int]]:
    """Maximal runs of consecutive CPU numbers, in order."""
    out: list[list[int]] = []
    for cpu in cpus:
        if out and cpu == out[-1][-1] + 1:
            out[-1].append(cpu)
        else:
            out.append([cpu])
    return out


def format_cpu_list(cpus: Sequence[int]) -> str:
    """Sorted CPU numbers -> ``0-31,96-127``."""
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs(sorted(cpus)))


class GpuAffinity(msgspec.Struct, frozen=True):
    index: int
    cpus: tuple[int, ...] = ()  # empty: "N/A" in the CPU Affinity column
    numa_node: int | None = None


class CpuTopology(msgspec.Struct, frozen=True):
    cpus: tuple[int, ...]  # online CPUs
    core_of: dict[int, int]  # CPU -> physical core id (unique machine-wide)
    nodes: dict[int, tuple[int, ...]]  # NUMA node -> CPUs
    threads_per_core: int = 1
    sockets: int = 1
    model: str = ""
    exact: bool = False  # core ids read (lscpu -p), not inferred


# --- nvidia-smi topo -m --------------------------------------------------------------------


def parse_nvidia_topo(text: str) -> dict[int, GpuAffinity]:
    """GPU index -> CPU / NUMA affinity from ``nvidia-smi topo -m`` output."""
    lines = [_ANSI.sub("", line).rstrip("\n") for line in text.splitlines()]
    header = next((line for line in lines if "CPU Affinity" in line), None)
    gpus: dict[int, GpuAffinity] = {}
    if header is not None and "\t" in header:
        columns = [cell.strip() for cell in header.split("\t")]
        cpu_col = columns.index("CPU Affinity")
        numa_col = columns.index("NUMA Affinity") if "NUMA Affinity" in columns else None
        for line in lines:
            cells = [cell.strip() for cell in line.split("\t")]
            if not re.fullmatch(r"GPU\d+", cells[0]) or len(cells) <= cpu_col:
                continue
            gpus[int(cells[0][3:])] = GpuAffinity(
                index=int(cells[0][3:]),
                cpus=_affinity(cells[cpu_col], cells[0]),
                numa_node=_node(cells[numa_col]) if numa_col is not None and len(cells) > numa_col else None,
            )
    else:  # copied by hand, tabs lost: the affinity is the first CPU list token after the link columns
        for line in lines:
            tokens = line.split()
            if not tokens or not re.fullmatch(r"GPU\d+", tokens[0]):
                continue
            for i, token in enumerate(tokens[1:], start=1):
                if _CPU_LIST.match(token) and ("-" in token or "," in token):
                    node = _node(tokens[i + 1]) if i + 1 < len(tokens) else None
                    gpus[int(tokens[0][3:])] = GpuAffinity(index=int(tokens[0][3:]),
                                                           cpus=_affinity(token, tokens[0]), numa_node=node)
                    break
    if not gpus:
        raise ConfigError("no GPU rows with a CPU Affinity column found in the nvidia-smi topo -m output")
    return dict(sorted(gpus.items()))


def _affinity(cell: str, gpu: str) -> tuple[int, ...]:
    return () if cell in ("", "N/A") else tuple(parse_cpu_list(cell, f"CPU affinity of {gpu}"))


def _node(cell: str) -> int | None:
    cell = cell.strip()
    return int(cell) if cell.isdigit() else None


# --- lscpu ---------------------------------------------------------------------------------


def parse_lscpu(text: str) -> CpuTopology:
    """``lscpu`` or ``lscpu -p=CPU,CORE,SOCKET,NODE`` output."""
    lines = text.splitlines()
    header = next((line for line in lines if line.startswith("# ") and "CPU" in line and "," in line), None)
    if header is not None:
        return _parse_lscpu_parsable(lines, header)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        online = parse_cpu_list(fields.get("On-line CPU(s) list") or f"0-{int(fields['CPU(s)']) - 1}", "lscpu CPUs")
        threads = int(fields.get("Thread(s) per core", "1"))
        sockets = int(fields.get("Socket(s)", "1"))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"unreadable lscpu output: {exc}") from None
    nodes = {int(m.group(1)): tuple(parse_cpu_list(v, f"NUMA node{m.group(1)} CPUs"))
             for k, v in fields.items() if (m := re.fullmatch(r"NUMA node(\d+) CPU\(s\)", k)) and v}
    if not nodes:
        nodes = {0: tuple(online)}
    core_of: dict[int, int] = {}
    next_core = 0
    for node in sorted(nodes):
        for core in _inferred_cores(list(nodes[node]), threads):
            for cpu in core:
                core_of[cpu] = next_core
            next_core += 1
    return CpuTopology(cpus=tuple(online), core_of=core_of, nodes=nodes, threads_per_core=threads, sockets=sockets,
                       model=fields.get("Model name", ""))


def _parse_lscpu_parsable(lines: list[str], header: str) -> CpuTopology:
    names = [name.strip().lower() for name in header[2:].split(",")]
    if "cpu" not in names or "core" not in names:
        raise ConfigError("lscpu -p output needs the CPU and CORE columns (lscpu -p=CPU,CORE,SOCKET,NODE)")
    core_of: dict[int, int] = {}
    nodes: dict[int, list[int]] = {}
    sockets: set[int] = set()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        values = dict(zip(names, line.strip().split(",")))
        try:
            cpu, core = int(values["cpu"]), int(values["core"])
        except ValueError:
            raise ConfigError(f"unreadable lscpu -p line {line!r}") from None
        core_of[cpu] = core
        node = values.get("node", "")
        nodes.setdefault(int(node) if node.isdigit() else 0, []).append(cpu)
        if values.get("socket", "").isdigit():
            sockets.add(int(values["socket"]))
    per_core: dict[int, int] = {}
    for core in core_of.values():
        per_core[core] = per_core.get(core, 0) + 1
    return CpuTopology(cpus=tuple(sorted(core_of)), core_of=core_of,
                       nodes={n: tuple(sorted(c)) for n, c in nodes.items()},
                       threads_per_core=max(per_core.values(), default=1), sockets=max(1, len(sockets)), exact=True)


def _inferred_cores(cpus: list[int], threads: int) -> list[tuple[int, ...]]:
    """Cores of a sorted CPU list split into ``threads`` equal parts (Linux's numbering)."""
    if threads <= 1 or len(cpus) % threads:
        return [(cpu,) for cpu in cpus]
    size = len(cpus) // threads
    parts = [cpus[i * size:(i + 1) * size] for i in range(threads)]
    return list(zip(*parts))


# --- allocation ----------------------------------------------------------------------------


def _cores(pool: list[int], topology: CpuTopology | None) -> list[list[int]]:
    """Physical cores of ``pool`` (each a list of its logical CPUs), in CPU order."""
    if topology is not None:
        cores: OrderedDict[int, list[int]] = OrderedDict()
        for cpu in pool:
            cores.setdefault(topology.core_of.get(cpu, -1 - cpu), []).append(cpu)
        return list(cores.values())
    pieces = runs(pool)
    if len(pieces) > 1 and len({len(p) for p in pieces}) == 1:
        return [list(core) for core in zip(*pieces)]
    return [[cpu] for cpu in pool]


def gpu_pool(gpu: GpuAffinity, topology: CpuTopology | None) -> list[int]:
    """The CPUs a GPU should use: its CPU affinity, else its NUMA node's CPUs, else all."""
    if gpu.cpus:
        pool = list(gpu.cpus)
    elif topology is not None and gpu.numa_node in topology.nodes:
        pool = list(topology.nodes[gpu.numa_node])
    elif topology is not None:
        pool = list(topology.cpus)
    else:
        raise ConfigError(f"GPU{gpu.index} has no CPU affinity in the nvidia-smi topo -m output; give --lscpu")
    if topology is not None:
        online = set(topology.cpus)
        pool = [cpu for cpu in pool if cpu in online]
    return sorted(pool)


def allocate(gpu_indices: Sequence[int], gpus: dict[int, GpuAffinity], topology: CpuTopology | None,
             cores_per_gpu: int | None = None) -> list[list[int]]:
    """CPU list per GPU program: the GPUs sharing a CPU pool split its physical cores evenly
    (``cores_per_gpu`` each when given), every core with all its SMT siblings; pools of earlier
    GPUs are never reused."""
    for index in gpu_indices:
        if index not in gpus:
            raise ConfigError(f"GPU{index} is missing from the nvidia-smi topo -m output "
                              f"(it lists {', '.join(f'GPU{i}' for i in gpus)})")
    groups: OrderedDict[tuple[int, ...], list[int]] = OrderedDict()
    for index in gpu_indices:
        groups.setdefault(tuple(gpu_pool(gpus[index], topology)), []).append(index)
    taken: set[int] = set()
    result: dict[int, list[int]] = {}
    for pool, members in groups.items():
        cores = [core for core in _cores([c for c in pool if c not in taken], topology)]
        per = cores_per_gpu if cores_per_gpu is not None else len(cores) // len(members)
        names = ", ".join(f"GPU{i}" for i in members)
        if per < 1 or per * len(members) > len(cores):
            wanted = f"{cores_per_gpu} cores each" if cores_per_gpu else "at least one core each"
            raise ConfigError(f"{names} share CPUs {format_cpu_list(pool)} with {len(cores)} free physical cores: "
                              f"not enough for {wanted} (--cores-per-gpu)")
        for slot, index in enumerate(members):
            chosen = sorted(cpu for core in cores[slot * per:(slot + 1) * per] for cpu in core)
            taken.update(chosen)
            result[index] = chosen
    return [result[index] for index in gpu_indices]


# --- reading the local machine ---------------------------------------------------------------


def run_tool(argv: list[str]) -> str | None:
    """Output of a local tool, or None when it is not installed or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def local_nvidia_topo() -> str | None:
    return run_tool(["nvidia-smi", "topo", "-m"])


def local_lscpu() -> str | None:
    return run_tool(["lscpu", "-p=CPU,CORE,SOCKET,NODE"])
