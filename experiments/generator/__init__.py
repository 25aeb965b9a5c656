"""Synthetic DNS sites: Zeek dns.log days, intel lists and site.toml per simulated data holder."""

from experiments.generator.sites import generate_sites

__all__ = ["generate_sites"]
