"""The local-store scenarios: provisioning (vs. the filesystem floor), rolling update,
the scaling curve, and self-healing under ``infrakit-local run``.

Everything goes through the real code path: ``Controller.commit`` (what ``infrakit-local
commit`` calls) on a fresh store and instance directory per run, with the CLI's default
settings (instance files written atomically, not fsynced; the store fsynced).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import measure, watch
from bench.measure import Row, Sizes, Workdir
from infrakit import plugins
from infrakit.core import instances, specs
from infrakit.local import controller as controllers
from infrakit.local import store as stores
from infrakit.plugins.instance_file import FilePlugin

S1 = "1. provision, local store"
S2 = "2. self-heal latency"
S3 = "3. rolling update"
S6 = "6. scaling curve"


def controller(base: Path) -> controllers.Controller:
    options = {"dir": str(base / "instances"), "fsync": False}  # the CLI's default
    registry = plugins.Registry(defaults={"instance-file": options})
    return controllers.Controller(store=stores.Store(base / "home"), registry=registry)


def spec(name: str, size: int, *, note: str = "Instance properties version 1.0") -> specs.GroupSpec:
    return specs.parse_document(measure.manifest(name, size, note=note))


def commit_once(workdir: Workdir, size: int, *, label: str = "commit") -> tuple[float, Path]:
    """Seconds to commit (and converge) a fresh ``size``-instance group; the run's directory."""
    base = workdir.fresh(f"{label}-{size}")
    local = controller(base)
    group = spec("bench", size)
    with measure.quiet_disk():
        seconds = measure.timed(lambda: local.commit(group))
    found = _instance_files(base / "instances")
    if len(found) != size:
        raise RuntimeError(f"commit of {size} instances left {len(found)} files")
    return seconds, base


def floor_once(workdir: Workdir, sizes: list[int]) -> float:
    """A plain Python loop writing ``len(sizes)`` files of those sizes: the filesystem's floor."""
    base = workdir.fresh("floor")
    payloads = {size: b"x" * size for size in set(sizes)}
    jobs = [(str(base / f"instance-{i}"), payloads[size]) for i, size in enumerate(sizes)]

    def write_all() -> None:
        for path, data in jobs:
            with open(path, "wb") as out:
                out.write(data)

    with measure.quiet_disk():
        seconds = measure.timed(write_all)
    shutil.rmtree(base)
    return seconds


