"""When the engagement pull rejects records: a warning for a few, a failed task for a format change."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.operators.engagement import MailchimpAudiencePullOperator
from mailchimp_provider.reverse.config import EngagementConfig, config_from_dict, load_config
from mailchimp_provider.reverse.loading import LoadCounts, LoadStats


def stats(members: int, rejected: int) -> LoadStats:
    return LoadStats({"mailchimp_member": LoadCounts(gained=members),
                      "mailchimp_rejected_record": LoadCounts(gained=rejected)})


def operator(fraction: float = 0.01) -> MailchimpAudiencePullOperator:
    return MailchimpAudiencePullOperator(task_id="pull_audiences",
                                         config=EngagementConfig(max_rejected_fraction=fraction))


def test_a_few_rejected_records_are_a_warning_not_a_failure() -> None:
    summary = operator().report(stats(members=990, rejected=10), "audiences")
    assert summary["mailchimp_rejected_record"]["gained"] == 10


def test_rejecting_more_than_the_allowed_share_fails_the_task_and_says_where_they_are() -> None:
    with pytest.raises(AirflowException, match=r"11 of the 1000 records read could not be stored \(1.1%") as failed:
        operator().report(stats(members=989, rejected=11), "audiences")
    assert "retrying this task does not read them again" in str(failed.value)
    assert "FROM mailchimp_rejected_record" in str(failed.value)
    operator(fraction=0.5).report(stats(members=989, rejected=11), "audiences")  # a looser setting passes


def test_the_allowed_share_is_a_fraction() -> None:
    with pytest.raises(MailchimpConfigError, match="max_rejected_fraction"):
        config_from_dict({"max_rejected_fraction": 2})


def test_the_shipped_config_file_states_the_defaults() -> None:
    """include/engagement_pull.yaml documents every key with its default value."""
    assert load_config(Path(__file__).resolve().parents[2] / "include" / "engagement_pull.yaml") == EngagementConfig()
