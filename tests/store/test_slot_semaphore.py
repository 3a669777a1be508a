"""SlotSemaphore: N flock'd slots across processes, and the busy count it hands out."""
from __future__ import annotations

import multiprocessing
import time

import pytest

from falconproc.errors import ServiceOverloaded
from falconproc.locks import SlotSemaphore


def _hold(directory, seconds, ready):
    with SlotSemaphore(directory, "image", 2).acquire(5):
        ready.set()
        time.sleep(seconds)


def test_busy_counts_the_slots_held_elsewhere(tmp_path):
    slots = SlotSemaphore(tmp_path, "image", 2)
    with slots.acquire(1) as busy:
        assert busy == 1  # alone
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path, 2.0, ready))
    holder.start()
    try:
        assert ready.wait(5)
        with slots.acquire(1) as busy:
            assert busy == 2  # the other process holds the other slot
            with pytest.raises(ServiceOverloaded):  # and none is left
                with SlotSemaphore(tmp_path, "image", 2).acquire(0.2):
                    pass
    finally:
        holder.join(5)
    with slots.acquire(1) as busy:
        assert busy == 1  # released by the holder's exit (and our probes left no lock behind)
