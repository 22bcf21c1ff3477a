"""Benchmarks: every result is a ratio to a baseline measured in the same run.

``python -m bench`` (``make bench``) runs the eight scenarios at full size, prints the
table and rewrites ``BENCHMARKS.md``; ``python -m bench --smoke`` (``make bench-smoke``,
part of ``make test``) runs them all at tiny sizes, judges no target and leaves
``BENCHMARKS.md`` alone, so the benchmark code cannot rot.

Modules: :mod:`bench.measure` (timing, statistics, the machine), :mod:`bench.watch`
(inotify: when does a file appear), :mod:`bench.local` (the local-store scenarios),
:mod:`bench.cli` (the CLI as processes, start-up included), :mod:`bench.cluster` (the
operator on the Go-built control plane), :mod:`bench.report` (the table and ``BENCHMARKS.md``).
"""
