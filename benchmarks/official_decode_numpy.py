"""The faithful numpy port of the official HRNet decoding lives in the package (the CLI's `bench` uses it
too): :mod:`hrnet_fast.baselines.official_numpy`. Re-exported here for the benchmark scripts."""
from hrnet_fast.baselines.official_numpy import *  # noqa: F401,F403
from hrnet_fast.baselines.official_numpy import (  # noqa: F401
    flip_back,
    get_final_preds,
    get_max_preds,
    official_decode,
    official_flip_merge,
    transform_preds,
)