def provision(workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 1: commit ``sizes.provision`` instances vs. writing as many files plainly."""
    n = sizes.provision
    # Warm-up (untimed): imports, schema, plugin look-up, the filesystem's metadata caches
    # (the first ten thousand creations after a pause can be several times slower); and
    # the sizes and spec of the real instance files.
    _, warm = commit_once(workdir, n, label="warmup")
    real = [entry.stat().st_size for entry in os.scandir(warm / "instances")]
    sample = json.loads(next(iter(sorted((warm / "instances").iterdir()))).read_text())
    shutil.rmtree(warm)
    file_sizes = [real[i % len(real)] for i in range(n)]
    floor_once(workdir, file_sizes)

    # Floor, commit, floor, commit, ..., floor: each commit is bracketed by two floors and
    # compared with the faster of them (a slow spell of the machine during one floor run
    # would otherwise flatter the commit).
    commits, floors, ratios = [], [floor_once(workdir, file_sizes)], []
    for _ in range(sizes.repeat_provision):
        seconds, base = commit_once(workdir, n)
        shutil.rmtree(base)
        floors.append(floor_once(workdir, file_sizes))
        commits.append(seconds)
        ratios.append(seconds / min(floors[-2:]))

    cli = _cli_commit(workdir, n)
    chunk_ratios = _plugin_chunks(workdir, sizes, instances.InstanceSpec.from_json(sample["Spec"]), real)
    floor_stats, ratio_stats = measure.stats(floors), measure.stats(ratios)
    chunk = min(1000, n)
    rows = [
        Row(S1, f"Controller.commit, {n:,} instances", "s", measure.stats(commits)),
        Row(S1, f"floor: plain loop writing {n:,} files of the same sizes", "s", floor_stats),
        Row(S1, "commit / the faster floor around it (per run)", "x", ratio_stats).judge(
            lambda v: v <= 2.0, value=ratio_stats.median, what="median", target="≤ 2x", smoke=sizes.smoke
        ),
        Row(
            S1,
            f"file plugin's provision alone / floor, {chunk:,}-file rounds interleaved",
            "x",
            measure.stats(chunk_ratios),
        ),
        Row(S1, f"`infrakit-local commit` (CLI process, once), {n:,} instances", "s", measure.stats([cli])),
        Row(S1, "CLI / median floor", "x", measure.stats([cli / floor_stats.median])),
    ]
    return rows


def _plugin_chunks(workdir: Workdir, sizes: Sizes, prepared: instances.InstanceSpec, real: list[int]) -> list[float]:
    """The plugin's own cost, less exposed to noise: short rounds of each, alternating.

    A slow spell of this shared machine lasts seconds; rounds of a thousand files take
    tens of milliseconds, so both sides of a ratio see the same weather.
    """
    chunk = min(1000, sizes.provision)
    plugin_dir, floor_dir = workdir.fresh("plugin-rounds"), workdir.fresh("floor-rounds")
    plugin = FilePlugin(directory=plugin_dir)
    payloads = [b"x" * real[i % len(real)] for i in range(chunk)]
    ratios = []
    for round_ in range(sizes.chunk_rounds):
        jobs = [(str(floor_dir / f"instance-{round_}-{i}"), data) for i, data in enumerate(payloads)]

        def floor(jobs: list[tuple[str, bytes]] = jobs) -> None:
            for path, data in jobs:
                with open(path, "wb") as out:
                    out.write(data)

        def provision() -> None:
            for _ in range(chunk):
                plugin.provision(prepared)

        if round_ % 2:
            took_floor, took_plugin = measure.timed(floor), measure.timed(provision)
        else:
            took_plugin, took_floor = measure.timed(provision), measure.timed(floor)
        ratios.append(took_plugin / took_floor)
    made = len(_instance_files(plugin_dir))  # the rounds time what they check: every file written
    if made != chunk * sizes.chunk_rounds:
        raise RuntimeError(f"the plugin's rounds left {made} instance files, not {chunk * sizes.chunk_rounds}")
    shutil.rmtree(plugin_dir)
    shutil.rmtree(floor_dir)
    return ratios


def _cli_commit(workdir: Workdir, size: int) -> float:
    base = workdir.fresh(f"cli-{size}")
    path = measure.write_manifests(base / "group.yaml", [measure.manifest("bench", size)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    command = [sys.executable, "-m", "infrakit.cli", "--home", str(base / "home"), "commit", str(path)]
    with measure.quiet_disk():
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"infrakit-local commit failed: {done.stderr}")
    made = _instance_files(base / "home" / "instances")  # the row times what it checks: every instance made
    if len(made) != size:
        raise RuntimeError(f"infrakit-local commit of {size} instances left {len(made)} instance files")
    shutil.rmtree(base)
    return seconds


def curve(workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 6: provision time at each size; linear means a constant per-instance cost.

    The sizes take turns within each round (largest first, then smallest first), so a
    slow spell of the machine hits every size alike.  The floor is measured at each size
    too: the filesystem itself does not create files at a constant cost per file (a long
    burst of creations fills the journal), and our growth is judged against its growth.
    """
    seconds: dict[int, list[float]] = {n: [] for n in sizes.curve}
    floors: dict[int, list[float]] = {n: [] for n in sizes.curve}
    for round_ in range(sizes.curve_repeat):
        for n in sizes.curve[::-1] if round_ % 2 == 0 else sizes.curve:
            took, base = commit_once(workdir, n)
            real = [entry.stat().st_size for entry in os.scandir(base / "instances")]
            shutil.rmtree(base)
            seconds[n].append(took)
            floors[n].append(floor_once(workdir, real))
    rows = [Row(S6, f"provision {n:,} instances", "s", measure.stats(seconds[n])) for n in sizes.curve]
    rows += [
        Row(S6, f"per-instance time at {n:,}", "µs", measure.stats([s / n * 1e6 for s in seconds[n]]))
        for n in sizes.curve
    ]
    rows += [
        Row(S6, f"floor: per-file time at {n:,}", "µs", measure.stats([s / n * 1e6 for s in floors[n]]))
        for n in sizes.curve
    ]
    small, large = sizes.curve[-2], sizes.curve[-1]
    ours = [b / large / (a / small) for a, b in zip(seconds[small], seconds[large], strict=True)]
    theirs = [b / large / (a / small) for a, b in zip(floors[small], floors[large], strict=True)]
    # Linear: a constant time per instance.  The filesystem itself is not linear here
    # (a long burst of creations costs more per file: the journal fills), so our growth
    # from one size to the next is judged against the floor's growth over the same sizes.
    relative = measure.stats([a / b for a, b in zip(ours, theirs, strict=True)])
    rows += [
        Row(S6, f"per-instance time {large:,} / {small:,} (per round)", "x", measure.stats(ours)),
        Row(S6, f"floor: per-file time {large:,} / {small:,} (per round)", "x", measure.stats(theirs)),
        Row(S6, "our growth / the floor's growth (per round)", "x", relative).judge(
            lambda v: v <= 1.3, value=relative.median, what="median", target="≤ 1.3x (linear)", smoke=sizes.smoke
        ),
    ]
    return rows


def rolling_update(workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 3: roll ``sizes.roll`` instances (vanilla, instantly healthy) vs. provisioning as many."""
    n = sizes.roll
    provisions, rolls, ratios = [], [], []
    for _ in range(sizes.repeat_heavy):
        base = workdir.fresh(f"roll-{n}")
        local = controller(base)
        first, second = spec("bench", n), spec("bench", n, note="Instance properties version 2.0")
        with measure.quiet_disk():
            provisioned = measure.timed(lambda: local.commit(first))  # noqa: B023 - called at once
        with measure.quiet_disk():
            rolled = measure.timed(lambda: local.commit(second, timeout=900))  # noqa: B023
        _, members = local.observe("bench")
        if len(members) != n or not all(m.up_to_date for m in members):
            raise RuntimeError(f"the rolling update left {len(members)} instances, not {n} up to date")
        shutil.rmtree(base)
        provisions.append(provisioned)
        rolls.append(rolled)
        ratios.append(rolled / provisioned)
    return [
        Row(S3, f"provision {n:,} fresh instances", "s", measure.stats(provisions)),
        Row(S3, f"rolling update of {n:,} (maxSurge 1, maxUnavailable 0)", "s", measure.stats(rolls)),
        Row(S3, "rolling update / provision (per run)", "x", measure.stats(ratios)).judge(
            lambda v: v <= 2.0, value=measure.stats(ratios).median, what="median", target="≤ 2x", smoke=sizes.smoke
        ),
    ]


def heal_local(workdir: Workdir, sizes: Sizes, *, stuck: bool = False) -> list[Row]:
    """Scenario 2, local: delete instance files under ``infrakit-local run``; time each replacement.

    ``stuck``: meanwhile another group's sync is stalled in a plugin call (a failpoint holds
    the runner's first instance operation for 10 minutes): it holds its own group only.
    """
    base = workdir.fresh("heal-stuck" if stuck else "heal-local")
    local = controller(base)
    # Recorded with the group, as the CLI's commit does: `run` finds the instances there.
    local.commit(spec("bench", sizes.heal_group), options={"dir": str(base / "instances")})
    if stuck:
        local.commit(spec("stuck", 2), options={"dir": str(base / "stuck-instances")})
    log = base / "runner.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    if stuck:
        env["INFRAKIT_FAILPOINTS"] = "instance-op=stall-after:1:600"
    command = [
        sys.executable, "-m", "infrakit.cli",
        "--home", str(base / "home"), "--dir", str(base / "instances"),
        "run", "--resync", "60",
    ]  # fmt: skip
    with log.open("wb") as out:
        runner = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_line(log, lambda line: line.rstrip().endswith("ready"), runner, timeout=60)
        time.sleep(0.5)  # its first pass is over; it now waits on notifications
        if stuck:  # the other group loses one: its replacement is made, then the sync stalls
            stuck_dir = base / "stuck-instances"
            os.unlink(stuck_dir / sorted(_instance_files(stuck_dir))[0])
            deadline = time.monotonic() + 30
            while len(_instance_files(stuck_dir)) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the stuck group's replacement never came")
                time.sleep(0.01)
        latencies, method = watch.heal_latencies(base / "instances", deletions=sizes.heal_deletions, gap=sizes.heal_gap)
    finally:
        if stuck:  # its stalled sync would hold a stop for the runtime's STOP_GRACE: not what is measured
            runner.kill()
        else:
            runner.terminate()
        try:
            runner.wait(timeout=15)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    left = len(_instance_files(base / "instances"))
    if left != sizes.heal_group:
        raise RuntimeError(f"after healing, {left} instance files instead of {sizes.heal_group}")
    samples = measure.stats(latencies)
    if stuck:
        return [
            Row(
                S2,
                f"`infrakit-local run`: unlink → new file while another group is stuck in a plugin call "
                f"({sizes.heal_deletions} deletions, group of {sizes.heal_group}, {method})",
                "ms",
                measure.stats([v * 1000 for v in latencies]),
            ).judge(
                lambda v: v < 100,
                value=samples.quantile(0.99) * 1000,
                what="p99",
                target="p99 < 100 ms",
                smoke=sizes.smoke,
            )
        ]
    return [
        Row(
            S2,
            f"`infrakit-local run`: unlink → new file ({sizes.heal_deletions} deletions, group of "
            f"{sizes.heal_group}, {method})",
            "ms",
            measure.stats([v * 1000 for v in latencies]),
        ).judge(
            lambda v: v < 500, value=samples.quantile(0.99) * 1000, what="p99", target="p99 < 500 ms", smoke=sizes.smoke
        )
    ]


def wait_for_line(
    path: Path, wanted: Callable[[str], bool], process: subprocess.Popen[bytes], *, timeout: float
) -> None:
    """Wait until a line of the log at ``path`` satisfies ``wanted`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(wanted(line) for line in path.read_text(errors="replace").splitlines()):
                return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{_tail(path)}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {process.args}:\n{_tail(path)}")


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


def _instance_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if watch.INSTANCE.match(name)]
