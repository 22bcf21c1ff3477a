"""``infrakit.core.instances.check_json``: what a plugin may store or send is JSON every reader reads back."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from infrakit.core import instances


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, math.nan]}, "Properties.a[1]"),
        ({"a": math.inf}, "Properties.a"),
        ({"a": 10**400}, "Properties.a"),
        ({"a": "\udfff"}, "Properties.a"),
        ({"\ud800": 1}, "Properties"),
        ({1: "a"}, "Properties"),
    ],
)
def test_refused_naming_the_path(value: Any, path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: "):
        instances.check_json(value, field="Properties")


@pytest.mark.parametrize("value", [None, True, 0, -(2**63), 1.5e308, "é\U0001f600", [], {"a": {"b": [1, "c"]}}])
def test_json_passes(value: Any) -> None:
    instances.check_json(value, field="Properties")
