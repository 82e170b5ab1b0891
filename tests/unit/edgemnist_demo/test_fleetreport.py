"""The fleet simulator's verdict: what saturated first, from a run's figures."""

from __future__ import annotations

from edgemnist_demo.fleetreport import saturation


def figures(offered=1000, lag_end=0, behind=0.5, **cpu):
    return {"offered_msgs_per_s": offered, "generator_behind_s": behind, "machine_busy_pct": 90,
            "lag": {"at_load_end": lag_end}, "cpu_pct_of_one_core": {"hub": 0, "hub0": 0} | cpu}  # fmt: skip


def test_hubs_that_keep_up_saturate_nothing():
    assert saturation(figures(hub0=60, postgres=20), 1000, 2)[0] == "none"


def test_a_growing_lag_names_the_busiest_process_against_its_ceiling():
    assert saturation(figures(lag_end=50_000, hub0=98, postgres=60, broker=30), 1000, 2)[0] == "hub CPU"
    assert saturation(figures(lag_end=50_000, hub0=40, hub1=45, postgres=190), 1000, 2)[0] == "PostgreSQL"


def test_a_generator_that_offers_less_than_asked_is_named():
    verdict, note = saturation(figures(offered=600, generator=190), 1000, 2)
    assert verdict == "generator" and "600/s of 1,000/s" in note
