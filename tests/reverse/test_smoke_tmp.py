from datetime import datetime, timedelta, timezone
import pytest
from conftest import subscriber_hash  # noqa

def iso(dt): return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")

@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_smoke(harness):
    h = harness
    lid = h.make_list()
    emails = [f"reader{i}@brightmail.co" for i in range(6)]
    h.add_members(lid, emails)
    cid = h.create_campaign(lid, "May news")
    h.send(cid)
    states = h.run()
    print(states)
    for k in ("list","member","unsubscribe","campaign","activity"):
        print(k, len(h.rows(k)))
    print(h.rows("campaign")[0])
    snap = h.snapshot()
    h.run()
    assert h.snapshot() == snap
