"""Remotes: ``remote add|ls|rm`` in ``$INFRAKIT_HOME/hosts`` and ``INFRAKIT_HOST`` selecting one.

In: a private home, a group daemon listening on TCP over another home.  Out: the hosts
file, ``remote ls`` lines, exit codes, and commands (metadata, events) answered by the
remote selected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.cli import remotes
from infrakit.cli.context import Context
from tests.commands.conftest import REPO_ROOT, run, spawn
from tests.rpc.conftest import start_daemon

CATTLE = Path(__file__).resolve().parents[2] / "examples" / "cattle.json"


def test_add_ls_rm(short_home: Path) -> None:
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
def test_bad_input_is_refused_and_changes_nothing(short_home: Path, args: tuple[str, ...], words: str) -> None:
    assert run("remote", "add", "keep", "tcp://127.0.0.1:1").exit_code == 0
    before = (short_home / "hosts").read_bytes()
    result = run("remote", *args)
    assert result.exit_code == 2 and words in result.output and len(result.output.splitlines()) == 1
    assert (short_home / "hosts").read_bytes() == before


def test_a_damaged_hosts_file_is_named(short_home: Path) -> None:
    (short_home / "hosts").write_text("- a list\n")
    result = run("remote", "ls")
    assert result.exit_code == 2 and str(short_home / "hosts") in result.output


def test_an_unknown_infrakit_host_is_refused(short_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAKIT_HOST", "nowhere")
    result = run("metadata", "ls", "group")
    assert result.exit_code == 2 and "INFRAKIT_HOST=nowhere: no such remote" in result.output


def test_a_cluster_remote_is_context_and_namespace_and_context_wins(
    short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remotes.HOSTS.save(short_home, {"prod": "kube://prod-admin/web", "dev": "kube://dev"})
    monkeypatch.setenv("INFRAKIT_HOST", "prod")

    def where(kube_context: str | None = None) -> Context:
        return Context.make(
            home=short_home, instance_dir=None, durable=False, kube_context=kube_context, namespace=None
        )

    assert (where().kube_context, where().namespace) == ("prod-admin", "web")
    assert where("other").kube_context == "other"
    monkeypatch.setenv("INFRAKIT_HOST", "dev")
    assert (where().kube_context, where().namespace) == ("dev", None)


def test_infrakit_host_selects_a_tcp_group_daemon_or_a_plugins_directory(
    short_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
            assert run("ls", "-q").output == "cattle\n", name  # the group verbs too (was: this machine's store)

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

        # A group the daemon does not have is bad input, as on this machine (was: exit 1).
        for verb in ("describe", "inspect", "free", "destroy"):
            missing = run(verb, "nothing")
            assert missing.exit_code == 2 and "group 'nothing' not found" in missing.output, (verb, missing.output)

        # A playbook commits there too, as `commit` does (was: refused, "no group daemon listens").
        monkeypatch.delenv("INFRAKIT_HOST")
        assert run("playbook", "add", "stack", str(REPO_ROOT / "examples" / "playbook-stack")).exit_code == 0
        monkeypatch.setenv("INFRAKIT_HOST", "daemon")
        done = run("stack", "web", "--var", "size=2", "--var", "prefix=far")
        assert done.output == "Committed far-web: Managing 2 instances\n", done.output
        assert (other / "groups" / "far-web.yaml").exists()
        assert not list((short_home / "groups").glob("*.yaml"))
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


def test_re_adding_a_remote_needs_force(short_home: Path) -> None:
    """Was: `remote add` of a name that exists silently pointed it elsewhere."""
    assert run("remote", "add", "lab", "tcp://127.0.0.1:24864").exit_code == 0
    before = (short_home / "hosts").read_bytes()
    again = run("remote", "add", "lab", "tcp://127.0.0.1:24865")
    assert again.exit_code == 2 and "--force" in again.output and "tcp://127.0.0.1:24864" in again.output
    assert (short_home / "hosts").read_bytes() == before
    assert run("remote", "add", "lab", "127.0.0.1:24864").exit_code == 0  # the same URL: nothing replaced
    replaced = run("remote", "add", "lab", "tcp://127.0.0.1:24865", "--force")
    assert replaced.output == "Replaced remote lab: tcp://127.0.0.1:24865\n", replaced.output
    assert yaml.safe_load((short_home / "hosts").read_text()) == {"lab": "tcp://127.0.0.1:24865"}


# -- a remote that cannot be reached is an error, never this machine ------------------------------

GROUP_VERBS = [
    ("commit", str(CATTLE)),
    ("commit", str(CATTLE), "--pretend"),
    ("ls",),
    ("describe", "cattle"),
    ("inspect", "cattle"),
    ("free", "cattle"),
    ("destroy", "cattle"),
    ("group", "ls"),
    ("metadata", "ls", "group"),
    ("metadata", "cat", "group/specs/cattle"),
    ("event", "ls"),
]
LOCAL_ONLY = [("run",), ("instance-file", "describe"), ("flavor-vanilla", "validate", str(CATTLE))]


def untouched(home: Path) -> None:
    """This machine's store and instance directory: nothing was committed or provisioned here."""
    for sub in ("groups", "instances"):
        assert not (home / sub).exists() or not list((home / sub).iterdir()), sub


