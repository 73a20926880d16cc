"""The what-if backtest: its input rebuilt from the marts is faithful, and its bounds."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from dashboards import data, whatif
from tests.dashboards.conftest import one

FAR_PAST, FAR_FUTURE = date(2000, 1, 1), date(2100, 1, 1)


@pytest.mark.parametrize("tenant", ["acme", "globex", "hooli"])
def test_replay_under_current_settings_reproduces_the_marts(marts, tenant: str) -> None:
    """Every event of the tenant replayed from fct_incident_events under its dim_tenants
    settings gives the funnel the pipeline published: the rebuilt input is faithful."""
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily")["d"]
    row = data.tenant_settings(tenant)
    assert row is not None
    current = whatif.settings_of(row)
    result = whatif.run(data.replay_events(tenant, end - timedelta(days=60), end), tenant,
                        current, current, FAR_PAST, FAR_FUTURE)
    expected = one(marts, """SELECT sum(events_accepted) AS events_accepted,
                                    sum(duplicates) AS duplicates, sum(alerts) AS alerts,
                                    sum(incidents) AS incidents, sum(too_late) AS too_late
                             FROM marts.fct_noise_daily WHERE tenant_id = ?""", tenant)
    assert {k: result.current["funnel"][k] for k in expected} == expected
    assert result.comparison["incidents"]["before"] == result.comparison["incidents"]["after"]
    assert result.comparison["splits"] == result.comparison["merges"] == []


def test_settings_of_dim_tenants(on_fixture) -> None:
    row = data.tenant_settings("globex")
    assert row is not None
    globex = whatif.settings_of(row)
    assert (globex.window, globex.key, globex.threshold) == (
        timedelta(minutes=10), ("asset", "signature"), 1)


@pytest.mark.parametrize(("per_day", "days", "limit", "expected"), [
    ([10, 10, 10], 3, 100, (1, 3)),  # all three days fit
    ([10, 10, 10], 2, 100, (2, 3)),  # only the days asked for
    ([60, 50, 40], 3, 100, (2, 3)),  # the latest day alone is 40, with the 2nd 90: stop there
    ([10, 10, 500], 3, 100, (3, 3)),  # one day over the limit: still that day (capped by LIMIT)
])
def test_replay_days_fit_the_limit(per_day: list[int], days: int, limit: int,
                                   expected: tuple[int, int]) -> None:
    frame = pd.DataFrame({"day": [date(2026, 11, d) for d in (1, 2, 3)], "events": per_day})
    first, last = expected
    assert whatif.replay_days(frame, days, limit) == (date(2026, 11, first),
                                                      date(2026, 11, last))


def test_replay_days_of_no_events() -> None:
    assert whatif.replay_days(pd.DataFrame({"day": [], "events": []}), 3) is None
