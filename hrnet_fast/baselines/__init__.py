"""Faithful ports of the official HRNet code paths that hrnet_fast replaces: the baselines of the benchmarks."""