def fails_naming(result: Any, code: int | tuple[int, ...], *words: str) -> None:
    codes = (code,) if isinstance(code, int) else code
    assert result.exit_code in codes, result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, result.output


def test_a_unix_remote_whose_directory_is_missing_is_an_error(
    short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: every command silently worked on this machine (a commit committed locally)."""
    assert run("remote", "add", "gone", "unix:///nonexistent/infrakit/plugins").exit_code == 0
    monkeypatch.setenv("INFRAKIT_HOST", "gone")
    for args in [*GROUP_VERBS, *LOCAL_ONLY, ("plugin", "ls"), ("template", "-")]:
        result = run(*args, input="{{ metadata('group/specs') }}")
        fails_naming(result, 2, "'gone'", "/nonexistent/infrakit/plugins", "remote add gone")
    untouched(short_home)
    assert run("remote", "ls", "-q").exit_code == 0  # the remotes can still be fixed
    assert run("remote", "rm", "gone").exit_code == 0


def test_a_unix_remote_without_a_group_daemon_is_an_error(
    short_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "plugins"
    empty.mkdir()
    assert run("remote", "add", "idle", f"unix://{empty}").exit_code == 0
    monkeypatch.setenv("INFRAKIT_HOST", "idle")
    for args in GROUP_VERBS:
        fails_naming(run(*args), 1, "'idle'", "infrakit-group-default")
    for args in LOCAL_ONLY:
        fails_naming(run(*args), (1, 2), "'idle'")
    untouched(short_home)


def test_a_tcp_remote_that_cannot_be_reached_is_an_error(short_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("remote", "add", "dead", "tcp://127.0.0.1:1").exit_code == 0
    monkeypatch.setenv("INFRAKIT_HOST", "dead")
    for args in GROUP_VERBS:
        fails_naming(run(*args), 1, "'dead'", "tcp://127.0.0.1:1")
    for args in [*LOCAL_ONLY, ("plugin", "ls")]:
        fails_naming(run(*args), 2, "INFRAKIT_HOST=dead")
    untouched(short_home)


def test_a_kube_remote_whose_context_does_not_exist_is_an_error(
    short_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: real, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\n"
        "current-context: real\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert run("remote", "add", "prod", "kube://nosuch/web").exit_code == 0
    monkeypatch.setenv("INFRAKIT_HOST", "prod")
    for args in GROUP_VERBS:
        fails_naming(run(*args), 2, "'prod'", "nosuch")
    for args in [*LOCAL_ONLY, ("plugin", "ls")]:
        fails_naming(run(*args), 2, "INFRAKIT_HOST=prod")
    untouched(short_home)
