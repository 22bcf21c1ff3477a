"""The result table (console and Markdown) and ``BENCHMARKS.md``."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from bench.measure import Row, Sizes

FINDINGS = Path(__file__).with_name("findings.md")

HEADERS = ["Scenario", "Measure", "n", "min", "median", "max", "judged", "target", "met"]


def number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "µs":
        return f"{value:.0f} µs"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:g}"


def verdict(row: Row) -> str:
    if not row.target:
        return ""
    if row.met is None:
        return "(smoke)"
    return "yes" if row.met else "**NO**"


def cells(row: Row) -> list[str]:
    s = row.samples
    judged = ""
    if row.judged is not None:
        shown = ("yes" if row.judged else "no") if row.judged_as == "rate-limited" else number(row.judged, row.unit)
        judged = f"{shown} ({row.judged_as})" if row.judged_as != "rate-limited" else shown
    return [
        row.scenario,
        row.measure,
        str(len(s.values)),
        number(s.min, row.unit),
        number(s.median, row.unit),
        number(s.max, row.unit),
        judged,
        row.target,
        verdict(row),
    ]


def text_table(rows: Sequence[Row], errors: Sequence[str] = ()) -> str:
    table = [HEADERS, *[cells(r) for r in rows]]
    widths = [min(70, max(len(line[i]) for line in table)) for i in range(len(HEADERS))]
    out = []
    for index, line in enumerate(table):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    out += [f"ERROR {e}" for e in errors]
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


METHOD = """\
* Every scenario measures its subject and its baseline **in the same run**, interleaved run by run
  where both are repeated, and reports the ratio: absolute times on a shared 2-core VM move by tens of
  per cent from one minute to the next, ratios much less.  Times are `time.perf_counter()` wall-clock
  seconds; each row gives min / median / max over its `n` runs, and a target is judged on the value in
  the *judged* column (the median of the per-run ratios unless it says otherwise).
* Each run gets fresh temporary directories (store and instance directory), all under one root, so
  the floor and the product write to the same filesystem.  `os.sync()` precedes each timed run so that
  no run pays for the previous one's writeback.
