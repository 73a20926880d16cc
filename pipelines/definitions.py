"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import ALL_ASSETS
from pipelines.checks import ALL_CHECKS
from pipelines.exports import EXPORT_ASSETS
from pipelines.resources import resources
from pipelines.sensors import (
    RAW_JOB,
    SSM_SNAPSHOT_JOB,
    SSM_STAGE_JOB,
    lake_files_sensor,
    ssm_daily,
)

# Evaluates the assets' automation conditions (everything downstream of the staged days).
automation = dg.AutomationConditionSensorDefinition(
    "update_marts_on_new_data",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Runs the correlation, the models and the publish step after new raw days.",
)

defs = dg.Definitions(
    assets=[*ALL_ASSETS, *EXPORT_ASSETS],
    asset_checks=ALL_CHECKS,
    jobs=[RAW_JOB, SSM_STAGE_JOB, SSM_SNAPSHOT_JOB],
    schedules=[ssm_daily],
    sensors=[lake_files_sensor, automation],
    resources=resources(),
    # Steps of one run share the build file; they run one after another in one process.
    executor=dg.in_process_executor,
    # Runs print INFO and above (the default, DEBUG, is a line per engine event in the
    # `aw up` log); the UI keeps every event either way.
    loggers={"console": dg.colored_console_logger.configured({"log_level": "INFO"})},
)
