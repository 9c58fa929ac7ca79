"""Energy and latency per inference on neuromorphic targets, from measured activity.

``targets`` (TOML profiles with citations) -> ``placement`` (neurons onto cores, spike traffic) ->
``model.estimate`` (joules and seconds per inference) with ``workload`` (NeuroBench-style metrics)
and ``baselines`` (the ANN twin on conventional hardware) beside it -> ``report`` (Markdown, HTML,
PNG, JSON). See docs/energy.md.
"""
