"""The pruning loop with a clock the test moves: what is due goes in bounded batches, /health says so."""

from __future__ import annotations

import threading
import time

import pytest

from edgemnist.errors import ConfigError
from edgemnist.testing.fakes import FakeClock
from metro_app.retention import DEFAULT_RETENTION, Pruner, RetentionPolicy
from metro_app.samples import make_image
from metro_app.settings import HubSettings
from metro_app.testing import metrics_window

DAY = 86400.0


def fill(store, windows=7, images=5, labelled=(0,)):
    store.write_batch(
        [metrics_window("CamA", k, images=20, uncertain=2, correct=18) for k in range(windows)], []
    )
    store.write_batch([], [make_image("CamA", i) for i in range(images)])
    for i in labelled:
        store.add_label(f"CamA/r1/i{i}", "3", "ana")


def test_nothing_is_due_until_the_clock_passes_each_kinds_period(store):
    fill(store)
    clock = FakeClock(time.time() + 6 * DAY)
    pruner = Pruner(store, RetentionPolicy(), batch=3, pause=0, clock=clock)
    assert pruner.sweep() and pruner.stats.windows_rolled_up == pruner.stats.images_pruned == 0

    clock.now = time.time() + 8 * DAY  # images (7 days) are due, windows (14 days) are not
    pruner.sweep()
    assert (pruner.stats.windows_rolled_up, pruner.stats.images_pruned) == (0, 4)
    assert store.counts()["images"] == 1 and store.counts()["metrics"] == 7

    clock.now = time.time() + 15 * DAY
    pruner.sweep()
    s = pruner.stats
    assert (s.windows_rolled_up, s.hourly_rows, s.sweeps) == (7, 3, 3)  # one hour, written by 3 batches
    assert s.batches == 2 + 3  # images: 3 + 2 examined; windows: 3 + 3 + 1, each batch at most 3 rows
    assert store.counts()["metrics"] == 0 and store.counts()["labels"] == 1
    [row] = store.retention().hourly()
    assert (row.windows, row.images, row.uncertain, row.labelled, row.correct) == (7, 140, 14, 140, 126)


def test_health_names_the_rows_pruned_per_kind_and_the_oldest_kept(store):
    fill(store, windows=2, images=3, labelled=(2,))
    pruner = Pruner(store, RetentionPolicy.parse("metrics=1h,images=1h"), pause=0,
                    clock=FakeClock(time.time() + 2 * 3600))  # fmt: skip
    pruner.sweep()
    h = pruner.as_dict()
    assert (h["windows_rolled_up"], h["images_pruned"], h["hourly_rows"]) == (2, 2, 1)
    assert h["oldest_window"] is None  # every window went into the roll-up
    assert h["oldest_image"].endswith("Z") and h["oldest_hourly"].endswith("Z")
    assert h["metrics_days"] == pytest.approx(1 / 24) and h["last_sweep"].endswith("Z")


def test_a_second_hub_waits_while_the_first_holds_the_lease(store):
    fill(store)
    clock = FakeClock(time.time() + 30 * DAY)
    first = Pruner(store, RetentionPolicy(), pause=0, clock=clock, holder="hub-a")
    second = Pruner(store, RetentionPolicy(), pause=0, clock=clock, holder="hub-b")
    assert first.sweep() and not second.sweep()
    assert second.stats.windows_rolled_up == 0 and first.stats.windows_rolled_up == 7


def test_off_prunes_nothing_and_the_run_returns_at_once(store):
    fill(store)
    pruner = Pruner(store, RetentionPolicy.parse("off"), clock=FakeClock(time.time() + 365 * DAY))
    pruner.run(threading.Event())  # returns: nothing to do
    assert pruner.sweep() and store.counts()["metrics"] == 7 and store.counts()["images"] == 5


def test_the_loop_sweeps_until_stopped(store):
    fill(store)
    stop = threading.Event()
    pruner = Pruner(store, RetentionPolicy(), pause=0, interval=0.05, clock=FakeClock(time.time() + 30 * DAY))
    thread = threading.Thread(target=pruner.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    while pruner.stats.sweeps < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and pruner.stats.sweeps >= 2
    assert (pruner.stats.windows_rolled_up, pruner.stats.images_pruned) == (7, 4)


@pytest.mark.parametrize(
    ("spec", "metrics", "images"),
    [(DEFAULT_RETENTION, 14 * DAY, 7 * DAY), ("metrics=36h", 36 * 3600.0, 7 * DAY),
     ("images=90m, metrics=off", None, 5400.0), ("OFF", None, None)],
)  # fmt: skip
def test_specs(spec, metrics, images):
    assert RetentionPolicy.parse(spec) == RetentionPolicy(metrics, images)


@pytest.mark.parametrize(
    ("spec", "says"),
    [("metrics=14", "'14' is not a duration"), ("metrics=-1d", "is not a duration"),
     ("metrics", "is not KIND=DURATION"), ("audit=1d", "unknown kind 'audit'"), ("", "empty")],
)  # fmt: skip
def test_bad_specs_name_the_flag_and_the_part(spec, says):
    with pytest.raises(ConfigError, match="--retention") as err:
        HubSettings(retention=spec)
    assert says in str(err.value)
