"""Fixtures of the publish tests: the story tests' real projects (SQLite DB, tile cache of real imagery), published."""

from __future__ import annotations

from pathlib import Path

import pytest

from amberwatch.publish.edition import Edition, PublishOptions, publish
from tests.story.conftest import DatedFixture, StoryFixture, make_dated_db, make_story_db


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> StoryFixture:
    """An undated project: one finished scan, 12 detections, two 4x4 patches of real z18 imagery in its cache."""
    return make_story_db(tmp_path_factory.mktemp("publish-db"))


@pytest.fixture(scope="session")
def dated_project(tmp_path_factory: pytest.TempPathFactory) -> DatedFixture:
    """A project scanned at two imagery dates (see tests.story.conftest)."""
    return make_dated_db(tmp_path_factory.mktemp("publish-dated"))


@pytest.fixture(scope="session")
def edition(project: StoryFixture, tmp_path_factory: pytest.TempPathFactory) -> Edition:
    """The undated project published once (read-only for the tests)."""
    return publish(project.db, tmp_path_factory.mktemp("published") / "site", PublishOptions())


def published_file(edition: Edition, name: str) -> Path:
    """A file of the published folder."""
    return edition.out_dir / name
