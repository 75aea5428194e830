"""The one-thread rule for LAPACK under load (ntkcheck._threads.blas_contended).

The 1-minute load average counts this process itself, up to one unit per BLAS thread, so the
rule must not fire on an otherwise idle machine (it did: at load 1.3 from our own run a 2-thread
QR went to one thread and took twice as long), and must fire when other processes keep at least
one core busy (at load 3-4 on 2 cores a 2-thread QR took 39 s against 6.8 s on one thread).
"""

from __future__ import annotations

import os

import pytest

from ntkcheck import _threads


class _Controller:
    def __init__(self, threads: int):
        self.threads = threads

    def info(self):
        return [{"user_api": "blas", "num_threads": self.threads}]


@pytest.mark.parametrize("threads, load, expected", [
    (2, 0.0, False), (2, 1.3, False), (2, 2.0, False), (2, 2.9, False),  # our own load
    (2, 3.0, True), (2, 4.5, True),                                       # others: >= 1 core
    (1, 9.0, False),                                                      # one thread already
])
def test_contended_only_when_others_keep_a_core_busy(monkeypatch, threads, load, expected):
    monkeypatch.setattr(_threads, "_controller", lambda: _Controller(threads))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert _threads.blas_contended() is expected
