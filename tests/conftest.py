"""Fixtures shared by the test modules (their helpers: `tiny_runs`, `fixtures_data`, `known_dynamics`)."""

import pytest


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A feature cache shared by the tiny runs of one test module: the backbone runs once per data split."""
    return str(tmp_path_factory.mktemp("features"))
