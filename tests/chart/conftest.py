from __future__ import annotations

import pytest

from tests.chart.helm import Render, everything_values, render


@pytest.fixture(scope="session")
def default() -> Render:
    return render()


@pytest.fixture(scope="session")
def everything() -> Render:
    return render(everything_values())
