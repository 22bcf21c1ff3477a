"""Playbooks: ``playbook add|ls|rm|run``, ``infrakit-local NAME COMMAND`` and the example playbook end to end.

In: playbook directories and an HTTP server on 127.0.0.1, a private home.  Out: the
playbooks file, rendered Groups (``--print``), the committed groups and their instances.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.commands.conftest import run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "playbook-stack"


def test_add_ls_rm(short_home: Path) -> None:
    added = run("playbook", "add", "stack", str(EXAMPLE))
    assert added.exit_code == 0, added.output
    assert added.output == "Added playbook stack: up, web\n"
    assert yaml.safe_load((short_home / "playbooks").read_text()) == {"stack": str(EXAMPLE)}
    assert run("playbook", "ls").output.splitlines() == ["NAME    URL", f"stack   {EXAMPLE}"]
    assert run("playbook", "rm", "stack").output == "Removed playbook stack\n"
    assert run("playbook", "ls", "-q").output == ""


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (("add", "x", "/nonexistent/book"), "/nonexistent/book/index.yaml: cannot read it", 1),
        (("add", "Bad_Name", str(EXAMPLE)), "NAME", 2),
        (("rm", "nothing"), "no playbook 'nothing'", 2),
        (("run", "nothing", "up"), "no playbook 'nothing'", 2),
    ],
)
def test_bad_input_changes_nothing(short_home: Path, args: tuple[str, ...], words: str, code: int) -> None:
    result = run("playbook", *args)
    assert result.exit_code == code and words in result.output and len(result.output.splitlines()) == 1
    assert not (short_home / "playbooks").exists()


def test_a_bad_index_is_refused(short_home: Path, tmp_path: Path) -> None:
    (tmp_path / "index.yaml").write_text("- not a map\n")
    result = run("playbook", "add", "x", str(tmp_path))
    assert result.exit_code == 2 and "maps command names to templates" in result.output


def test_the_example_renders_a_web_tier_and_a_quorum_and_commits_them(short_home: Path) -> None:
    assert run("playbook", "add", "stack", str(EXAMPLE)).exit_code == 0
    shown = run("playbook", "run", "stack", "up", "--var", "size=2", "--var", "prefix=demo", "--print")
    assert shown.exit_code == 0, shown.output
    documents = list(yaml.safe_load_all(shown.output))
    assert [d["metadata"]["name"] for d in documents] == ["demo-web", "demo-quorum"]
    assert documents[0]["spec"]["allocation"] == {"size": 2}
    assert documents[1]["spec"]["allocation"] == {"logicalIDs": ["10.0.0.11", "10.0.0.12", "10.0.0.13"]}
    assert not (short_home / "groups").exists()  # printed only

    committed = run("playbook", "run", "stack", "up", "--var", "size=2", "--var", "prefix=demo")
    assert committed.exit_code == 0, committed.output
    assert [line for line in committed.output.splitlines() if not line.startswith("INFO")] == [
        "Committed demo-web: Managing 2 instances",
        "Committed demo-quorum: Managing 3 instances",
    ]
    assert sorted(run("ls", "-q").output.split()) == ["demo-quorum", "demo-web"]
    assert len(list((short_home / "instances").iterdir())) == 5


def test_a_rendered_bad_group_commits_nothing(short_home: Path, tmp_path: Path) -> None:
    (tmp_path / "index.yaml").write_text("up: up.yaml.j2\n")
    good = (EXAMPLE / "web.yaml.j2").read_text()
    (tmp_path / "up.yaml.j2").write_text(
        good + "---\n" + good.replace("size: {{ size }}", "size: -1").replace("-web", "-bad")
    )
    assert run("playbook", "add", "book", str(tmp_path)).exit_code == 0
    result = run("playbook", "run", "book", "up")
    assert result.exit_code == 2 and "up.yaml.j2 (rendered)" in result.output
    assert not (short_home / "groups").exists() or not list((short_home / "groups").iterdir())


def test_playbooks_over_http_and_as_cli_commands(short_home: Path, web: tuple[str, Path]) -> None:
    base, root = web
    book = root / "book"
    book.mkdir()
    for name in ("index.yaml", "web.yaml.j2", "stack.yaml.j2"):
        (book / name).write_text((EXAMPLE / name).read_text())
    assert run("playbook", "add", "webapp", f"{base}/book").exit_code == 0
    # `infrakit-local NAME COMMAND`: the root finds the playbook by its name, in the home given.
    shown = run("webapp", "web", "--var", "size=4", "--print")
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output)["spec"]["allocation"] == {"size": 4}
    unknown = run("webapp", "nothing")
    assert unknown.exit_code == 2 and "No such command" in unknown.output
    assert "webapp" in run("--help").output
    assert run("playbook", "rm", "webapp").exit_code == 0
    assert run("webapp", "web", "--print").exit_code == 2  # gone with its entry


def test_a_playbook_over_https(short_home: Path, secure_web: tuple[str, Path]) -> None:
    base, root = secure_web
    book = root / "stack"
    book.mkdir()
    for name in ("index.yaml", "stack.yaml.j2", "web.yaml.j2"):
        (book / name).write_bytes((EXAMPLE / name).read_bytes())
    assert run("playbook", "add", "stack", f"{base}/stack/index.yaml").exit_code == 0
    shown = run("playbook", "run", "stack", "web", "--var", "size=1", "--var", "prefix=tls", "--print")
    assert shown.exit_code == 0, shown.output
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(shown.output)] == ["tls-web"]


@pytest.mark.parametrize(
    "name",
    ["commit", "ls", "describe", "destroy", "run", "group", "plugin", "version", "remote", "template", "playbook",
     "event", "metadata", "instance-file", "flavor-vanilla", "instance-mycloud", "flavor-other"],
)  # fmt: skip
def test_a_playbook_named_after_a_command_is_refused(short_home: Path, name: str) -> None:
    """Was: added, and then never runnable (the built-in command answers to the name)."""
    result = run("playbook", "add", name, str(EXAMPLE))
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert f"NAME {name!r}" in result.output and "command" in result.output
    assert not (short_home / "playbooks").exists()


def test_re_adding_a_playbook_needs_force(short_home: Path, tmp_path: Path) -> None:
    """Was: a second `playbook add` of a name silently replaced the first."""
    (tmp_path / "index.yaml").write_text("other: web.yaml.j2\n")
    (tmp_path / "web.yaml.j2").write_text((EXAMPLE / "web.yaml.j2").read_text())
    assert run("playbook", "add", "stack", str(EXAMPLE)).exit_code == 0
    before = (short_home / "playbooks").read_bytes()
    again = run("playbook", "add", "stack", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.output and str(EXAMPLE) in again.output, again.output
    assert (short_home / "playbooks").read_bytes() == before
    assert run("playbook", "add", "stack", str(EXAMPLE)).exit_code == 0  # the same again: nothing to replace
    replaced = run("playbook", "add", "stack", str(tmp_path), "--force")
    assert replaced.exit_code == 0 and replaced.output == "Replaced playbook stack: other\n", replaced.output
    assert yaml.safe_load((short_home / "playbooks").read_text()) == {"stack": str(tmp_path)}


@pytest.mark.parametrize("command", ["--print", "up now", "a/b", ""])
def test_an_index_whose_command_cannot_be_typed_is_refused(short_home: Path, tmp_path: Path, command: str) -> None:
    (tmp_path / "index.yaml").write_text(yaml.safe_dump({command: "web.yaml.j2", "web": "web.yaml.j2"}))
    result = run("playbook", "add", "book", str(tmp_path))
    assert result.exit_code == 2 and "command" in result.output and len(result.output.splitlines()) == 1
    assert not (short_home / "playbooks").exists()
