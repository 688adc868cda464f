"""The thin Dagster layer: one module per stage group, each a call into the library."""

import warnings

import dagster as dg

# Observable source assets, include_sources and Output(data_version=…) are marked beta; dagster is pinned.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
