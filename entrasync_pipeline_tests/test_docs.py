"""Docs stay true: every test RELIABILITY.md names exists; the README keeps its two-command quickstart."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "entrasync_pipeline_tests").rglob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE))
    return names


def test_reliability_names_only_existing_tests() -> None:
    named = set(re.findall(r"`(test_\w+)`", (REPO / "RELIABILITY.md").read_text()))
    assert named and not named - _defined_tests(), sorted(named - _defined_tests())


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```", 2)[1]
    assert block.strip().splitlines() == ["make demo", "make test"]


def test_the_production_instance_config_is_valid_dagster_config(monkeypatch) -> None:
    import yaml
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(var, "x")
    for name in ("deploy/dagster.production.yaml", "dagster.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        result = process_config(dagster_instance_config_schema(), config)
        assert result.success, (name, [e.message for e in result.errors])


def test_the_systemd_units_run_the_three_services() -> None:
    units = {p.name: p.read_text() for p in (REPO / "deploy" / "systemd").glob("*.service")}
    assert any("dagster-webserver" in u for u in units.values())
    assert any("dagster-daemon run" in u for u in units.values())
    assert any("dagster api grpc -m entrasync_pipeline.definitions" in u for u in units.values())
    assert all("EnvironmentFile=/etc/entrasync/entrasync.env" in u for u in units.values())
