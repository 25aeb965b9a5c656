"""Experiment scripts: synthetic sites, simulation runs, benchmarks."""
