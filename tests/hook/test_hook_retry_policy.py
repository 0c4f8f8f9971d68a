"""RetryPolicy: which answers are transient, how long to wait, and when to give up."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from mailchimp_provider.hooks.retry import RetryPolicy, is_retriable_status, parse_retry_after


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retried(status):
    assert is_retriable_status(status)


@pytest.mark.parametrize("status", [400, 401, 404, 405, 422])
def test_client_errors_are_not_retried(status):
    assert not is_retriable_status(status)


def test_403_is_throttling_only_without_a_json_body():
    assert is_retriable_status(403, has_json_body=False)
    assert not is_retriable_status(403, has_json_body=True)


def test_retry_after_in_seconds_and_as_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    now = time.time()
    assert parse_retry_after(formatdate(now + 20, usegmt=True), now=now) == pytest.approx(20, abs=1)
    assert parse_retry_after(formatdate(now - 20, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(max_retry_after=10)
    assert policy.next_delay(1, "4") == 4.0
    assert policy.next_delay(1, "600") == 10.0


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    policy = RetryPolicy(max_attempts=20, base_delay=1.0, max_delay=8.0, jitter=0.5, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.next_delay(attempt) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so workers do not retry in lockstep


def test_attempts_are_bounded():
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    assert policy.next_delay(1) is not None
    assert policy.next_delay(2) is not None
    assert policy.next_delay(3) is None


def test_total_time_is_bounded():
    policy = RetryPolicy(max_attempts=100, max_elapsed=5.0)
    assert policy.next_delay(1, "2", elapsed=2.9) == 2.0
    assert policy.next_delay(1, "2", elapsed=3.1) is None


def test_nonsense_policies_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)
