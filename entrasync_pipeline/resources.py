"""The Dagster resource: config fields only; it builds the profile runtimes (STYLE.md §2.5)."""


import dagster as dg
from pydantic import Field

from entrasync_pipeline.settings import Settings, load_settings
from entrasync_pipeline.sync import Profile


class EntrasyncResource(dg.ConfigurableResource):
    """Where the entrasync config lives; secrets are read from the env vars the config names."""

    config_path: str = Field(description="Path of the entrasync YAML config (ENTRASYNC_CONFIG).")

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def profile(self, name: str) -> Profile:
        return Profile(name, self.settings())
