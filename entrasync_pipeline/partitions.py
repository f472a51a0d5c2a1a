"""Sync profiles are static partitions (DESIGN.md §1): one per profile in the config.

The names come from ``$ENTRASYNC_CONFIG`` when the code location loads; without a config the
location still loads (for tests and validation) with a single ``default`` partition.
"""


import dagster as dg

from entrasync_pipeline.settings import configured_profile_names

PROFILES = dg.StaticPartitionsDefinition(configured_profile_names())
