"""The dbt projects of one code location, for what is shared between them (cancel_rescue_job,
rescue_report_sensor): a rescue's models are looked up in its own project's manifest (two
projects installing the same dbt package both have its models' unique_ids, under different
asset keys)."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject

from rescue_defs.assets.dbt import load_manifest, model_asset_keys
from rescue_defs.planning.manifest import DbtManifest


class LocationProjects:
    def __init__(self, projects: Sequence[DbtProject]):
        self._paths = [(str(p.manifest_path), str(p.project_dir)) for p in projects]

    def _manifests(self) -> list[DbtManifest]:
        return [load_manifest(path, folder) for path, folder in self._paths]

    def manifest_of(self, record: Mapping[str, Any]) -> DbtManifest:
        """The manifest of the record's project; the first project's for a record written
        before records named their project."""
        manifests = self._manifests()
        name = record.get("project")
        return next((m for m in manifests if name and m.project_name == name), manifests[0])

    def keys_of(self, record: Mapping[str, Any]) -> dict[str, dg.AssetKey]:
        return model_asset_keys(self.manifest_of(record))
