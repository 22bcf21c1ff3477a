"""Templates are bounded: CPU time, memory, output, recursion, YAML/JSON helpers, fetches, includes.

In: hostile templates (through stdin, files, a loopback HTTP server that drips, redirects
or never ends) given to every entry point: ``template``, ``commit --template``,
``playbook run`` and ``playbook add`` (its index).  Out: exit 2 (the template's fault)
or 1 (a fetch that failed), one line naming the bound, no traceback, nothing committed.

The CPU bound is lowered to 1 s (``rendering.BOUNDS``) so that the loops here cost a
second each; the others keep their defaults.  No test times anything: a bound that does
not hold shows as a template that renders, or as the test's own timeout.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from infrakit.cli import rendering
from tests.commands.conftest import REPO_ROOT, Site, run

ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)


@pytest.fixture(autouse=True)
def quick_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s CPU bound, so that a runaway loop costs one second, not ten."""
    bounds = getattr(rendering, "BOUNDS", None)
    if bounds is not None:
        monkeypatch.setattr(rendering, "BOUNDS", dataclasses.replace(bounds, cpu_seconds=1))


def one_line_error(result: Any, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output[:500]
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output[:500]
    assert "internal error" not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # The issue's three: a 37-byte template that built 1 GB, a 10^10-iteration loop, an alias bomb.
        ("{{ 'x' * 1000 * 1000 * 1000 }}", ("memory", "MiB")),
        ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", ("CPU",)),
        ("{{ from_yaml(var('bomb')) }}", ("from_yaml", "alias")),
        # Their siblings: other ways to a huge value, a long computation or a huge output.
        ("{{ range(10**8) | list | length }}", ("range", "100000")),
        ("{{ [0] * 10**9 }}", ("memory",)),
        ("{{ 'x'.center(10**9) }}", ("memory",)),
        ("{{ 'x' * var('big') }}", ("output", "MiB")),  # 100 MB: within the memory bound, not the output's
        ("{% for i in range(99999) %}{{ 'y' * 100 }}{% endfor %}", ("output",)),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ("recursion",)),
        ("{{ from_json('[' * 100000 + ']' * 100000) }}", ("from_json", "deep")),
        ("{{ from_yaml('[' * 100000 + ']' * 100000) }}", ("from_yaml",)),
        ("{{ from_yaml('a: &a [*a]') }}", ("from_yaml",)),
        ("{{ from_json(' ' * 5000000 + '1') }}", ("from_json", "MiB")),
        ("{{ 1 + 'a' }}", ("TypeError",)),
        ("{{ 1 // 0 }}", ("ZeroDivisionError",)),
    ],
)
def test_a_hostile_template_hits_a_bound_with_one_line(short_home: Path, text: str, words: Any) -> None:
    result = run("template", "-", "--var", f"bomb={ALIAS_BOMB}", "--var", "big=100000000", input=text)
    one_line_error(result, 2, *words)


@pytest.mark.parametrize(
    "text",
    [
        "{{ (9 ** (9 ** 9)) > 0 }}",  # computed in C, where no signal handler runs: only a process limit stops it
        "{{ lipsum(10**6, html=False) }}",  # CPU, memory or output first, as the machine goes
    ],
)
def test_a_computation_in_c_is_stopped_too(short_home: Path, text: str) -> None:
    result = run("template", "-", input=text)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert any(word in result.output for word in ("CPU", "memory", "output")), result.output


def test_what_is_within_the_bounds_still_renders(short_home: Path) -> None:
    text = (
        "{% for i in range(20000) %}{{ i }},{% endfor %}{{ ('z' * 1000000) | length }} {{ from_yaml('a: [1, 2]').a }}"
    )
    result = run("template", "-", input=text)
    assert result.exit_code == 0, result.output
    assert result.output.endswith(",1000000 [1, 2]\n") and result.output.startswith("0,1,2,")


