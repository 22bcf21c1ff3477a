"""The CLI as people meet it: local-only commands say so, help is whole, completion, colour, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from infrakit import cli
from tests.conftest import EXAMPLES
from tests.local.conftest import Local


@pytest.mark.parametrize("command", [["run"], ["instance-file", "describe"], ["flavor-vanilla", "validate", "x"]])
def test_local_only_commands_refuse_a_context_instead_of_ignoring_it(local: Local, command: list[str]) -> None:
    """Was: --context was silently ignored by run and instance-file."""
    result = local("--context", "somewhere", *command, code=2)
    assert len(result.stderr.splitlines()) == 1 and "--context" in result.stderr and "this machine" in result.stderr


def test_help_is_never_cut_short() -> None:
    """Was: click cut each command's help at ~45 characters with '...'."""
    runner = CliRunner()
    for args in ([], ["plugin"], ["group"], ["instance-file"], ["flavor-vanilla"]):
        text = runner.invoke(cli.cli, [*args, "--help"], terminal_width=80).stdout
        commands = text.split("Commands:", 1)[1]
        assert "..." not in commands, commands


def test_group_names_complete_in_the_shell(local: Local) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    environment = {
        "_INFRAKIT_LOCAL_COMPLETE": "bash_complete",
        "COMP_WORDS": "infrakit-local describe ca",
        "COMP_CWORD": "2",
    }
    result = CliRunner().invoke(cli.cli, [], env=environment, prog_name="infrakit-local")
    assert result.exit_code == 0
    assert "plain,cattle" in result.stdout.splitlines()


def run_in_terminal(args: list[str], env: dict[str, str]) -> bytes:
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "infrakit.cli", *args],
            stdout=secondary,
            stderr=secondary,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode in (0, 2)
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)


def test_colour_on_a_terminal_only(local: Local, home: Path) -> None:
    local("commit", str(EXAMPLES / "cattle.yaml"))
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"INFRAKIT_HOME": str(home)}
    on_terminal = run_in_terminal(["ls"], env)
    assert b"\x1b[1m" in on_terminal and b"cattle" in on_terminal  # a bold header
    error = run_in_terminal(["describe", "nonesuch"], env)
    assert b"\x1b[31mError:" in error  # errors in red
    assert b"\x1b[" not in run_in_terminal(["ls"], env | {"NO_COLOR": "1"})
    piped = subprocess.run([sys.executable, "-m", "infrakit.cli", "ls"], env=env, capture_output=True, check=True)
    assert b"\x1b[" not in piped.stdout


def test_ctrl_c_exits_130_and_says_where_the_group_stands(home: Path, tmp_path: Path) -> None:
    """Was: `Aborted!` and exit 1; and the status claimed convergence."""
    manifest = tmp_path / "big.yaml"
    manifest.write_text((EXAMPLES / "cattle.yaml").read_text().replace("size: 5", "size: 20000"))
    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "commit", str(manifest)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    instances = home / "instances"
    deadline = time.monotonic() + 60
    while not (instances.exists() and len(os.listdir(instances)) > 50):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the commit never started provisioning"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert len(err.splitlines()) == 1 and "Interrupted" in err and "resumes" in err
    assert "Traceback" not in err and "Aborted" not in err
    inspected = subprocess.run(
        [sys.executable, "-m", "infrakit.cli", "inspect", "cattle"], env=env, capture_output=True, text=True, check=True
    )
    ready = next(c for c in yaml.safe_load(inspected.stdout)["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "interrupted" in ready["message"] + ready["reason"]


def test_ctrl_c_before_a_commit_recorded_its_spec_leaves_the_store_as_it_was(home: Path, tmp_path: Path) -> None:
    """A re-commit stopped while it was still looking (before it recorded the new spec) must not
    record the new spec by writing the interrupted status into it."""
    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "infrakit.cli", "commit", str(EXAMPLES / "cattle.yaml")], env=env, check=True)
    record = home / "groups" / "cattle.yaml"
    before = record.read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "commit", str(EXAMPLES / "cattle2.yaml")],
        env={**env, "INFRAKIT_FAILPOINTS": "sync-start=stall-after:1:60"},  # stalls as its sync begins
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until_held(home, "cattle", process)  # the commit holds the group's lock once it has begun
    # Ctrl-C, and again if need be: one that lands while Python compiles a module it imports
    # lazily is lost inside the import machinery, as a user's first press can be.
    deadline = time.monotonic() + 30
    while process.poll() is None:
        assert time.monotonic() < deadline, "Ctrl-C never stopped the commit"
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.5)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert record.read_bytes() == before


