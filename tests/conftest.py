"""Shared fixtures for every Python test tier (tests/e2e, tests/console, tests/image)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "lib"))

from harness import Palisade, RawSink, SmtpSink  # noqa: E402


@pytest.fixture
def palisade_factory(request):
    """Creates `Palisade` instances named after the test; all are stopped and removed after it."""
    made = []

    def make(config=None, start=True, suffix="", **kw):
        p = Palisade(request.node.name + suffix, config, **kw)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.cleanup()


@pytest.fixture
def sink_factory(request):
    made = []

    def make(extra_args=None, port=None):
        s = SmtpSink(request.node.name, extra_args, port).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


@pytest.fixture
def raw_sink_factory():
    made = []

    def make(**kw):
        s = RawSink(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
