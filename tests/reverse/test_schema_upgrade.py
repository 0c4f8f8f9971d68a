"""Upgrading loses nothing: engagement tables as the previous version created them are brought to
today's shape (Fivetran's column names) in place by the first pull, every row kept, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from mailchimp_provider.reverse.schema_upgrade import upgrade_engagement_tables
from mailchimp_provider.warehouse.tables import UtcDateTime, WarehouseTables

from engagement_harness import TASKS, EngagementHarness
from test_engagement_pull_dag import CLICKED, READERS, seed

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)

# The engagement tables as the previous version (before Fivetran's names) defined them, column for
# column: name:type, * = primary key. Written out here, not imported, so that the test keeps
# describing the warehouses that exist out there whatever tables.py becomes.
PREVIOUS = {
    "list": "list_id:KEY* web_id:BIG name:TXT contact_company:TXT contact_address1:TXT contact_address2:TXT "
            "contact_city:TXT contact_state:TXT contact_zip:TXT contact_country:TXT contact_phone:TXT "
            "permission_reminder:TXT use_archive_bar:BOOL from_name:TXT from_email:TXT subject:TXT language:TXT "
            "notify_on_subscribe:TXT notify_on_unsubscribe:TXT date_created:TS list_rating:INT "
            "email_type_option:BOOL subscribe_url_short:TXT subscribe_url_long:TXT beamer_address:TXT "
            "visibility:TXT double_optin:BOOL has_welcome:BOOL marketing_permissions:BOOL member_count:INT "
            "unsubscribe_count:INT cleaned_count:INT member_count_since_send:INT unsubscribe_count_since_send:INT "
            "cleaned_count_since_send:INT campaign_count:INT campaign_last_sent:TS merge_field_count:INT "
            "avg_sub_rate:FLT avg_unsub_rate:FLT target_sub_rate:FLT open_rate:FLT click_rate:FLT "
            "last_sub_date:TS last_unsub_date:TS extra:TXT synced_at:TS",
    "member": "list_id:KEY* member_id:KEY* email_address:TXT unique_email_id:TXT web_id:BIG contact_id:TXT "
              "full_name:TXT email_type:TXT status:TXT unsubscribe_reason:TXT "
              "consents_to_one_to_one_messaging:BOOL merge_fields:TXT interests:TXT stats_avg_open_rate:FLT "
              "stats_avg_click_rate:FLT ip_signup:TXT timestamp_signup:TS ip_opt:TXT timestamp_opt:TS "
              "member_rating:INT last_changed:TS language:TXT vip:BOOL email_client:TXT location_latitude:FLT "
              "location_longitude:FLT location_gmtoff:INT location_dstoff:INT location_country_code:TXT "
              "location_timezone:TXT location_region:TXT source:TXT tag_count:INT tags:TXT extra:TXT synced_at:TS",
    "unsubscribe": "list_id:KEY* member_id:KEY* campaign_id:KEY* timestamp:TS* email_address:TXT reason:TXT "
                   "source:TXT extra:TXT synced_at:TS",
    "campaign": "campaign_id:KEY* web_id:BIG list_id:TXT segment_id:TXT segment_text:TXT title:TXT "
                "subject_line:TXT preview_text:TXT type:TXT status:TXT create_time:TS send_time:TS emails_sent:INT "
                "from_name:TXT reply_to:TXT to_name:TXT archive_url:TXT long_archive_url:TXT content_type:TXT "
                "template_id:BIG folder_id:TXT parent_campaign_id:TXT opens:INT unique_opens:INT open_rate:FLT "
                "clicks:INT subscriber_clicks:INT click_rate:FLT hard_bounces:INT soft_bounces:INT "
                "syntax_errors:INT unsubscribed:INT abuse_reports:INT forwards:INT last_open:TS last_click:TS "
                "extra:TXT synced_at:TS",
    "activity": "campaign_id:KEY* member_id:KEY* action:KEY* timestamp:TS* url:KEY* list_id:TXT "
                "email_address:TXT ip:TXT bounce_type:TXT combination_id:TXT extra:TXT synced_at:TS",
}
NAMES = {"list": "list", "member": "member", "unsubscribe": "unsubscribe", "campaign": "campaign",
         "activity": "campaign_recipient_activity"}
TYPES = {
    "KEY": lambda: sa.String(255).with_variant(sa.Text(), "postgresql"), "TXT": sa.Text, "BIG": sa.BigInteger,
    "INT": sa.Integer, "FLT": sa.Float, "BOOL": sa.Boolean, "TS": UtcDateTime,
}


def previous_tables(prefix: str = "mailchimp_") -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    out = {}
    for kind, spec in PREVIOUS.items():
        columns = []
        for item in spec.split():
            name, type_ = item.split(":")
            key = type_.endswith("*")
            extra = {"server_default": ""} if name in ("url", "campaign_id") and key else {}
            columns.append(sa.Column(name, TYPES[type_.rstrip("*")](), primary_key=key,
                                     nullable=name != "synced_at", **extra))
        out[kind] = sa.Table(prefix + NAMES[kind], metadata, *columns)
    return out


OLD_ROWS = {
    "list": [{"list_id": "old-list", "name": "Old audience", "contact_address1": "1 Main St",
              "from_email": "news@old.example", "language": "en", "synced_at": T0}],
    "member": [{"list_id": "old-list", "member_id": "a" * 32, "email_address": "kept@old.example",
                "status": "subscribed", "location_country_code": "FR", "location_gmtoff": 1,
                "location_latitude": 48.85, "synced_at": T0}],
    "unsubscribe": [{"list_id": "old-list", "member_id": "b" * 32, "campaign_id": "", "timestamp": T0,
                     "reason": "left", "source": "member", "synced_at": T0},
                    {"list_id": "old-list", "member_id": "c" * 32, "campaign_id": "old-campaign", "timestamp": T0,
                     "reason": "spam", "source": "report", "synced_at": T0}],
    "campaign": [{"campaign_id": "old-campaign", "list_id": "old-list", "segment_id": "17", "status": "sent",
                  "title": "Old news", "send_time": T0, "synced_at": T0}],
    "activity": [{"campaign_id": "old-campaign", "member_id": "a" * 32, "action": "open", "timestamp": T0,
                  "url": "", "synced_at": T0},
                 {"campaign_id": "old-campaign", "member_id": "a" * 32, "action": "click", "timestamp": T0,
                  "url": "https://old.example/x", "synced_at": T0}],
}


def test_the_first_pull_of_this_version_upgrades_previous_tables_in_place(harness: EngagementHarness) -> None:
    h = harness
    old = previous_tables()
    with h.db.begin() as conn:
        for table in old.values():
            table.create(conn)
        for kind, rows in OLD_ROWS.items():
            conn.execute(old[kind].insert(), rows)
    list_id, campaign_id = seed(h)

    assert h.run() == {t: "success" for t in TASKS}

    t = h.tables
    with h.db.connect() as conn:
        def rows(kind: str, *where: sa.ColumnElement) -> list[dict]:
            return [dict(r) for r in conn.execute(sa.select(t.table(kind)).where(*where)).mappings()]

        [lst] = rows("list", t.list.c.list_id == "old-list")
        assert (lst["id"], lst["contact_address_1"], lst["default_from_email"], lst["default_language"]) == (
            "old-list", "1 Main St", "news@old.example", "en")
        assert (lst["_fivetran_synced"], lst["_fivetran_deleted"]) == (T0, False)
        [member] = rows("member", t.member.c.list_id == "old-list")
        assert (member["id"], member["country_code"], member["gmtoff"], member["latitude"]) == ("a" * 32, "FR", 1, 48.85)
        assert member["_fivetran_synced"] == T0
        unsubs = {r["member_id"][0]: (r["campaign_key"], r["campaign_id"]) for r in rows("unsubscribe", t.unsubscribe.c.list_id == "old-list")}
        assert unsubs == {"b": ("", None), "c": ("old-campaign", "old-campaign")}
        [campaign] = rows("campaign", t.campaign.c.campaign_id == "old-campaign")
        assert (campaign["id"], int(campaign["segment_id"]), campaign["title"]) == ("old-campaign", 17, "Old news")
        old_activity = {r["action"]: (r["url_key"], r["url"]) for r in rows("activity", t.activity.c.campaign_id == "old-campaign")}
        assert old_activity == {"open": ("", None), "click": ("https://old.example/x", "https://old.example/x")}

        # and the pull itself wrote into the upgraded tables under the new names
        [pulled] = rows("campaign", t.campaign.c.campaign_id == campaign_id)
        assert pulled["id"] == campaign_id and pulled["_fivetran_synced"] is not None
        fresh = rows("activity", t.activity.c.campaign_id == campaign_id)
        assert len(fresh) == 6 and {r["url"] for r in fresh} == {None, CLICKED}
        assert {r["email_address"] for r in rows("member", t.member.c.list_id == list_id)} == set(READERS)
        assert all(r["id"] == r["member_id"] for r in rows("member"))

    assert upgrade_engagement_tables(h.db, WarehouseTables()) == []  # the second run has nothing to do
