"""The webhook target policy, the connect-time guard, secrets and signatures, without a server."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import httpcore
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vidjobs.settings import SettingsError
from vidjobs.webhooks.secrets import Sealer, SecretKeysMissing, generate_key, new_secret, sign
from vidjobs.webhooks.settings import DispatchSettings, TargetPolicy
from vidjobs.webhooks.targets import (
    GuardedBackend,
    TargetRefused,
    address_refusal,
    check_url,
    parse_networks,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("ip", "refused"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.20.30.40", "private"),
        ("172.16.0.1", "private"),
        ("fd00:ec2::254", "private"),
        ("100.100.100.200", "not a public one"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),
    ],
)
def test_addresses_that_are_not_public_are_refused(ip: str, refused: str | None) -> None:
    why = address_refusal(ipaddress.ip_address(ip))
    if refused is None:
        assert why is None
    else:
        assert why is not None
        assert refused in why


def test_an_allowed_network_lets_its_addresses_through_and_no_others() -> None:
    allowed = parse_networks("10.20.0.0/16, ::1/128")
    assert address_refusal(ipaddress.ip_address("10.20.1.2"), allowed) is None
    assert address_refusal(ipaddress.ip_address("::1"), allowed) is None
    assert address_refusal(ipaddress.ip_address("10.21.0.1"), allowed) == "a private address"
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allowed) == "a loopback address"


def test_a_bad_network_or_key_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="VIDJOBS_WEBHOOK_ALLOW_NETWORKS"):
        TargetPolicy(allow_networks="10.0.0.0/8,not-a-net")
    with pytest.raises(SettingsError, match="VIDJOBS_WEBHOOK_SECRET_KEYS"):
        DispatchSettings(secret_keys="short")


@pytest.mark.parametrize(
    ("url", "https_only", "error"),
    [
        ("https://example.com/h", True, None),
        ("http://example.com/h", False, None),
        ("http://example.com/h", True, "https://"),
        ("https://u:p@example.com/h", True, "credentials"),
        ("https:///h", True, "no host"),
        ("https://example.com:99999/h", True, "not a URL"),
        ("https://example.com/h#x", True, "fragment"),
        ("https://exämple.com/h", True, "ASCII"),
    ],
)
def test_urls_are_checked_for_form(url: str, https_only: bool, error: str | None) -> None:
    policy = TargetPolicy(allow_http=not https_only)
    if error is None:
        assert check_url(url, policy)[0] == "example.com"
    else:
        with pytest.raises(TargetRefused, match=error):
            check_url(url, policy)


async def test_the_connect_time_guard_refuses_a_name_that_resolves_inward() -> None:
    backend = GuardedBackend(TargetPolicy())
    with pytest.raises(httpcore.ConnectError, match=r"localhost resolves to .*loopback"):
        await backend.connect_tcp("localhost", 80, timeout=2)
    with pytest.raises(httpcore.ConnectError, match="unix socket"):
        await backend.connect_unix_socket("/run/docker.sock")


def test_secrets_are_sealed_and_open_only_with_the_keys() -> None:
    first, second = generate_key(), generate_key()
    secret = new_secret()
    assert secret.startswith("whsec_")
    sealed = Sealer(first).seal(secret)
    assert secret not in sealed
    assert Sealer(f"{second},{first}").open(sealed) == secret, "an older key still opens"
    with pytest.raises(ValueError, match="does not open"):
        Sealer(second).open(sealed)
    with pytest.raises(SecretKeysMissing, match="vidjobs webhooks keygen"):
        Sealer("")


def test_two_secrets_sign_and_either_verifies_a_wrong_one_does_not() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    body = '{"type":"job.completed"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign([new, old], "msg_1", now, body),
    }
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("completed", "failed"), headers)


def test_a_bad_key_is_not_echoed_in_the_error() -> None:
    with pytest.raises(SettingsError) as refused:
        DispatchSettings(secret_keys="not-a-key-but-maybe-a-password")
    assert "not-a-key-but-maybe-a-password" not in str(refused.value)
    assert "not shown" in str(refused.value)
