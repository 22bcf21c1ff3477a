"""The CLI as a user feels it: whole processes, start-up included.

* **7. CLI latency**: ``infrakit-local ls`` and ``describe`` of a 100-instance group against
  ``python -c pass`` (the same interpreter), in interleaved rounds, in a home as a user's is:
  with a playbook and remotes (their files are read at start-up to offer their commands).
* **8. Whole-process commit**: ``infrakit-local commit`` of a 3,000-instance group against a
  plain Python program writing as many files of the same sizes (temp file + rename), each
  commit bracketed by two such floors.

Commands run as users run them: the ``infrakit-local`` console script next to the
interpreter (else ``python -m infrakit.cli``), in a clean environment (no ``INFRAKIT_*``,
bytecode written as an installed package has it), after untimed warm-up runs that fill
the bytecode and the schema caches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import measure
from bench.measure import Row, Sizes, Workdir

S7 = "7. CLI latency"
S8 = "8. whole-process commit"

FLOOR = """
import os, sys
directory, sizes = sys.argv[1], [int(n) for n in sys.argv[2].split(",")]
for i, size in enumerate(sizes):
    path = os.path.join(directory, f"instance-{i}")
    temp = os.path.join(directory, f".instance-{i}.tmp")
    with open(temp, "wb") as out:
        out.write(b"x" * size)
    os.rename(temp, path)
"""


def command() -> list[str]:
    script = Path(sys.executable).with_name("infrakit-local")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "infrakit.cli"]


def environment(workdir: Workdir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["INFRAKIT_CACHE"] = str(workdir.root / "user-cache")
    return env


def run(args: list[str], env: dict[str, str], *, timeout: float = 600.0) -> float:
    """Seconds the process took, start to exit; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited with {done.returncode}: {done.stderr.decode(errors='replace')}")
    return seconds


def latency(workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 7: ``ls`` and ``describe`` of a ``sizes.cli_group`` group vs ``python -c pass``."""
    base = workdir.fresh("cli-latency")
    env = environment(workdir)
    home = ["--home", str(base / "home")]
    group = measure.write_manifests(base / "group.yaml", [measure.manifest("bench", sizes.cli_group)])
    run([*command(), *home, "commit", str(group)], env)
    # A user's home: a playbook and two remotes (the CLI reads them to offer their commands).
    run([*command(), *home, "playbook", "add", "stack", str(measure.REPO / "examples" / "playbook-stack")], env)
    run([*command(), *home, "remote", "add", "lab", f"unix://{base}"], env)
    run([*command(), *home, "remote", "add", "prod", "tcp://127.0.0.1:24864"], env)
    subjects = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ls": [*command(), *home, "ls"],
        "describe": [*command(), *home, "describe", "bench"],
    }
    for args in subjects.values():  # warm-up: bytecode, the schema cache, the page cache
        run(args, env)
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for round_ in range(sizes.cli_rounds):
        order = list(subjects.items())
        for name, args in order if round_ % 2 == 0 else order[::-1]:
            times[name].append(run(args, env))
    shutil.rmtree(base)
    floor = measure.stats(times["python -c pass"])
    rows = [Row(S7, f"`python -c pass` ({sizes.cli_rounds} rounds, interleaved)", "ms", _ms(floor))]
    for name in ("ls", "describe"):
        took = measure.stats(times[name])
        ratio = took.median / floor.median
        rows += [
            Row(S7, f"`infrakit-local {name}`, group of {sizes.cli_group}", "ms", _ms(took)),
            Row(S7, f"`{name}` median / `python -c pass` median", "x", measure.stats([ratio])).judge(
                lambda v: v <= 3.0, value=ratio, what="medians", target="≤ 3x", smoke=sizes.smoke
            ),
        ]
    return rows


def commit(workdir: Workdir, sizes: Sizes) -> list[Row]:
    """Scenario 8: ``infrakit-local commit`` of ``sizes.cli_commit`` instances vs a plain program."""
    n = sizes.cli_commit
    env = environment(workdir)
    # Untimed: a commit of the full size gives the real file sizes (and warms every cache).
    warm = workdir.fresh("cli-commit-warmup")
    _, file_sizes = _commit_once(warm, n, env)
    shutil.rmtree(warm)
    _floor_once(workdir, file_sizes, env)

    commits, floors, ratios = [], [_floor_once(workdir, file_sizes, env)], []
    for _ in range(sizes.repeat_provision):
        base = workdir.fresh("cli-commit")
        seconds, _ = _commit_once(base, n, env)
        shutil.rmtree(base)
        commits.append(seconds)
        floors.append(_floor_once(workdir, file_sizes, env))
        ratios.append(seconds / min(floors[-2:]))
    ratio = measure.stats(ratios)
    return [
        Row(S8, f"`infrakit-local commit`, {n:,} instances (whole process)", "s", measure.stats(commits)),
        Row(S8, f"floor: `python -c` loop writing {n:,} files of the same sizes (temp file + rename)", "s",
            measure.stats(floors)),
        Row(S8, "commit / the faster floor around it (per run)", "x", ratio).judge(
            lambda v: v <= 2.0, value=ratio.median, what="median", target="≤ 2x", smoke=sizes.smoke
        ),
    ]  # fmt: skip


def _commit_once(base: Path, n: int, env: dict[str, str]) -> tuple[float, list[int]]:
    path = measure.write_manifests(base / "group.yaml", [measure.manifest("bench", n)])
    args = [*command(), "--home", str(base / "home"), "commit", str(path)]
    with measure.quiet_disk():
        seconds = run(args, env)
    made = [entry.stat().st_size for entry in os.scandir(base / "home" / "instances")]
    if len(made) != n:
        raise RuntimeError(f"infrakit-local commit of {n} instances left {len(made)} files")
    return seconds, made


def _floor_once(workdir: Workdir, file_sizes: list[int], env: dict[str, str]) -> float:
    base = workdir.fresh("cli-floor")
    args = [sys.executable, "-c", FLOOR, str(base), ",".join(map(str, file_sizes))]
    with measure.quiet_disk():
        seconds = run(args, env)
    if len(os.listdir(base)) != len(file_sizes):
        raise RuntimeError("the floor program did not write every file")
    shutil.rmtree(base)
    return seconds


def _ms(stats: measure.Stats) -> measure.Stats:
    return measure.stats([v * 1000 for v in stats.values])