* **1. Provision**: `infrakit.local.controller.Controller.commit` (what `infrakit-local commit` calls:
  validate, plugin look-up, store lock, observe, plan, provision every instance through the file
  plugin, status written to the fsynced store) with the CLI's defaults (instance files written
  atomically, not fsynced).  The **floor** is a plain Python loop `open(path, "wb").write(data)` over as
  many files, of the sizes the real instance files have, in a fresh directory of the same filesystem.
  An untimed full-size commit and floor come first (imports, caches, the filesystem's metadata).
  Floor and commit alternate, beginning and ending with a floor; each commit is compared with the
  faster of the two floors around it, and the target is judged on the median of these ratios.
  Also shown: the file plugin's `provision` alone against the floor in interleaved rounds of 1,000
  files (short enough for both sides to see the same conditions), and one `python -m infrakit.cli
  commit` process, start-up included.
* **2. Self-heal**: a group runs under `infrakit-local run` (a subprocess) or under the operator (a
  subprocess, against the control plane); instance files are unlinked one at a time (a pause between
  deletions lets each heal alone) and the latency is from just before `unlink` to the inotify event of
  the replacement's final name (`IN_CREATE` / `IN_MOVED_TO`), read with `select` (no polling).
* **3. Rolling update**: commit a group (vanilla flavor: instantly healthy), then commit it again with
  different instance properties: every instance is replaced, one at a time (maxSurge 1,
  maxUnavailable 0, the defaults).  Baseline: the first commit of the same run.
* **4. Operator at scale**: the operator process (defaults: 2 workers, leader election, resync 300 s
  for watched groups) watches one namespace of the Go-built kube-apiserver + etcd
  (`infrakit.controlplane.start`).  *Fleet*: `kubectl apply` of 1,000 Groups of 100 instances (one
  file, 100,000 instances on one volume), timed from the start of `kubectl apply` to the watch event
  that shows the last Group `Ready=True` with every replica ready and `observedGeneration` current;
  baseline: the local store committing the same 1,000 documents in one process (what `infrakit-local
  commit` of that file does), in the same run.  Status writes: a watch on the namespace sees every new
  `resourceVersion`; consecutive versions of a Group whose status differs count as one write (no-op
  patches create no version and are not counted), up to a few seconds after Ready.  Then, at steady
  state: 100 instance files unlinked one at a time across the groups, each timed to the inotify event
  of its replacement (as scenario 2); then `psutil` user+sys CPU of the operator over an idle window,
  and its peak resident set (`VmHWM` from `/proc`) over its whole life, convergence included.  *Roll*:
  one Group of 10,000 applied, then applied again with other instance properties (every instance
  replaced, maxSurge 1); each timed to `Ready=True` at the new generation with every replica updated;
  baseline: the local store's commit and rolling update of the same group.  Events are listed by
  `involvedObject.name` afterwards.
* **6. Scaling curve**: `Controller.commit` at each size, and the floor at each size, the sizes
  taking turns within each round.  Linear means a constant time per instance; the filesystem itself
  is not linear at these burst sizes here (see the findings), so the target is judged on our
  per-instance growth from the middle to the largest size divided by the floor's per-file growth
  over the same sizes, per round.  (Fixed costs, such as the store's writes, weigh more at the smaller
  size, which flatters our growth a little.)
* **7. CLI latency**: a group of 100 is committed, then `python -c pass` (the same interpreter),
  `infrakit-local ls` and `infrakit-local describe` run as processes in interleaved rounds (the order
  reversed every other round), start to exit; the target is judged on the ratio of the medians.  The
  commands run as users run them: the `infrakit-local` console script, a clean environment (no
  `INFRAKIT_*`; bytecode written, as an installed package has it), after untimed warm-up runs that fill
  the bytecode, the schema cache and the page cache.
* **8. Whole-process commit**: `infrakit-local commit` of 3,000 instances as a process, start-up
  included, against a floor that is also a whole process: `python -c` running a plain loop that writes
  as many files of the real instance files' sizes, each to a temp file then renamed into place.  Floor
  and commit alternate as in scenario 1 (each commit against the faster floor around it).
* `--smoke` runs everything at tiny sizes, once, judges nothing and does not touch BENCHMARKS.md.
"""

REPRODUCE = """\
```console
$ make bench              # = .venv/bin/python -m bench   (full sizes; rewrites BENCHMARKS.md)
$ make bench-smoke        # = .venv/bin/python -m bench --smoke   (tiny sizes, < 60 s; part of make test)
$ make bench-scale        # = .venv/bin/python -m bench --only curve   (to 100,000 in one group; prints the table)
$ .venv/bin/python -m bench --only provision,roll --output /tmp/b.md   # a subset, elsewhere
$ .venv/bin/python -m bench --only cli,cli-commit --output /tmp/b.md    # the CLI as processes (scenarios 7, 8)
```

Scenario names for `--only`: provision, curve, roll, heal-local, rpc-provision, rpc-heal, cli, cli-commit,
heal-operator, fleet, roll-operator.  `make bench-scale` runs the scaling curve alone (up to 100,000
instances in one group, under 10 minutes) and prints its table.

The operator scenarios need the control-plane binary (`make controlplane` builds it from the pinned Go
modules in `tools/controlplane/`, once, cached under `~/.cache/infrakit`) and `kubectl` (in `.venv`).
`--workdir DIR` puts the temporary directories elsewhere (another filesystem, say).
"""


def markdown(
    rows: Sequence[Row],
    *,
    machine: dict[str, str],
    sizes: Sizes,
    seconds: float,
    command: str,
    errors: Sequence[str] = (),
) -> str:
    judged = [r for r in rows if r.met is not None]
    missed = [r for r in judged if not r.met]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {when}; the whole run took {seconds / 60:.1f} min.",
        "This file is rewritten by every full run: edit `bench/report.py` (method) or `bench/findings.md` "
        "(findings) instead.",
        "",
    ]
    if sizes.smoke:
        lines += ["**Smoke run**: tiny sizes, no targets judged; these numbers mean nothing.", ""]
    else:
        lines += [f"**Targets met: {len(judged) - len(missed)} of {len(judged)}.**"]
        lines += [
            f"Missed: {r.scenario}: {r.measure}: {cells(r)[6]}, target {r.target} (see the findings)." for r in missed
        ]
        lines += [""]
    lines += ["## Results", "", markdown_table(rows), ""]
    lines += [f"* ERROR {e}" for e in errors]
    lines += ["## Machine", ""]
    lines += [f"* {k}: {v}" for k, v in machine.items()]
    lines += ["", "## Method", "", METHOD]
    if FINDINGS.is_file():
        lines += [FINDINGS.read_text().rstrip(), ""]
    lines += ["## Reproduce", "", REPRODUCE]
    return "\n".join(lines)
