"""Templates: Jinja2 with InfraKit's helpers, sandboxed, strict about undefined names, from paths and URLs.

In: template files, stdin, a plain-HTTP server on 127.0.0.1 (https is the same code path,
proved in ``test_playbooks.py::test_a_playbook_over_https``), a committed group for
``metadata()``.  Out: the rendered text, or one line and exit 2.  Their bounds and their
reach: ``test_template_bounds.py``, ``test_template_reach.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.conftest import run

CATTLE = Path(__file__).resolve().parents[2] / "examples" / "cattle.json"


def test_variables_helpers_and_includes(short_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IK_REGION", "eu-west-1")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "tags.tpl").write_text("tier: {{ tier }}, region: {{ env('IK_REGION') }}")
    (tmp_path / "main.tpl").write_text(
        "{{ var('greeting', 'hi') }}{{ var('greeting') }} {{ var('name') }} x{{ size + 1 }}\n"
        "{{ include('parts/tags.tpl', tier='web') }}\n"
        "{{ {'a': [1, 2]} | json }} {{ json(from_yaml('b: 3')) }} {{ env('IK_UNSET', 'dflt') }}\n"
    )
    result = run("template", str(tmp_path / "main.tpl"), "--var", "name=cattle", "--var", "size=4")
    assert result.exit_code == 0, result.output
    assert result.output == 'hi cattle x5\ntier: web, region: eu-west-1\n{"a": [1, 2]} {"b": 3} dflt\n'


def test_stdin_and_file_urls(short_home: Path, tmp_path: Path) -> None:
    assert run("template", "-", "--var", "n=2", input="{{ n * 3 }}").output == "6\n"
    (tmp_path / "t.tpl").write_text("{{ 'ok' | upper }}\n")
    assert run("template", f"file://{tmp_path / 't.tpl'}").output == "OK\n"


def test_http_sources_and_relative_includes(short_home: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "lib").mkdir()
    (root / "lib" / "main.tpl").write_text("main {{ include('part.tpl') }}")
    (root / "lib" / "part.tpl").write_text("part {{ var('x') }}")
    assert run("template", f"{base}/lib/main.tpl", "--var", "x=1").output == "main part 1\n"
    missing = run("template", f"{base}/nothing.tpl")
    assert missing.exit_code == 1 and "HTTP 404" in missing.output


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ size }}", "'size' is undefined"),
        ("{{ var('count') }}", "variable 'count' is not set; pass it with --var count=VALUE"),
        ("{{ env('IK_SURELY_UNSET') }}", "environment variable 'IK_SURELY_UNSET' is not set"),
        ("{{ ''.__class__.__mro__ }}", "__class__"),
        ("{{ [].append(1) }}", "refused by the sandbox"),
        ("{% if %}", "-:1:"),
        ("{{ include('/nonexistent/x.tpl') }}", "/nonexistent/x.tpl: cannot read it"),
    ],
)
def test_bad_templates_are_one_line_errors(short_home: Path, text: str, words: str) -> None:
    result = run("template", "-", input=text)
    assert result.exit_code in (1, 2) and words in result.output, result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output


def test_metadata_reads_the_store(short_home: Path) -> None:
    assert run("commit", str(CATTLE)).exit_code == 0
    text = "size {{ metadata('group/specs/cattle/Properties/Allocation/Size') }}"
    assert run("template", "-", input=text).output == "size 5\n"
    missing = run("template", "-", input="{{ metadata('group/specs/nothing') }}")
    assert missing.exit_code == 2 and "nothing there" in missing.output


def test_commit_takes_a_template_with_variables(home: Path, tmp_path: Path) -> None:
    """`commit` renders a template (by --template or by its extension) with --var, then commits what it made."""
    from click.testing import CliRunner

    from infrakit import cli
    from tests.conftest import EXAMPLES

    template = tmp_path / "cattle.yaml.j2"
    template.write_text((EXAMPLES / "cattle.yaml").read_text().replace("size: 5", "size: {{ var('size') }}"))
    runner = CliRunner()
    done = runner.invoke(cli.cli, ["commit", str(template), "--var", "size=3"])
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "Committed cattle: Managing 3 instances\n"
    plain = tmp_path / "cattle.txt"
    plain.write_text(template.read_text())
    bigger = runner.invoke(cli.cli, ["commit", str(plain), "--template", "--var", "size=4", "--pretend"])
    assert bigger.stdout == "Committing cattle would involve: Adding 1 instances to increase the group size to 4\n"
    missing = runner.invoke(cli.cli, ["commit", str(template)])
    assert missing.exit_code == 2 and len(missing.stderr.splitlines()) == 1 and "--var size=" in missing.stderr
