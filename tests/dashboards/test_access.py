"""No data yet, tenant isolation (the client filter never shows another client's data), and
access by login (`[auth]` + `[aw_access]` secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards.access import grants
from tests.dashboards.conftest import APP, PAGES, metrics, one, open_page, page_text, rows

OTHERS = ("globex", "initech", "hooli", "umbrella", "Globex", "Initech", "Hooli", "Umbrella")
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "dashboards", "client_secret": "not-a-secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
ACCESS = {"it@acme.example": ["acme"], "noc@msp.example": ["*"]}
TITLES = {"portfolio": "MSP portfolio", "scorecard": "Client scorecard",
          "incidents": "Incidents explorer", "patch": "Patch compliance",
          "settings": "Settings and what-if"}


@pytest.mark.parametrize("page", list(PAGES))
def test_nothing_published_yet(data_dir: Path, page: str) -> None:
    at = open_page(page)
    assert [t.value for t in at.title] == [TITLES[page]]
    assert "No data yet" in at.info[0].value
    assert "aw pipeline run" in at.info[0].value and "aw up --demo" in at.info[0].value
    assert not at.metric and not at.dataframe


@pytest.mark.parametrize("page", ["scorecard", "incidents", "patch", "settings"])
def test_client_filter_shows_only_that_client(marts, page: str) -> None:
    at = open_page(page, tenant="acme")
    if page == "settings":
        at.button[0].click().run()  # the backtest's tables too
        assert at.metric
    text = page_text(at)
    assert "acme" in text
    for other in OTHERS:
        assert other not in text, f"{other} on acme's {page} page"
    foreign = rows(marts, """SELECT incident_id FROM marts.fct_incidents
                             WHERE tenant_id <> 'acme' LIMIT 2000""")
    assert not any(r["incident_id"] in text for r in foreign)
    for frame in (d.value for d in at.dataframe):
        if "agg_key" in frame.columns:
            assert all(k.startswith("acme|") for k in frame["agg_key"])
        if "incident_id" in frame.columns:
            ids = [i for i in frame["incident_id"] if i]
            owners = rows(marts, """SELECT DISTINCT tenant_id FROM marts.fct_incidents
                                    WHERE list_contains(?, incident_id)""", ids)
            assert owners in ([], [{"tenant_id": "acme"}])


def test_another_clients_incident_id_shows_nothing(marts) -> None:
    theirs = one(marts, """SELECT incident_id FROM marts.fct_incidents
                           WHERE tenant_id = 'globex' AND counted LIMIT 1""")["incident_id"]
    at = open_page("incidents", tenant="acme")
    at.text_input(key="incident").set_value(theirs).run()
    assert f"No incident '{theirs}' for acme." in [i.value for i in at.info]
    assert len(at.dataframe) == 1  # the incident list only: no timeline
    assert "globex" not in page_text(at)


def _logged_in(email: str | None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets = {"auth": AUTH, "aw_access": ACCESS}
    if email is not None:
        at.user = {"is_logged_in": True, "email": email}
    return at


def test_login_is_required_when_auth_is_configured(on_fixture) -> None:
    at = _logged_in(None).run()
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.metric and not at.dataframe


def test_client_user_sees_only_granted_clients(on_fixture) -> None:
    at = _logged_in("it@acme.example")
    at.query_params["tenant"] = "globex"  # a shared link to another client is ignored
    at.run()
    assert not at.exception
    assert not metrics(at)  # no MSP roll-up: it aggregates every client
    assert at.dataframe[0].value["tenant_id"].tolist() == ["acme"]
    for page in ("scorecard", "incidents", "patch", "settings"):
        at.switch_page(PAGES[page]).run()
        assert at.selectbox(key="tenant").options == ["acme"]
        text = page_text(at)
        assert not any(other in text for other in OTHERS), page


def test_msp_user_sees_every_client_and_the_rollup(on_fixture) -> None:
    at = _logged_in("noc@msp.example").run()
    assert "Logged in as noc@msp.example" in [c.value for c in at.sidebar.caption]
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    assert "Noise reduction, weighted" in metrics(at)
    assert len(at.dataframe[0].value) == 5


def test_unknown_user_sees_no_client(on_fixture) -> None:
    at = _logged_in("someone@else.example").run()
    assert "No client is visible to you" in at.info[0].value
    at.switch_page(PAGES["scorecard"]).run()
    assert "No client is visible to you" in at.warning[0].value
    assert not at.metric


@pytest.mark.parametrize(("entry", "expected"), [
    (["*"], (True, set())),  # every client
    (["acme", "globex"], (False, {"acme", "globex"})),
    ("acme", (False, {"acme"})),  # a bare string is one client
    (None, (False, set())),  # not named: nothing
    (42, (False, set())),  # malformed: nothing
])
def test_grants(entry: object, expected: tuple[bool, set[str]]) -> None:
    table = {} if entry is None else {"it@acme.example": entry}
    assert grants(table, "it@acme.example") == expected
