"""The allocator tuning the training roles ask for (ppxgb.memory)."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from ppxgb.memory import keep_freed_memory as k; print(k(), k())"


def _run(**env):
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_tuning_can_be_turned_off():
    assert _run(PPXGB_MALLOC_TUNING="0") == ["False", "False"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuning_applies_once_on_glibc():
    assert _run(PPXGB_MALLOC_TUNING="1") == ["True", "True"]
