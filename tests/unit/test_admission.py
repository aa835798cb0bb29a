"""The submit token bucket's arithmetic (Retry-After) and the per-tenant upload slots, no I/O."""

from __future__ import annotations

import pytest

from vidjobs.api.admission import TenantUploads
from vidjobs.api.problems import ApiError
from vidjobs.db.admission import Admission, seconds_until_token


@pytest.mark.parametrize(
    ("tokens", "rate_per_min", "seconds"),
    [
        (0.0, 60.0, 1),  # one a second: a second to wait
        (0.0, 6.0, 10),  # one per 10 s
        (0.5, 6.0, 5),  # half a token back already
        (0.99, 6.0, 1),  # a tenth of a second: rounded up to a whole second
        (0.0, 0.5, 120),  # one per two minutes
        (0.9999999999999, 60.0, 1),  # float dust never makes 0 while a token is missing
        (1.0, 6.0, 0),  # a token is there
        (2.5, 6.0, 0),
    ],
)
def test_seconds_until_a_token_is_back_rounds_up(
    tokens: float, rate_per_min: float, seconds: int
) -> None:
    assert seconds_until_token(tokens, rate_per_min) == seconds


def test_exactly_whole_waits_are_not_rounded_past_themselves() -> None:
    # 0.8 tokens missing at 12/min (0.2 a second) is 4 s, though 0.8 * 60 / 12 is 4.000000000000001.
    assert seconds_until_token(0.2, 12.0) == 4


def _admission(**over: object) -> Admission:
    values: dict[str, object] = {
        "tenant": "acme", "refused_by": None, "tokens": None, "rate_per_min": None,
        "burst": None, "pending": 0, "max_pending": None, "stored_bytes": 0,
        "max_stored_bytes": None,
    }  # fmt: skip
    values.update(over)
    return Admission(**values)  # type: ignore[arg-type]


def test_an_admission_says_its_wait_and_what_may_still_be_stored() -> None:
    assert _admission().retry_after_s == 0
    assert _admission().stored_bytes_left is None
    assert _admission(tokens=0.25, rate_per_min=30.0).retry_after_s == 2
    assert _admission(stored_bytes=700, max_stored_bytes=1000).stored_bytes_left == 300
    assert _admission(stored_bytes=1200, max_stored_bytes=1000).stored_bytes_left == 0


def test_a_tenant_gets_its_slots_and_no_more_others_are_not_affected() -> None:
    uploads = TenantUploads(per_tenant=2)
    with uploads.slot("a"), uploads.slot("a"):
        with pytest.raises(ApiError) as caught, uploads.slot("a"):
            pass
        assert caught.value.status_code == 429
        assert caught.value.slug == "too-many-uploads"
        assert caught.value.headers["Retry-After"] == "5"
        assert caught.value.limit == ("tenant_upload_slots", 2, 2)
        with uploads.slot("b"):
            assert (uploads.busy("a"), uploads.busy("b")) == (2, 1)
    assert (uploads.busy("a"), uploads.busy("b")) == (0, 0)
    with uploads.slot("a"):  # freed: usable again
        assert uploads.busy("a") == 1
