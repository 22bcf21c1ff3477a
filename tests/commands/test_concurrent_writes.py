"""The files the commands rewrite (``hosts``, ``playbooks``) lose nothing to concurrent writers.

In: real ``infrakit-local`` processes started together (adds, removals, of remotes and
playbooks), on one home.  Out: every process that said "Added"/"Removed" is reflected
in the file, which is whole YAML; no temporary or lock file is left that a reader trips on.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.commands.conftest import spawn

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "playbook-stack"
COUNT = 12


def finish(processes: list[object]) -> list[tuple[int, str, str]]:
    done = []
    for process in processes:
        out, err = process.communicate(timeout=120)  # type: ignore[attr-defined]
        done.append((process.returncode, out, err))  # type: ignore[attr-defined]
    return done


def test_concurrent_remote_and_playbook_adds_all_stick(short_home: Path) -> None:
    """Was: 12 concurrent `remote add` and `playbook add` all said Added; 3 remotes and 6 playbooks were kept."""
    processes = []
    for n in range(COUNT):
        processes.append(spawn("remote", "add", f"r{n}", f"tcp://127.0.0.1:{20000 + n}"))
        processes.append(spawn("playbook", "add", f"p{n}", str(EXAMPLE)))
    for code, out, err in finish(processes):
        assert code == 0 and out.startswith("Added"), (code, out, err)
    hosts = yaml.safe_load((short_home / "hosts").read_text())
    books = yaml.safe_load((short_home / "playbooks").read_text())
    assert sorted(hosts) == sorted(f"r{n}" for n in range(COUNT))
    assert sorted(books) == sorted(f"p{n}" for n in range(COUNT))
    assert not [p.name for p in short_home.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_removals_and_adds_keep_exactly_what_was_asked(short_home: Path) -> None:
    first = [spawn("remote", "add", f"old{n}", f"tcp://127.0.0.1:{21000 + n}") for n in range(6)]
    assert all(code == 0 for code, _, _ in finish(first))
    processes = [spawn("remote", "rm", f"old{n}") for n in range(6)]
    processes += [spawn("remote", "add", f"new{n}", f"tcp://127.0.0.1:{22000 + n}") for n in range(6)]
    for code, out, err in finish(processes):
        assert code == 0, (out, err)
    assert sorted(yaml.safe_load((short_home / "hosts").read_text())) == sorted(f"new{n}" for n in range(6))
