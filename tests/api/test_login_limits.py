"""Client addresses and the login limits.

X-Forwarded-For is read only through TRUSTED_PROXY_COUNT trusted proxies (0 by
default: the TCP peer, the header ignored), so a client can neither escape its
address's limit by rotating the header nor spend someone else's by naming their
address. Logins are also limited per username, from all addresses together;
attempts an address is refused do not count against the username.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient, APIRequestFactory

from devices.models import Device
from devices.throttles import client_address

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent.parent
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery staple"
PER_ADDRESS = 20  # LOGIN_RATE_PER_ADDRESS: 20/min
PER_USERNAME = 30  # LOGIN_RATE_PER_USERNAME: 30/min


def attempt(username="alice", password="wrong", *, address="198.51.100.1", forwarded_for=None, client=None):
    headers = {"REMOTE_ADDR": address}
    if forwarded_for is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded_for
    body = {"username": username, "password": password, "device_name": "laptop"}
    return (client or APIClient()).post(LOGIN, body, format="json", **headers)


@pytest.fixture
def trusted_proxies(settings):
    def trust(count):
        settings.REST_FRAMEWORK = {**django_settings.REST_FRAMEWORK, "NUM_PROXIES": count}

    return trust


def test_the_limits_are_the_documented_defaults():
    rates = django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates["login"] == f"{PER_ADDRESS}/min"
    assert rates["login_username"] == f"{PER_USERNAME}/min"
    assert django_settings.TRUSTED_PROXY_COUNT == 0
    assert django_settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


# The client address.


def request_from(address, forwarded_for=None):
    headers = {"REMOTE_ADDR": address}
    if forwarded_for is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return APIRequestFactory().post(LOGIN, **headers)


def test_without_trusted_proxies_the_address_is_the_peer_and_the_header_is_ignored():
    assert client_address(request_from("203.0.113.7")) == "203.0.113.7"
    assert client_address(request_from("203.0.113.7", "192.0.2.1")) == "203.0.113.7"
    assert client_address(request_from("203.0.113.7", "192.0.2.1, 192.0.2.2")) == "203.0.113.7"


def test_behind_one_proxy_the_address_is_the_entry_it_appended(trusted_proxies):
    trusted_proxies(1)
    # The client wrote "192.0.2.66"; the proxy appended the address it saw.
    assert client_address(request_from("10.0.0.2", "192.0.2.66, 203.0.113.7")) == "203.0.113.7"
    assert client_address(request_from("10.0.0.2", "203.0.113.7")) == "203.0.113.7"


def test_behind_two_proxies_the_address_is_the_second_entry_from_the_right(trusted_proxies):
    trusted_proxies(2)
    forwarded = "192.0.2.66, 203.0.113.7, 10.0.0.1"  # forged, the client, the outer proxy
    assert client_address(request_from("10.0.0.2", forwarded)) == "203.0.113.7"


# The per-address limit.


def test_rotating_x_forwarded_for_does_not_escape_the_address_limit(make_user):
    make_user("alice")
    statuses = [attempt(forwarded_for=f"192.0.2.{i}").status_code for i in range(PER_ADDRESS + 5)]

    assert statuses == [400] * PER_ADDRESS + [429] * 5


def test_naming_someone_elses_address_does_not_use_up_their_limit(make_user):
    make_user("alice")
    make_user("bob")
    for _ in range(PER_ADDRESS + 5):
        attempt("bob", address="198.51.100.66", forwarded_for="203.0.113.7")

    victim = attempt("alice", PASSWORD, address="203.0.113.7")

    assert victim.status_code == 201, victim.content


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(make_user, trusted_proxies):
    trusted_proxies(1)
    make_user("alice")
    proxy = "10.0.0.2"
    statuses = [
        attempt(address=proxy, forwarded_for=f"192.0.2.{i}, 203.0.113.7").status_code for i in range(PER_ADDRESS + 1)
    ]
    other_client = attempt("alice", PASSWORD, address=proxy, forwarded_for="203.0.113.8")

    assert statuses == [400] * PER_ADDRESS + [429]  # the forged entries changed nothing
    assert other_client.status_code == 201, other_client.content


def test_a_throttled_address_does_not_block_the_same_user_elsewhere(make_user):
    make_user("alice")
    for _ in range(PER_ADDRESS):
        attempt(address="198.51.100.66")
    assert attempt("alice", PASSWORD, address="198.51.100.66").status_code == 429

    elsewhere = attempt("alice", PASSWORD, address="203.0.113.7")

    assert elsewhere.status_code == 201, elsewhere.content


# The per-username limit.


def test_one_username_from_many_addresses_is_limited(make_user):
    make_user("alice")
    statuses = [attempt(address=f"192.0.2.{i}").status_code for i in range(PER_USERNAME)]
    blocked = attempt("alice", PASSWORD, address="203.0.113.7")

    assert statuses == [400] * PER_USERNAME
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "throttled"
    assert int(blocked["Retry-After"]) > 0
    assert not Device.objects.exists()
    assert attempt("bob", address="203.0.113.7").status_code == 400  # other usernames are not limited


def test_the_username_is_matched_without_case_or_surrounding_spaces(make_user):
    make_user("alice")
    for i in range(PER_USERNAME):
        attempt(["alice", "Alice", " ALICE "][i % 3], address=f"192.0.2.{i}")

    assert attempt("alice", PASSWORD, address="203.0.113.7").status_code == 429


def test_attempts_refused_for_the_address_do_not_count_for_the_username(make_user):
    """One address cannot lock a username out: only the attempts its own limit
    lets through count against the username, and those stay below its limit."""
    make_user("alice")
    from_one = [attempt(address="198.51.100.66").status_code for _ in range(PER_ADDRESS + 40)]
    assert from_one == [400] * PER_ADDRESS + [429] * 40

    assert attempt("alice", PASSWORD, address="203.0.113.7").status_code == 201
    left = PER_USERNAME - PER_ADDRESS - 1
    statuses = [attempt(address=f"192.0.2.{i}").status_code for i in range(left + 1)]
    assert statuses == [400] * left + [429]


def test_a_body_without_a_username_counts_for_the_address_only(make_user):
    client = APIClient()
    statuses = [
        client.post(LOGIN, {"username": ["alice"]}, format="json", REMOTE_ADDR="198.51.100.66").status_code
        for _ in range(PER_ADDRESS + 1)
    ]

    assert statuses == [400] * PER_ADDRESS + [429]


# The settings.

SETTINGS_PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.TRUSTED_PROXY_COUNT, s.REST_FRAMEWORK['NUM_PROXIES'], "
    "s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['login'], s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['login_username'])"
)


def load_settings(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES")}
    base.update(DJANGO_SETTINGS_MODULE="realtime_sync.settings", DEBUG="1")
    return subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_settings_read_the_proxy_count_and_the_rates():
    loaded = load_settings(
        TRUSTED_PROXY_COUNT="2", LOGIN_RATE_PER_ADDRESS="5/hour", LOGIN_RATE_PER_USERNAME=" 50 / min"
    )

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["2", "2", "5/hour", "50/min"]


@pytest.mark.parametrize(
    "env",
    [{"TRUSTED_PROXY_COUNT": "-1"}, {"LOGIN_RATE_PER_ADDRESS": "20"}, {"LOGIN_RATE_PER_USERNAME": "0/min"}],
    ids=["negative proxy count", "rate without period", "zero rate"],
)
def test_bad_values_stop_the_settings_from_loading(env):
    loaded = load_settings(**env)

    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr
    assert next(iter(env)) in loaded.stderr
