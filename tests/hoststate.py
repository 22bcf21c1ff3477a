"""What a test must leave on the host as it found it: kernel settings, mounts, network, processes.

:func:`snapshot` reads every writable ``/proc/sys`` setting (the ones a program could change;
counters are read-only), the mount table, the network namespaces, links, addresses and routes,
and the top-level cgroups; :func:`changes` lists what differs between two snapshots, one line each.
For the node's kubelet as for our dockerd: take one before, one after, assert no changes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Written by the kernel itself as processes come and go: not a setting.
VOLATILE = frozenset({"/proc/sys/kernel/ns_last_pid"})


def sysctls() -> dict[str, str]:
    """Every writable setting under /proc/sys and its value."""
    found = {}
    for directory, _, names in os.walk("/proc/sys"):
        for name in names:
            path = os.path.join(directory, name)
            if path in VOLATILE:
                continue
            try:
                if not os.stat(path).st_mode & 0o222:
                    continue
                with open(path, "rb") as handle:
                    found[path] = handle.read(65536).decode(errors="replace")
            except OSError:
                continue  # write-only, or refused even to root
    return found


def mounts() -> list[str]:
    """The mount points of this process's namespace (mount point, type, source, options)."""
    lines = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        lines.append(" ".join([fields[4], fields[5], *tail]))
    return sorted(lines)


def _ip(*args: str) -> list[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout.splitlines()


def cgroups() -> list[str]:
    """The cgroups at the top of every hierarchy (ours live at ``/infrakit-docker-<hash>``)."""
    root = Path("/sys/fs/cgroup")
    found = []
    for hierarchy in [root, *[p for p in root.iterdir() if p.is_dir()]] if root.is_dir() else []:
        found += [str(p) for p in hierarchy.iterdir() if p.is_dir()]
    return sorted(found)


@dataclass(frozen=True)
class Snapshot:
    sysctls: dict[str, str]
    mounts: list[str]
    netns: list[str]
    links: list[str]
    addresses: list[str]
    routes: list[str]
    cgroups: list[str]


def snapshot() -> Snapshot:
    # Names, addresses and routes, not counters or lifetimes, which change by themselves.
    return Snapshot(
        sysctls=sysctls(),
        mounts=mounts(),
        netns=sorted(_ip("netns", "list")),
        links=sorted(line.split()[1] for line in _ip("-o", "link", "show") if len(line.split()) > 1),
        addresses=sorted(" ".join(line.split()[1:4]) for line in _ip("-o", "addr", "show")),
        routes=sorted(_ip("route", "show", "table", "all")),
        cgroups=cgroups(),
    )


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per difference: a setting changed, a mount/netns/link/address/route/cgroup added or gone."""
    found = []
    for key in sorted(set(before.sysctls) | set(after.sysctls)):
        old, new = before.sysctls.get(key), after.sysctls.get(key)
        if old != new:
            found.append(f"sysctl {key.removeprefix('/proc/sys/').replace('/', '.')}: {old!r} -> {new!r}")
    for name in ("mounts", "netns", "links", "addresses", "routes", "cgroups"):
        old_set, new_set = set(getattr(before, name)), set(getattr(after, name))
        found += [f"{name} +{item}" for item in sorted(new_set - old_set)]
        found += [f"{name} -{item}" for item in sorted(old_set - new_set)]
    return found


def processes_mentioning(text: str) -> list[str]:
    """Every process but this one whose command line contains ``text`` (pid: command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found