def test_a_run_stopped_while_a_sync_hangs_exits_after_its_grace(home: Path) -> None:
    """Was: ``run`` logged "stopped" on SIGTERM, then never exited while a sync hung in a plugin
    call (its thread was the loop executor's, joined at exit): still running after 40 s."""
    from infrakit.runtime.running import STOP_GRACE

    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "infrakit.cli", "commit", str(EXAMPLES / "cattle.yaml")], env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "run"],
        env={**env, "INFRAKIT_FAILPOINTS": "sync-start=stall-after:1:600"},  # its first sync hangs
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_held(home, "cattle", process)  # the sync holds the group's lock once it has begun
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=STOP_GRACE + 30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, err
    assert "stuck in a plugin call" in err and "cattle" in err, err
    assert "Traceback" not in err


def _wait_until_held(home: Path, name: str, process: subprocess.Popen[str]) -> None:
    """Until ``process`` holds group ``name``'s lock (it has begun its sync)."""
    lock = os.open(home / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + 60
        while _free(lock, name):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{process.args} never took {name}'s lock"
            time.sleep(0.01)
    finally:
        os.close(lock)


def _free(fd: int, name: str) -> bool:
    """Whether group ``name``'s lock (a byte of the store's lock file) is free now."""
    import fcntl
    import hashlib
    import struct

    offset = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=7).digest(), "big")
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
    except OSError:
        return False
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0))
    return True


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["describe", "nonesuch"], 2),
        (["remote", "rm", "nothing"], 2),
        (["playbook", "rm", "nothing"], 2),
        (["playbook", "run", "nothing", "up"], 2),
        (["metadata", "cat", "group"], 2),
        (["event", "tail", "/"], 2),
        (["template", "/nonexistent/x.tpl"], 1),
        (["instance-file", "destroy", "instance-nothing"], 2),
        (["flavor-vanilla", "validate", "/nonexistent/x.json"], 2),
        (["describe"], 2),  # click's usage errors too
        (["commit", "--timeout", "soon", "x.yaml"], 2),
    ],
    ids=lambda given: " ".join(given) if isinstance(given, list) else str(given),
)
def test_every_command_fails_in_one_json_object_under_log_format_json(home: Path, args: list[str], code: int) -> None:
    """Was: the event, metadata, remote, template and playbook commands, and click's usage
    errors, printed `Error: ...` as text whatever --log-format said."""
    import json

    done = subprocess.run(
        [sys.executable, "-m", "infrakit.cli", "--log-format", "json", *args],
        env={**os.environ, "INFRAKIT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["exit_code"] == code and entry["msg"]


def test_every_table_is_the_same_table(local: Local, home: Path) -> None:
    """Was: `remote ls` and `playbook ls` rendered their tables apart from `ls`, without the bold header."""
    local("remote", "add", "lab", "unix:///tmp")
    local("playbook", "add", "stack", str(EXAMPLES / "playbook-stack"))
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"INFRAKIT_HOME": str(home)}
    for listing in (["remote", "ls"], ["playbook", "ls"], ["plugin", "ls"]):
        shown = run_in_terminal(listing, env)
        assert shown.startswith(b"\x1b[1m"), (listing, shown)  # a bold header on a terminal
        assert b"\x1b[" not in run_in_terminal(listing, env | {"NO_COLOR": "1"})
