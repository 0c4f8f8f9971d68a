"""The mass-delete guard both syncs share (``sync/deletions.py``), and the config keys that set it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mailchimp_provider.config import MassDeleteSpec, load_audience_config
from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.sync.deletions import mass_delete_refusal
from mailchimp_provider.sync.engine import RunContext

ROOT = Path(__file__).resolve().parents[2]
GUARD = MassDeleteSpec(max_share=0.10, min_records=10)


@pytest.mark.parametrize(("count", "held", "allowed", "refused"), [
    (10, 100, False, False),    # exactly the share
    (11, 100, False, True),     # over it
    (9, 20, False, False),      # under min_records: passes although 45 %
    (5, 5, False, True),        # ...unless it is every record
    (500, 1000, True, False),   # the run param lifts it
    (0, 0, False, False),       # nothing held, nothing to refuse
])
def test_the_guard_refuses_more_than_the_share_unless_the_run_allows_it(count: int, held: int, allowed: bool, refused: bool) -> None:
    ctx = RunContext(run_id="r", data={"allow_mass_delete": allowed})
    why = mass_delete_refusal(ctx, GUARD, "members", count, held, verb="archived")
    assert (why is not None) == refused
    if why:
        assert f"{count} of the {held} members" in why and "allow_mass_delete" in why and "not archived" in why


def test_audience_on_delete_takes_ignore_or_archive_and_names_the_key(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "include" / "audience_sync.yaml").read_text())
    assert load_audience_config(ROOT / "include" / "audience_sync.yaml").on_delete == "ignore"
    config["on_delete"] = "delete"   # members are archived, never deleted by this option
    path = tmp_path / "audience_sync.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(MailchimpConfigError, match="on_delete"):
        load_audience_config(path)
    config["on_delete"] = "archive"
    config["mass_delete"] = {"max_share": 1.5}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(MailchimpConfigError, match="max_share"):
        load_audience_config(path)
