"""InfraKit's CLI verbs on ``infrakit-local``: ``group ...``, ``info``, flavor ``prepare``/``healthy``, ``describe -p``.

In: command lines as InfraKit v0.5's CLI took them, on a private ``INFRAKIT_HOME``, with
the built-in plugins or a daemon in the plugins directory.  Out: stdout, exit codes,
one-line errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infrakit import cli
from infrakit.plugins import instance_file
from infrakit.rpc import server
from tests.conftest import EXAMPLES
from tests.rpc.conftest import serving


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_group_spellings_are_the_top_level_commands(home: Path) -> None:
    assert run("group", "commit", str(EXAMPLES / "cattle.json"), "--pretend").stdout == (
        "Committing cattle would involve: Managing 5 instances\n"
    )
    assert run("group", "commit", str(EXAMPLES / "cattle.json")).stdout == "Committed cattle: Managing 5 instances\n"
    assert run("group", "ls").stdout.split() == run("ls").stdout.split() == ["ID", "cattle"]
    assert run("group", "describe", "cattle").stdout == run("describe", "cattle").stdout
    assert "kind: Group" in run("group", "inspect", "cattle").stdout
    assert run("group", "free", "cattle").stdout == "Freed cattle\n"
    run("group", "commit", str(EXAMPLES / "cattle.json"))
    assert run("group", "destroy", "cattle").stdout == "Destroyed cattle: 5 instances\n"
    assert "not found" in run("group", "describe", "cattle", code=2).stderr


def test_info_says_built_in_or_where_the_daemon_listens(home: Path, plugins_env: Path, tmp_path: Path) -> None:
    assert run("instance-file", "info").stdout.splitlines() == [
        "Plugin:     instance-file",
        "Implements: Instance/0.5.0",
        "Listen:     (built-in)",
    ]
    assert run("flavor-vanilla", "info").stdout.splitlines()[-1] == "Listen:     (built-in)"
    assert run("group", "info").stdout.splitlines()[-1] == "Listen:     (not running)"
    plugin = instance_file.FilePlugin(directory=tmp_path / "daemon")
    with serving([server.instance_service(plugin)], directory=plugins_env, name="instance-file") as address:
        shown = json.loads(run("instance-file", "info", "-o", "json").stdout)
        assert shown == {"Plugin": "instance-file", "Implements": ["Instance/0.5.0"], "Listen": address}


def test_flavor_prepare_and_healthy(home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Properties": {"a": 1}, "Tags": {"x": "y"}}))
    properties = tmp_path / "vanilla.json"
    properties.write_text(json.dumps({"Init": ["echo hi"], "Tags": {"tier": "web"}}))
    prepared = json.loads(
        run(
            "flavor-vanilla", "prepare", str(spec), "--properties", str(properties), "--size", "3",
            "--index-group", "cattle",
        ).stdout
    )  # fmt: skip
    assert prepared["Init"] == "echo hi" and prepared["Properties"] == {"a": 1}
    assert prepared["Tags"] == {"x": "y", "tier": "web", "infrakit.group": "cattle"}
    assert run("flavor-vanilla", "healthy", "i-1", "i-2").stdout.splitlines() == ["Healthy", "Healthy"]
    properties.write_text(json.dumps({"Init": 3}))
    refused = run("flavor-vanilla", "prepare", str(spec), "--properties", str(properties), code=2)
    assert "Init" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("through", ["built-in", "daemon"])
def test_describe_properties(home: Path, plugins_env: Path, through: str) -> None:
    directory = home / "instances"
    run("commit", str(EXAMPLES / "cattle.json"))

    def described() -> list[dict[str, object]]:
        listed: list[dict[str, object]] = json.loads(run("instance-file", "describe", "-p", "-o", "json").stdout)
        return listed

    if through == "built-in":
        found = described()
    else:
        plugin = instance_file.FilePlugin(directory=directory)
        service = server.instance_service(
            plugin, properties=lambda d: json.loads((directory / d.id).read_text())["Spec"]
        )
        with serving([service], directory=plugins_env, name="instance-file"):
            found = described()
    assert len(found) == 5
    for entry in found:
        spec = entry["Properties"]
        assert isinstance(spec, dict) and spec["Properties"] == {"Note": "Instance properties version 1.0"}
    header = run("instance-file", "describe", "--properties").stdout.splitlines()[0]
    assert header.split() == ["ID", "LOGICAL", "TAGS", "PROPERTIES"]
