"""LexDPR: Korean legal-domain dense passage retrieval as a Dagster pipeline.

The library layer (``sources``, later ``text``, ``citations``, ``pairs``, ``models``, ``metrics``, ``search``) has no
Dagster imports; ``assets``, ``resources``, ``schedules`` and ``definitions`` are the thin Dagster layer over it.
"""

__version__ = "0.1.0"
