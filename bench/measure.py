"""Timing, statistics, sizes and the machine description shared by every scenario."""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cattle.yaml"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``smoke`` shrinks everything and judges nothing."""

    smoke: bool = False
    repeat: int = 5  # runs of the cheap scenarios (min/median/max over these)
    repeat_heavy: int = 3  # runs of the expensive ones (rolling update, operator at scale)
    repeat_provision: int = 7  # runs of scenario 1 (the noisiest: pure filesystem work)
    chunk_rounds: int = 10  # rounds of the plugin-alone measurement
    provision: int = 10_000
    heal_group: int = 100
    heal_deletions: int = 100
    heal_gap: float = 0.1  # seconds between deletions, so that each is healed alone
    roll: int = 1_000
    fleet_groups: int = 1_000  # the operator at scale: this many groups...
    fleet_size: int = 100  # ...of this many instances
    operator_roll: int = 10_000  # one group rolled through the operator
    idle_seconds: float = 60.0
    idle_settle: float = 5.0
    curve: tuple[int, ...] = (1_000, 10_000, 100_000)  # instances in one group
    curve_repeat: int = 3  # rounds of the curve (each commits every size once)
    grace: float = 3.0  # seconds to keep counting API writes after Ready
    cli_group: int = 100  # the group `ls` and `describe` are timed on
    cli_rounds: int = 30  # interleaved rounds of `python -c pass`, `ls`, `describe`
    cli_commit: int = 3_000  # instances of the whole-process commit

    @classmethod
    def smoke_sizes(cls) -> Sizes:
        return cls(
            smoke=True,
            repeat=1,
            repeat_heavy=1,
            repeat_provision=1,
            chunk_rounds=2,
            provision=50,
            heal_group=5,
            heal_deletions=5,
            heal_gap=0.05,
            roll=20,
            fleet_groups=5,
            fleet_size=5,
            operator_roll=20,
            idle_seconds=3.0,
            idle_settle=0.5,
            curve=(10, 20, 50),
            curve_repeat=1,
            grace=0.5,
            cli_group=5,
            cli_rounds=2,
            cli_commit=50,
        )


@dataclasses.dataclass(frozen=True)
class Stats:
    values: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), linear interpolation between the closest ranks."""
        ordered = sorted(self.values)
        if len(ordered) == 1:
            return ordered[0]
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stats(values: Sequence[float]) -> Stats:
    if not values:
        raise ValueError("no samples")
    return Stats(tuple(values))


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: samples, the value a target is judged on, the verdict."""

    scenario: str
    measure: str
    unit: str  # "s", "ms", "x", "%", "MB", "" (a count)
    samples: Stats
    judged: float | None = None  # the value compared with the target (median, p99...)
    judged_as: str = ""  # "median", "p99", ...
    target: str = ""
    met: bool | None = None  # None: informative, or --smoke

    def judge(self, ok: Callable[[float], bool], *, value: float, what: str, target: str, smoke: bool) -> Row:
        return dataclasses.replace(self, judged=value, judged_as=what, target=target, met=None if smoke else ok(value))


def timed(function: Callable[[], Any]) -> float:
    """Seconds ``function`` takes (``time.perf_counter``)."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


class Workdir:
    """Fresh directories for each run, all under one root (so on one filesystem)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="infrakit-bench-", dir=root))
        self._count = 0

    def fresh(self, label: str) -> Path:
        self._count += 1
        path = self.root / f"{self._count:03d}-{label}"
        path.mkdir()
        return path

    @property
    def filesystem(self) -> str:
        return filesystem_of(self.root)


@contextmanager
def quiet_disk() -> Iterator[None]:
    """Flush dirty pages before a timed run, so a run does not pay for the previous one's writeback."""
    os.sync()
    yield


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), best effort."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            mount = fields[1].replace("\\040", " ")
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, fields[2]
    return kind


def machine(workdir: Workdir) -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "CPU": f"{os.cpu_count()} cores ({model})",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Kernel": f"{platform.system()} {platform.release()}",
        "Filesystem": f"{workdir.filesystem} (temporary directories under {workdir.root.parent})",
    }


# -- groups -----------------------------------------------------------------------------------


def manifest(name: str, size: int, *, note: str = "Instance properties version 1.0") -> dict[str, Any]:
    """The tutorial's cattle group (vanilla flavor, file instances), resized and renamed."""
    document: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    document["metadata"]["name"] = name
    document["spec"]["allocation"] = {"size": size}
    document["spec"]["instance"]["properties"]["Note"] = note
    return document


def write_manifests(path: Path, documents: Sequence[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path
