"""Fixtures of the browsing tests: the two real studies of :mod:`browse_helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest
from browse_helpers import Studies, copy_studies, make_studies


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    return make_studies(tmp_path_factory.getbasetemp())


@pytest.fixture
def studies_copy(studies: Studies, tmp_path: Path) -> Studies:
    return copy_studies(studies, tmp_path / "copy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the real studies wait for them (~15-40 s, once per session): slow."""
    here = Path(__file__).parent
    for item in items:
        uses = getattr(item, "fixturenames", ())
        if item.path.is_relative_to(here) and ({"studies", "studies_copy"} & set(uses)):
            item.add_marker(pytest.mark.slow)
