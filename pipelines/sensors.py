"""New lake files → runs that stage them (downstream assets follow by automation), and the
daily SSM snapshot schedule.

The sensor lists the lake's `raw/alerts` and `raw/duplicates` files every 20 s. Its cursor
keeps, per receive date, a digest of the day's file names; a day whose digest changed has new
files. All changed days go into one run over the range of days they span (`raw_events`
stages a range in one run, and only the files it lacks), keyed by the digests so a tick that
sees nothing new requests nothing. A change in the SSM snapshots of the lake (a daily
snapshot, or a demo history) requests a run that stages them.
"""


import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime

import dagster as dg

from pipelines.assets import RAW, SSM_SNAPSHOT, SSM_STAGED
from pipelines.resources import PlatformResource
from warehouse import staging
from warehouse.lake import LakeError
from warehouse.ssm import store as ssm_store
from warehouse.ssm.collect import snapshot_due

SSM_STAGE_JOB = dg.define_asset_job(
    "stage_ssm_snapshots", selection=dg.AssetSelection.assets(SSM_STAGED),
    description="Load the SSM snapshots of the lake into the build file.")
SSM_SNAPSHOT_JOB = dg.define_asset_job(
    "take_ssm_snapshot", selection=dg.AssetSelection.assets(SSM_SNAPSHOT),
    description="Take today's SSM patch snapshot of every tenant.")
# SSM keeps only the current state: one snapshot a day builds the trend.
ssm_daily = dg.build_schedule_from_partitioned_job(
    SSM_SNAPSHOT_JOB, hour_of_day=1, minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's SSM patch snapshot at 01:30 UTC.")
RAW_JOB = dg.define_asset_job("stage_raw_events", selection=dg.AssetSelection.assets(RAW),
                              description="Stage new lake files of a range of receive days.")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SSM_CURSOR_KEY = "ssm"


def day_digests(files: list[staging.LakeFile]) -> dict[str, str]:
    names: dict[str, list[str]] = defaultdict(list)
    for f in files:
        names[f.day.isoformat()].append(f.path)
    return {day: _digest(paths) for day, paths in names.items()}


def _digest(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]


@dg.sensor(jobs=[RAW_JOB, SSM_STAGE_JOB, SSM_SNAPSHOT_JOB], minimum_interval_seconds=20,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Notices new lake files and stages their receive days.")
def lake_files_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource
                      ) -> dg.SensorResult | dg.SkipReason:
    try:
        files = staging.lake_files(platform.lake())
    except LakeError as exc:
        return dg.SkipReason(f"lake not readable: {exc}")
    seen = json.loads(context.cursor) if context.cursor else {}
    digests = day_digests(files)
    ssm_digest = _digest(ssm_store.lake_listing(platform.lake()))
    changed = sorted(day for day, digest in digests.items() if seen.get(day) != digest)
    requests = []
    if changed:
        first, last = changed[0], changed[-1]
        run_key = hashlib.sha256(json.dumps({d: digests[d] for d in changed}).encode())
        requests.append(dg.RunRequest(run_key=run_key.hexdigest()[:32], job_name=RAW_JOB.name,
                                      tags={RANGE_START: first, RANGE_END: last}))
        context.log.info(f"new lake files on {len(changed)} day(s): {first} … {last}")
    if seen.get(SSM_CURSOR_KEY, _digest([])) != ssm_digest:
        requests.append(dg.RunRequest(run_key=f"ssm-{ssm_digest}", job_name=SSM_STAGE_JOB.name))
        context.log.info("SSM snapshots changed in the lake")
    now = datetime.now(UTC)
    if snapshot_due(platform.settings(), now):
        # the daily schedule's backstop: a fresh start or a new day takes today's snapshot
        today = now.date().isoformat()
        requests.append(dg.RunRequest(run_key=f"ssm-snapshot-{today}",
                                      job_name=SSM_SNAPSHOT_JOB.name, partition_key=today))
    if not requests:
        return dg.SkipReason("no new lake files")
    return dg.SensorResult(run_requests=requests,
                           cursor=json.dumps({**digests, SSM_CURSOR_KEY: ssm_digest}))
