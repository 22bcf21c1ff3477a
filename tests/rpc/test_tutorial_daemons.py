"""The tutorial replayed through the daemons (``examples/tutorial-daemons.sh``), outputs checked.

In: the script, run as a user runs it, in a private ``INFRAKIT_HOME`` (a short path:
sockets live there).  Out: what each command printed, section by section, and that
the daemons are gone afterwards (sockets removed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES

SHA1 = "x4nrsdaibscmj7awpkxzx5vvpt6pilw2"
SHA2 = "jpfedp4sefvncwye5b6yre5qoz2odtnd"
ROW = re.compile(r"^(instance-\d+)\s+-\s+(\S+)$")


def sections(output: str) -> list[tuple[str, list[str]]]:
    """``(command, output lines)`` for every ``$ command`` the script showed."""
    found: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found and line.strip() and not line.startswith("# "):  # the script's own comments
            found[-1][1].append(line)
    return found


def rows(lines: list[str], sha: str) -> set[str]:
    ids = set()
    for line in lines[1:]:
        match = ROW.match(line)
        assert match, line
        assert match.group(2) == f"infrakit.config_sha={sha},infrakit.group=cattle,project=infrakit,tier=web"
        ids.add(match.group(1))
    assert lines[0].split() == ["ID", "LOGICAL", "TAGS"]
    return ids


def test_tutorial_through_the_daemons(sockdir: Path) -> None:
    home = sockdir / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", str(EXAMPLES / "tutorial-daemons.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    steps = sections(done.stdout)
    commands = [command for command, _ in steps]
    assert commands[:3] == ["infrakit-group-default", "mkdir -p tutorial", "infrakit-instance-file --dir ./tutorial"]
    out = dict(steps[:6])
    plugins = home / "plugins"
    for command, name in [
        ("infrakit-group-default", "group"),
        ("infrakit-instance-file --dir ./tutorial", "instance-file"),
        ("infrakit-flavor-vanilla", "flavor-vanilla"),
    ]:
        (line,) = out[command]
        assert line.startswith("INFO") and line.endswith(f"Listening at: {plugins / name}")

    by_index = iter(steps[3:])

    def next_step(expected: str) -> list[str]:
        for command, lines in by_index:
            if command == expected:
                return lines
        raise AssertionError(f"{expected!r} not run; commands were {commands}")

    assert [line.split() for line in next_step("infrakit-local plugin ls")] == [
        ["INTERFACE", "LISTEN", "NAME"],
        ["Flavor/0.1.0", str(plugins / "flavor-vanilla"), "flavor-vanilla"],
        ["Group/0.1.0", str(plugins / "group"), "group"],
        ["Metadata/0.1.0", str(plugins / "group"), "group"],
        ["Instance/0.5.0", str(plugins / "instance-file"), "instance-file"],
    ]
    assert next_step("infrakit-local instance-file describe") == ["ID   LOGICAL   TAGS"]
    assert next_step("infrakit-local group commit ./cattle.json")[-1] == "Committed cattle: Managing 5 instances"
    assert next_step("infrakit-local group ls") == ["ID", "cattle"]
    first = rows(next_step("infrakit-local group describe cattle"), SHA1)
    assert len(first) == 5
    assert rows(next_step("infrakit-local instance-file describe"), SHA1) == first
    assert next_step("infrakit-local group free cattle") == ["Freed cattle"]
    assert next_step("infrakit-local group commit cattle.json") == ["Committed cattle: Managing 5 instances"]
    plan = "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
    assert next_step("infrakit-local group commit cattle2.json --pretend") == [
        f"Committing cattle would involve: {plan}"
    ]
    assert next_step("infrakit-local group commit cattle2.json")[-1] == f"Committed cattle: {plan}"
    second = rows(next_step("infrakit-local group describe cattle"), SHA2)
    assert len(second) == 10 and not second & first

    # Self-healing by the group daemon: the two deleted files are replaced by two new ones.
    removed = next(command for command, _ in steps if command.startswith("rm ./tutorial/"))
    victims = {Path(word).name for word in removed.split()[1:]}
    assert len(victims) == 2 and victims <= second
    diff = next_step("diff before after")
    gone = {line.split()[1] for line in diff if line.startswith("< ")}
    made = {line.split()[1] for line in diff if line.startswith("> ")}
    assert gone == victims and len(made) == 2 and not made & second
    healed = rows(next_step("infrakit-local group describe cattle"), SHA2)
    assert healed == (second - victims) | made

    assert next_step("infrakit-local group destroy cattle") == ["Destroyed cattle: 10 instances"]
    assert next_step("infrakit-local instance-file describe") == ["ID   LOGICAL   TAGS"]
    assert list((home / "work" / "tutorial").iterdir()) == []
    assert sorted(p.name for p in plugins.iterdir()) == []  # every daemon stopped and cleaned up
