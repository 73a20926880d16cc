"""New lake files → runs that stage their receive days (downstream assets follow by automation).

The sensor lists the lake's `raw/alerts` and `raw/duplicates` files every 20 s. Its cursor
keeps, per receive date, a digest of the day's file names; a day whose digest changed has new
files. All changed days go into one run over the range of days they span (`raw_events`
stages a range in one run, and only the files it lacks), keyed by the digests so a tick that
sees nothing new requests nothing.
"""


import hashlib
import json
from collections import defaultdict

import dagster as dg

from pipelines.assets import RAW
from pipelines.resources import PlatformResource
from warehouse import staging
from warehouse.lake import LakeError

RAW_JOB = dg.define_asset_job("stage_raw_events", selection=dg.AssetSelection.assets(RAW),
                              description="Stage new lake files of a range of receive days.")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def day_digests(files: list[staging.LakeFile]) -> dict[str, str]:
    names: dict[str, list[str]] = defaultdict(list)
    for f in files:
        names[f.day.isoformat()].append(f.path)
    return {day: hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]
            for day, paths in names.items()}


@dg.sensor(job=RAW_JOB, minimum_interval_seconds=20,
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
    changed = sorted(day for day, digest in digests.items() if seen.get(day) != digest)
    if not changed:
        return dg.SkipReason("no new lake files")
    first, last = changed[0], changed[-1]
    run_key = hashlib.sha256(json.dumps({d: digests[d] for d in changed}).encode()).hexdigest()
    request = dg.RunRequest(run_key=run_key[:32],
                            tags={RANGE_START: first, RANGE_END: last})
    context.log.info(f"new lake files on {len(changed)} day(s): {first} … {last}")
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(digests))
