"""``python -m bench [--smoke]``: run the scenarios, print the table, write the report."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import cli, cluster, containers, local, measure, report, rpc
from bench.measure import Row, Sizes, Workdir

LOCAL = ("provision", "curve", "roll", "heal-local", "heal-stuck", "rpc-provision", "rpc-heal", "cli", "cli-commit")
DOCKER = ("docker-provision", "docker-heal", "docker-roll")
CLUSTER = ("heal-operator", "fleet", "roll-operator")
ALL = LOCAL + DOCKER + CLUSTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no targets, BENCHMARKS.md untouched")
    parser.add_argument("--output", type=Path, help="where to write the report [BENCHMARKS.md; a temp file in --smoke]")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated scenarios [{','.join(ALL)}]")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary directories [$TMPDIR]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (for a post-mortem)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(ALL)}")
    logging.basicConfig(level=logging.WARNING)
    sizes = Sizes.smoke_sizes() if args.smoke else Sizes()
    output = args.output or (_temp_report() if args.smoke else measure.REPO / "BENCHMARKS.md")

    started = time.perf_counter()
    workdir = Workdir(args.workdir)
    info = measure.machine(workdir)
    rows: list[Row] = []
    errors: list[str] = []

    def attempt(name: str, scenario: Callable[[], list[Row]]) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(scenario())
        except Exception as error:
            traceback.print_exc()
            errors.append(f"{name}: {type(error).__name__}: {error}")

    try:
        if "provision" in chosen:
            attempt("provision", lambda: local.provision(workdir, sizes))
        if "curve" in chosen:
            attempt("curve", lambda: local.curve(workdir, sizes))
        if "roll" in chosen:
            attempt("roll", lambda: local.rolling_update(workdir, sizes))
        if "heal-local" in chosen:
            attempt("heal-local", lambda: local.heal_local(workdir, sizes))
        if "heal-stuck" in chosen:
            attempt("heal-stuck", lambda: local.heal_local(workdir, sizes, stuck=True))
        if "rpc-provision" in chosen:
            attempt("rpc-provision", lambda: rpc.provision(workdir, sizes))
        if "rpc-heal" in chosen:
            attempt("rpc-heal", lambda: rpc.heal(workdir, sizes))
        if "cli" in chosen:
            attempt("cli", lambda: cli.latency(workdir, sizes))
        if "cli-commit" in chosen:
            attempt("cli-commit", lambda: cli.commit(workdir, sizes))
        for name, scenario in zip(DOCKER, (containers.provision, containers.heal, containers.roll), strict=True):
            if name in chosen:
                attempt(name, lambda scenario=scenario: scenario(workdir, sizes))  # type: ignore[misc]
        wanted = [(name, run) for name, run in cluster.scenarios() if name in chosen]
        if wanted:
            session: cluster.Session | None = None
            try:
                session = cluster.Session(workdir, smoke=sizes.smoke)
            except cluster.Unavailable as error:
                print(f"note: {error}", file=sys.stderr)
            except Exception as error:
                traceback.print_exc()
                errors.append(f"control plane: {type(error).__name__}: {error}")
            if session is not None:
                try:
                    for name, run in wanted:
                        attempt(name, lambda run=run: run(session, workdir, sizes))  # type: ignore[misc]
                finally:
                    session.stop()
    finally:
        if args.keep:
            print(f"temporary directories kept in {workdir.root}", file=sys.stderr)
        else:
            shutil.rmtree(workdir.root, ignore_errors=True)

    rows.sort(key=lambda r: r.scenario.split(".", 1)[0])
    seconds = time.perf_counter() - started
    print()
    print(report.text_table(rows, errors))
    command = "python -m bench" + (" --smoke" if args.smoke else "")
    output.write_text(report.markdown(rows, machine=info, sizes=sizes, seconds=seconds, command=command, errors=errors))
    judged = [r for r in rows if r.met is not None]
    if judged:
        print(f"\ntargets met: {sum(bool(r.met) for r in judged)} of {len(judged)}")
    print(f"report written to {output}; took {seconds:.1f} s")
    return 1 if errors else 0


def _temp_report() -> Path:
    handle = tempfile.NamedTemporaryFile(prefix="infrakit-bench-smoke-", suffix=".md", delete=False)  # noqa: SIM115
    handle.close()
    return Path(handle.name)


if __name__ == "__main__":
    sys.exit(main())
