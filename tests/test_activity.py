"""Activity counts: per-sample figures from totals, as every simulator records them."""

from toolchain.activity import Activity, LayerCounts

STATIC = LayerCounts("dense1", "dense", 10, 30, 3, 10, 0.0, 0.0, 0.0, 0.0, 0.0, graded_input=True)


def test_per_sample_counts_from_totals_by_hand():
    counts = LayerCounts.from_totals(
        STATIC, spikes=12, synops=90, active=50, events=8, samples=4, time_steps=8
    )
    # totals / 4 samples; idle = 10 neurons x 8 steps - 12.5 active
    assert (counts.spikes_per_sample, counts.synops_per_sample, counts.input_events_per_sample) == (
        3,
        22.5,
        2,
    )
    assert (counts.active_updates_per_sample, counts.idle_updates_per_sample) == (12.5, 67.5)
    assert (counts.name, counts.neurons, counts.graded_input) == ("dense1", 10, True)


def test_no_samples_means_no_counts():
    counts = LayerCounts.from_totals(STATIC, spikes=0, synops=0, active=0, events=0, samples=0, time_steps=8)
    assert counts.idle_updates_per_sample == 0.0 and counts.spikes_per_sample == 0.0


def test_activity_round_trips_through_its_dict():
    activity = Activity("net", "reference", 4, 8, (STATIC,), {"k": 1})
    assert Activity.from_dict(activity.to_dict()) == activity
