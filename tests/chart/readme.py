"""The chart README's hand-written sections, so tests can run what it tells users to write."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.chart.helm import CHART_DIR

README = CHART_DIR / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, f"the chart README has no section '## {title}'"
    return match[1]


def code_blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(title), re.S)


def yaml_blocks(title: str) -> list[Any]:
    return [yaml.safe_load(block) for block in code_blocks(title, "yaml")]
