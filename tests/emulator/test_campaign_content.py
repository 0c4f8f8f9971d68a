"""Campaign content and the send checklist, driven with the official ``mailchimp_marketing`` client:
the ordinary create -> set content -> send flow (shared/mailchimp-api.md §12 A)."""

from __future__ import annotations

from typing import Any

from test_campaigns import NOT_READY, add_members, api_error, create_campaign, make_list


def test_create_set_content_send_is_the_ordinary_flow(mc: Any) -> None:
    list_id = make_list(mc)
    add_members(mc, list_id, 3)
    campaign = create_campaign(mc, list_id, html=None)
    assert mc.campaigns.get_content(campaign["id"])["html"] == ""

    html = "<h1>May &amp; June</h1><p>New <b>arrivals</b></p><style>p{}</style>"
    answer = mc.campaigns.set_content(campaign["id"], {"html": html})
    assert answer["html"] == html
    assert answer["plain_text"] == "May & June\nNew arrivals"  # generated when not given
    assert mc.campaigns.get_content(campaign["id"])["archive_html"] == html
    assert mc.campaigns.get(campaign["id"])["content_type"] == "html"
    assert "_content" not in mc.campaigns.get(campaign["id"])

    assert mc.campaigns.get_send_checklist(campaign["id"])["is_ready"] is True
    assert mc.campaigns.send(campaign["id"]).status_code == 204
    assert mc.campaigns.get(campaign["id"])["emails_sent"] == 3

    status, body = api_error(lambda: mc.campaigns.set_content(campaign["id"], {"html": "<p>later</p>"}))
    assert status == 400
    assert mc.campaigns.get_content(campaign["id"])["html"] == html


def test_without_content_the_checklist_names_it_and_send_is_refused(mc: Any) -> None:
    list_id = make_list(mc)
    add_members(mc, list_id, 1)
    campaign = create_campaign(mc, list_id, html=None)

    checklist = mc.campaigns.get_send_checklist(campaign["id"])
    assert checklist["is_ready"] is False
    errors = [item["heading"] for item in checklist["items"] if item["type"] == "error"]
    assert errors == ["Content"]
    status, body = api_error(lambda: mc.campaigns.send(campaign["id"]))
    assert (status, body["detail"]) == (400, NOT_READY)
    assert mc.campaigns.get(campaign["id"])["status"] == "save"


def test_checklist_lists_every_missing_part(mc: Any) -> None:
    list_id = make_list(mc)  # no subscribed members
    campaign = create_campaign(mc, list_id, html=None, subject_line="", from_name="")
    items = {item["heading"]: item["type"] for item in mc.campaigns.get_send_checklist(campaign["id"])["items"]}
    assert items == {"List": "error", "Subject line": "error", "From": "error", "Content": "error"}


def test_one_content_source_at_a_time(mc: Any) -> None:
    campaign = create_campaign(mc, make_list(mc), html=None)
    status, body = api_error(
        lambda: mc.campaigns.set_content(campaign["id"], {"html": "<p>a</p>", "url": "https://acme.example/c"})
    )
    assert status == 400 and "html" in body["detail"] and "url" in body["detail"]
    status, body = api_error(lambda: mc.campaigns.set_content(campaign["id"], {"template": {"sections": {}}}))
    assert status == 400 and body["errors"][0]["field"] == "template"


def test_template_sections_and_plain_text_are_kept(mc: Any) -> None:
    campaign = create_campaign(mc, make_list(mc), html=None)
    answer = mc.campaigns.set_content(
        campaign["id"], {"template": {"id": 42, "sections": {"body": "<p>Hi *|FNAME|*</p>"}}, "plain_text": "Hi"}
    )
    assert 'mc:edit="body"' in answer["html"] and "*|FNAME|*" in answer["html"]
    assert answer["plain_text"] == "Hi"
    assert "template" not in answer  # write-only, as in Mailchimp


def test_variate_contents_are_listed_with_their_labels(mc: Any) -> None:
    campaign = create_campaign(mc, make_list(mc), html=None)
    answer = mc.campaigns.set_content(
        campaign["id"],
        {"variate_contents": [{"content_label": "A", "html": "<p>one</p>"},
                              {"content_label": "B", "html": "<p>two</p>"}]},
    )
    assert [(v["content_label"], v["plain_text"]) for v in answer["variate_contents"]] == [("A", "one"), ("B", "two")]
    assert answer["html"] == "<p>one</p>"
