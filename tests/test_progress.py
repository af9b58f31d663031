"""Progress: a redrawn line on a terminal, one line per round when forced, else silent."""

import io

import pytest

from ppxgb.training.progress import Progress, default_progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _run(progress, clock, rounds=4, step=2.0):
    progress.start(rounds)
    for i in range(rounds):
        clock.t += step
        progress.update(i, {"loss": 0.123456, "trees": i + 1, "skip": [1, 2]})
    progress.close()


def test_tty_redraws_one_line_with_eta():
    stream, clock = FakeTTY(), Clock()
    _run(Progress(stream=stream, clock=clock), clock)
    out = stream.getvalue()
    assert out.count("\r") == 4 and out.endswith("\n") and out.count("\n") == 1
    first = out.split("\r")[1]
    assert "round 1/4" in first and "elapsed 2.0s" in first and "eta 6.0s" in first
    assert "loss=0.1235" in first and "trees=1" in first and "skip" not in first
    assert "round 4/4 [####################] 100%" in out and "eta 0.0s" in out


@pytest.mark.parametrize("isatty", [False, None])
def test_silent_when_not_a_terminal(isatty):
    stream, clock = io.StringIO(), Clock()
    if isatty is False:
        stream.isatty = lambda: False
    progress = Progress(stream=stream, clock=clock)
    _run(progress, clock)
    assert stream.getvalue() == ""
    assert progress.done == 4  # it still keeps count


def test_forced_on_a_pipe_writes_plain_lines():
    stream, clock = io.StringIO(), Clock()
    _run(Progress(stream=stream, enabled=True, clock=clock), clock, rounds=3)
    lines = stream.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["round 1/3", "round 2/3", "round 3/3"]
    assert "\r" not in stream.getvalue()


def test_forced_off_on_a_terminal():
    stream, clock = FakeTTY(), Clock()
    _run(Progress(stream=stream, enabled=False, clock=clock), clock)
    assert stream.getvalue() == ""


def test_unknown_total_and_long_times():
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream=stream, enabled=True, clock=clock)
    progress.start(None)
    clock.t += 3725
    progress.update(0)
    assert stream.getvalue() == "round 1 elapsed 1h02m\n"


def test_default_progress_and_forced_tty_style():
    assert default_progress(io.StringIO()).enabled is False
    assert default_progress(FakeTTY()).enabled is True
    stream, clock = io.StringIO(), Clock()
    _run(Progress(stream=stream, enabled=True, tty=True, clock=clock), clock, rounds=2)
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")
