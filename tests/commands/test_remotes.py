"""Remotes: ``remote add|ls|rm`` in ``$INFRAKIT_HOME/hosts`` and ``INFRAKIT_HOST`` selecting one.

In: a private home, a group daemon listening on TCP over another home.  Out: the hosts
file, ``remote ls`` lines, exit codes, and commands (metadata, events) answered by the
remote selected.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from infrakit.commands import _common, remotes
from tests.commands.conftest import run, spawn
from tests.rpc.conftest import start_daemon

CATTLE = Path(__file__).resolve().parents[2] / "examples" / "cattle.json"


def test_add_ls_rm(commands: None, short_home: Path) -> None:
    assert run("remote", "ls").output == "HOST   URL LIST\n"
    assert run("remote", "add", "lab", "unix:///srv/infrakit/plugins").exit_code == 0
    assert run("remote", "add", "daemon", "localhost:24864").output == "Added remote daemon: tcp://localhost:24864\n"
    assert run("remote", "add", "prod", "kube://prod-admin/web").exit_code == 0
    assert yaml.safe_load((short_home / "hosts").read_text()) == {
        "daemon": "tcp://localhost:24864",
        "lab": "unix:///srv/infrakit/plugins",
        "prod": "kube://prod-admin/web",
    }
    assert run("remote", "ls").output.splitlines() == [
        "HOST     URL LIST",
        "daemon   tcp://localhost:24864",
        "lab      unix:///srv/infrakit/plugins",
        "prod     kube://prod-admin/web",
    ]
    assert run("remote", "rm", "lab").output == "Removed remote lab\n"
    assert run("remote", "ls", "-q").output.splitlines() == [
        "daemon   tcp://localhost:24864",
        "prod     kube://prod-admin/web",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("add", "x", "http://example.com"), "a remote is unix:///path"),
        (("add", "x", "unix://relative/dir"), "unix:///absolute/path"),
        (("add", "x", "tcp://host"), "tcp://host:port"),
        (("add", "x", "kube://"), "kube://context"),
        (("add", "Bad_Name", "tcp://h:1"), "NAME"),
        (("rm", "nothing"), "no remote 'nothing'"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    commands: None, short_home: Path, args: tuple[str, ...], words: str
) -> None:
    assert run("remote", "add", "keep", "tcp://127.0.0.1:1").exit_code == 0
    before = (short_home / "hosts").read_bytes()
    result = run("remote", *args)
    assert result.exit_code == 2 and words in result.output and len(result.output.splitlines()) == 1
    assert (short_home / "hosts").read_bytes() == before


def test_a_damaged_hosts_file_is_named(commands: None, short_home: Path) -> None:
    (short_home / "hosts").write_text("- a list\n")
    result = run("remote", "ls")
    assert result.exit_code == 2 and str(short_home / "hosts") in result.output


def test_an_unknown_infrakit_host_is_refused(commands: None, short_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAKIT_HOST", "nowhere")
    result = run("metadata", "ls", "group")
    assert result.exit_code == 2 and "INFRAKIT_HOST=nowhere: no such remote" in result.output


@dataclasses.dataclass
class FakeContext:
    home: Path
    plugins_dir: Path
    kube_context: str | None = None
    namespace: str | None = None


def test_a_cluster_remote_is_context_and_namespace_and_context_wins(
    short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remotes.save(short_home, {"prod": "kube://prod-admin/web", "dev": "kube://dev"})
    monkeypatch.setenv("INFRAKIT_HOST", "prod")
    here = _common.where(FakeContext(home=short_home, plugins_dir=short_home / "plugins"))  # type: ignore[arg-type]
    assert (here.kube_context, here.namespace) == ("prod-admin", "web")
    given = FakeContext(home=short_home, plugins_dir=short_home / "plugins", kube_context="other")
    assert _common.where(given).kube_context == "other"  # type: ignore[arg-type]
    monkeypatch.setenv("INFRAKIT_HOST", "dev")
    dev = _common.where(FakeContext(home=short_home, plugins_dir=short_home / "plugins"))  # type: ignore[arg-type]
    assert (dev.kube_context, dev.namespace) == ("dev", None)


def test_infrakit_host_selects_a_tcp_group_daemon_or_a_plugins_directory(
    commands: None, short_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = short_home / "elsewhere"  # the daemon's home, not the CLI's
    daemon = start_daemon(
        "group-default", "--listen", "127.0.0.1:0", "--resync", "60", env={"INFRAKIT_HOME": str(other)}
    )
    try:
        daemon.wait_for("Listening at:")
        address = (other / "plugins" / "group.listen").read_text().strip()
        from infrakit.rpc import client

        transport = client.Transport(address=address, name="group")
        transport.call("Group.CommitGroup", {"Spec": json.loads(CATTLE.read_text()), "Pretend": False})
        transport.close()

        assert run("metadata", "ls", "group/specs").output == ""  # this machine's store: nothing
        assert run("remote", "add", "daemon", address).exit_code == 0
        assert run("remote", "add", "dir", f"unix://{other / 'plugins'}").exit_code == 0
        for name in ("daemon", "dir"):
            monkeypatch.setenv("INFRAKIT_HOST", name)
            assert run("metadata", "ls", "group/specs").output == "cattle\n", name
            assert run("metadata", "cat", "group/status/cattle/replicas").output == "5\n", name
            assert "group/cattle/instance/lost" in run("event", "ls").output.splitlines(), name

        monkeypatch.setenv("INFRAKIT_HOST", "daemon")
        tail = spawn("event", "tail", "group/cattle/instance/lost", "-o", "json", "--count", "1")
        try:
            assert tail.stderr is not None and "Tailing" in tail.stderr.readline()
            victim = sorted((other / "instances").iterdir())[0]
            victim.unlink()
            out, _ = tail.communicate(timeout=30)
        finally:
            if tail.poll() is None:
                tail.kill()
        assert json.loads(out)["Data"]["InstanceID"] == victim.name

        # The group verbs go to that daemon too, as InfraKit's CLI did (was: the local store, silently).
        assert run("ls", "-q").output == "cattle\n"
        assert len(run("describe", "cattle", "-q").output.splitlines()) == 5
        assert run("inspect", "cattle", "-o", "json").exit_code == 0
        pretend = run("commit", str(CATTLE.with_name("cattle2.json")), "--pretend")
        assert pretend.output.startswith("Committing cattle would involve: Performing a rolling update on 5"), pretend
        assert not list((short_home / "groups").glob("*.yaml"))  # nothing committed to this machine's store
    finally:
        assert daemon.stop() == 0


def test_infrakit_host_selects_the_remote_for_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: INFRAKIT_HOST was ignored. A kube:// remote is --context for the group verbs too."""
    from click.testing import CliRunner

    from infrakit import cli

    home = tmp_path / "home"
    monkeypatch.setenv("INFRAKIT_HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    runner = CliRunner()
    assert runner.invoke(cli.cli, ["remote", "add", "prod", "kube://prod-context/web"]).exit_code == 0
    monkeypatch.setenv("INFRAKIT_HOST", "prod")
    result = runner.invoke(cli.cli, ["ls"])
    assert result.exit_code == 2 and "kubeconfig" in result.stderr  # it went for the cluster, not the store
    monkeypatch.setenv("INFRAKIT_HOST", "nonesuch")
    result = runner.invoke(cli.cli, ["ls"])
    assert result.exit_code == 2 and "INFRAKIT_HOST=nonesuch" in result.stderr
