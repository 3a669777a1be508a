"""Fixtures for the video tests: the generated videos (tests/video/_videos.py)."""
from __future__ import annotations

import pytest

from tests.video._videos import make_all


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """name -> path of every generated video (see _videos.make_all)."""
    return make_all(tmp_path_factory.mktemp("videos"))
