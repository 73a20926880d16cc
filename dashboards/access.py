"""Who may see which clients.

Without authentication (the default: the dashboards bind to 127.0.0.1 and whoever reaches
them is the MSP) every client is visible. With Streamlit's OIDC login configured (an `[auth]`
section in `.streamlit/secrets.toml`, docs/dashboards.md), a user must log in, and sees only
the clients that `[aw_access]` grants to their e-mail address:

    [aw_access]
    "noc@msp.example" = ["*"]          # every client, and the MSP roll-up
    "it@acme.example" = ["acme"]       # only acme

A logged-in user that `[aw_access]` does not name sees nothing. The MSP roll-up aggregates
every client, so only users granted "*" see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import streamlit as st

EVERY_CLIENT = "*"


@dataclass(frozen=True)
class Access:
    """The clients one viewer may see; `every_client` also unlocks the MSP roll-up."""

    tenants: tuple[str, ...]
    every_client: bool
    user: str | None = None

    def allows(self, tenant_id: str) -> bool:
        return tenant_id in self.tenants


def auth_configured() -> bool:
    """An `[auth]` section exists in the app's secrets."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # StreamlitSecretNotFoundError: no secrets file at all
        return False


def require_login() -> None:
    """With authentication configured, stop the run with a login button until logged in."""
    if not auth_configured() or st.user.get("is_logged_in", False):
        return
    st.title("Alert Whisperer")
    st.write("Log in to see your clients' alert noise and patch compliance.")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()


def account_menu() -> None:
    """Who is logged in, and a way out (only with authentication configured)."""
    if auth_configured() and st.user.get("is_logged_in", False):
        st.sidebar.caption(f"Logged in as {st.user.get('email') or st.user.get('name') or '?'}")
        st.sidebar.button("Log out", on_click=st.logout)


def grants(table: Mapping[str, object], email: str) -> tuple[bool, set[str]]:
    """(every client?, named clients) that the `[aw_access]` table gives `email`."""
    entry = table.get(email) or table.get(email.lower()) or []
    names = [entry] if isinstance(entry, str) else list(entry) if isinstance(entry, Sequence) \
        else []
    return EVERY_CLIENT in names, {str(n) for n in names if n != EVERY_CLIENT}


def current(all_tenants: Sequence[str]) -> Access:
    """The viewer's access among `all_tenants`."""
    if not auth_configured():
        return Access(tuple(all_tenants), every_client=True)
    email = str(st.user.get("email") or "")
    table = st.secrets.get("aw_access", {})
    every, named = grants(table if isinstance(table, Mapping) else {}, email) if email \
        else (False, set())
    visible = tuple(t for t in all_tenants if every or t in named)
    return Access(visible, every_client=every, user=email or None)
