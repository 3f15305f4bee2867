"""Before a long run, `bench` says about how long it takes, from the timings the catalog records."""

from __future__ import annotations

import pytest
from conftest import bench

from bench.cli.common import _simulated
from bench.core import registry
from bench.workflows import timings

RECORDED = [
    timings.Timing("scbig", "default", "cpu", "norman_subset", 3375, 500, 1, 110.0, "test"),
    timings.Timing("scbig", "fast", "cpu", "synthetic", 3000, 1000, 1, 9.0, "test"),
    timings.Timing("linear", "default", "cpu", "norman_subset", 3375, 500, 1, 0.1, "test"),
]


def test_a_recorded_dataset_gives_its_own_time():
    seconds, timing = timings.per_run("scbig", None, "cpu", "norman_subset", 3375, 500, RECORDED)
    assert (seconds, timing.dataset) == (110.0, "norman_subset")


def test_another_dataset_scales_by_cells_times_genes():
    seconds, _ = timings.per_run("scbig", "default", "cpu", "other", 6750, 1000, RECORDED)
    assert seconds == 440.0  # 110 s on 3375 x 500, four times the matrix


def test_no_timing_for_another_preset_or_device():
    assert timings.per_run("scbig", "paper", "cpu", "norman_subset", 3375, 500, RECORDED) is None
    assert timings.per_run("scbig", "default", "cuda", "norman_subset", 3375, 500, RECORDED) is None


def test_the_announcement_of_a_long_run():
    line = timings.announcement(["scbig", "linear", "mystery"], None, "cpu", "norman_subset", (3375, 500), 5, 2,
                                RECORDED)
    # 5 x (110 + 0.1) s over 2 jobs = 275.25 s
    assert line == ("expected: about 4m35s for 15 run(s), 2 at a time, on cpu (scbig ~1m50s per run on quiet cores; "
                    "measured on norman_subset, bench/catalog/timings.csv); no recorded timing for mystery")


def test_the_announcement_scales_by_the_load_it_measured_and_says_so():
    """A scBIG default run announced as 1m50s took 29 min at load 8 on 2 cores: beside 8 busy cores, one
    run's thread gets 2 / 9 of a core's share, so the estimate is 4.5 times the quiet one."""
    line = timings.announcement(["scbig"], None, "cpu", "norman_subset", (3375, 500), 1, 1, RECORDED,
                                slowdown=4.5, busy=8.0)
    assert line.startswith("expected: about 8m15s for 1 run(s), 1 at a time, on cpu: 1m50s on quiet cores, "
                           "× 4.5 for the 8.0 cores other work keeps busy now (scbig ~1m50s per run on quiet")
    assert timings.announcement(["scbig"], "fast", "cpu", "synthetic", (3000, 1000), 5, 1, RECORDED,
                                slowdown=1.5, busy=1.0) is not None  # 45 s quiet is over a minute at this load


def test_the_slowdown_is_the_busy_threads_over_the_usable_cores(monkeypatch):
    from bench.core import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.slowdown(busy=8.0, jobs=1, threads=1) == 4.5
    assert threads.slowdown(busy=0.0, jobs=2, threads=1) == 1.0  # the runs fit the cores
    assert threads.slowdown(busy=1.0, jobs=2, threads=1) == 1.5


def test_short_runs_are_not_announced():
    assert timings.announcement(["scbig"], "fast", "cpu", "synthetic", (3000, 1000), 5, 1, RECORDED) is None


def test_every_recorded_timing_names_a_card_and_a_preset_it_has():
    recorded = timings.recorded()
    assert len(recorded) >= 10
    cards = registry.all_cards()
    for timing in recorded:
        assert timing.model in cards, timing
        assert timing.preset in cards[timing.model].preset_names, timing
        assert timing.device in ("cpu", "cuda") and timing.seconds > 0 and timing.cells * timing.genes > 0


@pytest.mark.slow
def test_the_simulator_says_it_is_one(workdir):
    assert "simulated by bench's simulator" in _simulated("synthetic")
    assert _simulated("norman_subset") == ""
    out = bench("run", "--model", "mean", "--dataset", "synthetic", "--no-track", **workdir)
    assert out.returncode == 0 and out.stdout.startswith("dataset: synthetic (simulated by bench's simulator")
