"""Credentials-free only on loopback: with no API key and no page credentials the service is
open on 127.0.0.0/8, ::1 and localhost, and locked (403 with the reason) on any other HOST
unless API_PUBLIC / UI_PUBLIC open it on purpose."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from app.core.config import Settings, is_loopback

LOOPBACK = st.one_of(
    st.ip_addresses(v=4, network="127.0.0.0/8").map(str),
    st.just("::1"),
    st.sampled_from(["localhost", "LOCALHOST", "[::1]"]),
)
ELSEWHERE = st.one_of(
    st.ip_addresses().filter(lambda address: not address.is_loopback).map(str),
    st.sampled_from(["0.0.0.0", "::", "", "example.com", "captioner.internal", "127.0.0.1.nip.io"]),
)


def local(**values: object) -> Settings:
    """No Supabase settings: the page, the API and the CLI alone."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@given(LOOPBACK)
def test_on_loopback_the_demo_is_open(host: str) -> None:
    settings = local(host=host)

    assert is_loopback(host) and settings.loopback
    assert (settings.api_auth, settings.ui_auth) == ("open", "open")


@given(ELSEWHERE)
def test_elsewhere_nothing_is_open_without_credentials_or_an_opt_in(host: str) -> None:
    assert not is_loopback(host)
    assert (local(host=host).api_auth, local(host=host).ui_auth) == ("locked", "locked")
    keyed = local(host=host, api_keys="k1", ui_username="alice", ui_password="pw")
    assert (keyed.api_auth, keyed.ui_auth) == ("key", "basic")
    opened = local(host=host, api_public=True, ui_public=True)
    assert (opened.api_auth, opened.ui_auth) == ("open", "open")
    half = local(host=host, api_keys="k1")  # a key for the API does not open the page
    assert (half.api_auth, half.ui_auth) == ("key", "locked")


def test_every_address_of_127_8_is_loopback_and_the_wildcards_are_not() -> None:
    assert all(is_loopback(str(a)) for a in ipaddress.ip_network("127.0.0.0/29"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "0:0:0:0:0:0:0:0"))