def test_the_issue_examples_in_a_real_process(short_home: Path, tmp_path: Path) -> None:
    """The CLI as a user runs it: each hostile template ends with exit 2 and one line, the process bounded."""
    prelude = (
        "import dataclasses; from infrakit.cli import rendering; "
        "rendering.BOUNDS = dataclasses.replace(rendering.BOUNDS, cpu_seconds=1); "
        "from infrakit import cli; cli.main()"
    )
    for text in (
        "{{ 'x' * 1000 * 1000 * 1000 }}",
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "{{ from_yaml(var('bomb')) }}",
    ):
        done = subprocess.run(
            [sys.executable, "-c", prelude, "template", "-", "--var", f"bomb={ALIAS_BOMB}"],
            input=text,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2 and done.stdout == "", (text, done.stdout[:200], done.stderr[:500])
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# -- every entry point ------------------------------------------------------------------------


def test_commit_of_a_hostile_template_commits_nothing(short_home: Path, tmp_path: Path) -> None:
    template = tmp_path / "group.yaml.j2"
    template.write_text("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}")
    result = run("commit", str(template))
    assert result.exit_code == 2 and "CPU" in result.output and len(result.output.splitlines()) == 1, result.output
    assert not (short_home / "groups").exists() or not list((short_home / "groups").iterdir())


def test_a_playbook_command_that_runs_away_commits_nothing(short_home: Path, tmp_path: Path) -> None:
    (tmp_path / "index.yaml").write_text("up: up.yaml.j2\n")
    (tmp_path / "up.yaml.j2").write_text("{{ 'x' * 1000 * 1000 * 1000 }}")
    assert run("playbook", "add", "book", str(tmp_path)).exit_code == 0
    for args in (("playbook", "run", "book", "up"), ("playbook", "run", "book", "up", "--print")):
        one_line_error(run(*args), 2, "memory")
    assert not (short_home / "groups").exists() or not list((short_home / "groups").iterdir())


# -- fetches: a deadline for the whole fetch, bytes for the whole render ---------------------------


def drip(seconds: float) -> Any:
    """An answer that sends one byte every 0.1 s for ``seconds`` (each read succeeds: no per-read timeout fires)."""

    def answer(handler: Any) -> None:
        count = int(seconds * 10)
        handler.send_response(200)
        handler.send_header("Content-Length", str(count))
        handler.end_headers()
        for _ in range(count):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)

    return answer


def endless(handler: Any) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"y" * 65536
    while True:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def test_a_dripped_fetch_ends_at_the_deadline(short_home: Path, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: the 30 s timeout was per read, so a drip took as long as the server liked (45 s in the issue)."""
    bounds = getattr(rendering, "BOUNDS", None)
    if bounds is not None:
        monkeypatch.setattr(rendering, "BOUNDS", dataclasses.replace(bounds, fetch_seconds=2.0))
    site.routes["/slow.tpl"] = drip(20.0)
    result = run("template", f"{site.base}/slow.tpl")
    one_line_error(result, 1, "slow.tpl", "2 s")


def test_a_dripped_include_and_a_dripped_index_end_at_the_deadline(
    short_home: Path, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds = getattr(rendering, "BOUNDS", None)
    if bounds is not None:
        monkeypatch.setattr(rendering, "BOUNDS", dataclasses.replace(bounds, fetch_seconds=2.0))
    site.routes["/slow.tpl"] = drip(20.0)
    site.routes["/book/index.yaml"] = drip(20.0)
    one_line_error(run("template", "-", input=f"{{{{ include('{site.base}/slow.tpl') }}}}"), 1, "2 s")
    one_line_error(run("playbook", "add", "book", f"{site.base}/book"), 1, "index.yaml", "2 s")
    assert not (short_home / "playbooks").exists()


def test_an_endless_answer_is_cut_at_the_size_bound(short_home: Path, site: Site) -> None:
    site.routes["/endless.tpl"] = endless
    one_line_error(run("template", f"{site.base}/endless.tpl"), 2, "endless.tpl", "MiB")


def test_includes_are_bounded_in_bytes_in_all(short_home: Path, tmp_path: Path) -> None:
    """Each include may be up to 4 MiB; all of one render's together, 16 MiB (the same file read once)."""
    for n in range(6):
        (tmp_path / f"big{n}.tpl").write_text("{# " + "b" * (3 << 20) + " #}")
    same = "".join("{{ include('big0.tpl') }}" for _ in range(8))
    (tmp_path / "same.tpl").write_text(same)
    assert run("template", str(tmp_path / "same.tpl")).exit_code == 0
    (tmp_path / "many.tpl").write_text("".join(f"{{{{ include('big{n}.tpl') }}}}" for n in range(6)))
    one_line_error(run("template", str(tmp_path / "many.tpl")), 2, "16 MiB")


def test_an_include_of_a_fifo_or_a_device_is_refused(short_home: Path, tmp_path: Path) -> None:
    """Was: a FIFO blocked the render for ever (a device was read up to the size bound)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    prelude = "from infrakit import cli; cli.main()"
    for target in (str(fifo), "/dev/zero"):
        done = subprocess.run(
            [sys.executable, "-c", prelude, "template", "-"],
            input=f"{{{{ include({target!r}) }}}}",
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
            env={**os.environ, "INFRAKIT_HOME": str(short_home)},
        )
        assert done.returncode == 2 and "not a regular file" in done.stderr, (target, done.stderr)
        assert len(done.stderr.splitlines()) == 1
