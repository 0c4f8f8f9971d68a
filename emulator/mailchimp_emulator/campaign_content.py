"""Campaign content and the send checklist: ``GET|PUT /campaigns/{id}/content``,
``GET /campaigns/{id}/send-checklist``.

Mailchimp's ordinary flow, which the official client follows, is create -> set content -> send.
``PUT .../content`` replaces the content with exactly one source: ``html``, ``url``, ``template``,
``archive`` or ``variate_contents`` (shared/mailchimp-api.md §12 A; two sources is a 400, inferred
there). ``plain_text`` may come alone for a ``plaintext`` campaign, or beside ``html``; when absent
it is generated from the HTML, as Mailchimp says it does. ``url``, ``template`` and ``archive`` are
write-only: the GET answer carries the HTML the emulator derives from them and ``archive_html``.

The checklist computes ``is_ready`` from the checks Mailchimp's own checklist shows (a list with
subscribed recipients, a subject line, a from name and reply-to address, content), one item per
check. :func:`require_ready` is what ``/actions/send`` calls: a campaign that is not ready is a 400
"Your Campaign is not ready to send.", as Mailchimp answers.

Content is kept on the stored campaign under the private key ``_content`` (stored objects carry
private ``_``-prefixed keys; :func:`campaigns.render_campaign` leaves them out).
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from .collections import filter_fields
from .errors import bad_request
from .routing import Call, Reply, ok, router
from .schema import Field, field_error, validate
from .state import EmulatorState

CONTENT_KEY = "_content"
NOT_READY = "Your Campaign is not ready to send."
ARCHIVE_TYPES = ("zip", "tar.gz", "tar.bz2", "tar", "tgz", "tbz")
SOURCES = ("html", "url", "template", "archive", "variate_contents")

_TEMPLATE = Field("object", required=("id",), props={"id": Field("integer")})
"""``sections`` is a free-form map (``mc:edit`` area -> HTML): read by :func:`_sections`."""
_ARCHIVE = Field(
    "object",
    required=("archive_content",),
    props={"archive_content": Field("string"), "archive_type": Field("string", enum=ARCHIVE_TYPES)},
)
CONTENT = Field(
    "object",
    props={
        "plain_text": Field("string"),
        "html": Field("string"),
        "url": Field("string"),
        "template": _TEMPLATE,
        "archive": _ARCHIVE,
        "variate_contents": Field(
            "array",
            items=Field(
                "object",
                required=("content_label",),
                props={
                    "content_label": Field("string"),
                    "plain_text": Field("string"),
                    "html": Field("string"),
                    "url": Field("string"),
                    "template": _TEMPLATE,
                    "archive": _ARCHIVE,
                },
            ),
        ),
    },
)


def _campaign(state: EmulatorState, campaign_id: str) -> dict[str, Any]:
    from .campaigns import _campaign as find  # campaigns imports this module: resolve at call time

    return find(state, campaign_id)


def plain_text_of(html: str) -> str:
    """The plain-text part Mailchimp generates from HTML: tags dropped, entities decoded."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", html)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</h[1-6]>|</li>|</tr>", "\n", text)
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", text))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _html_from(source: str, value: Any) -> str:
    """The HTML the emulator derives from a write-only source (a real account fetches or renders it)."""
    if source == "html":
        return str(value)
    if source == "url":
        return f'<html><body><!-- imported from {html_lib.escape(str(value))} --></body></html>'
    if source == "template":
        sections = "".join(
            f'<div mc:edit="{html_lib.escape(str(k))}">{v}</div>' for k, v in sorted((value.get("sections") or {}).items())
        )
        return f'<html><body data-template-id="{int(value["id"])}">{sections}</body></html>'
    return "<html><body><!-- imported archive --></body></html>"  # archive


def _variant(item: dict[str, Any], campaign_type: str) -> dict[str, Any]:
    sources = [s for s in SOURCES[:-1] if s in item]
    if len(sources) > 1:
        raise bad_request(f"Send one content source, not {', '.join(sources)}.")
    html = _html_from(sources[0], item[sources[0]]) if sources else ""
    if not html and "plain_text" not in item:
        raise bad_request("Each content option must provide HTML content.")
    if campaign_type == "plaintext":
        html = ""
    return {"plain_text": item.get("plain_text", plain_text_of(html)), "html": html}


def _sections(raw: Any, where: str) -> dict[str, str]:
    """A template's ``sections`` (area name -> HTML), which the object schema cannot express."""
    sections = raw.get("sections", {}) if isinstance(raw, dict) else {}
    if not isinstance(sections, dict) or not all(isinstance(v, str) for v in sections.values()):
        raise field_error(f"{where}.sections", "sections maps mc:edit area names to HTML strings.")
    return sections


@router.route("PUT", "/campaigns/{campaign_id}/content")
def set_content(call: Call, campaign_id: str) -> Reply:
    """Replace the campaign's content (a sent campaign's content cannot change)."""
    campaign = _campaign(call.state, campaign_id)
    raw = call.json_body()
    body = validate(raw, CONTENT)
    if "template" in body:
        body["template"]["sections"] = _sections(raw["template"], "template")
    for index, option in enumerate(body.get("variate_contents", [])):
        if "template" in option:
            option["template"]["sections"] = _sections(raw["variate_contents"][index]["template"],
                                                       f"variate_contents.item:{index}.template")
    if campaign["status"] == "sent":
        raise bad_request("This campaign has already been sent and its content cannot be changed.")
    sources = [s for s in SOURCES if s in body]
    if len(sources) > 1:
        raise bad_request(f"Send one content source, not {', '.join(sources)}.")
    if not sources and "plain_text" not in body:
        raise field_error("", "Content needs html, url, template, archive, variate_contents or plain_text.")
    if sources == ["variate_contents"]:
        variants = body["variate_contents"]
        if not variants:
            raise field_error("variate_contents", "At least one content option is required.")
        options = [{"content_label": v["content_label"], **_variant(v, campaign["type"])} for v in variants]
        # The top-level parts are the first option's: what a campaign not testing content shows.
        content = {"plain_text": options[0]["plain_text"], "html": options[0]["html"], "variate_contents": options}
    else:
        content = _variant(body, campaign["type"])
    content["archive_html"] = content["html"]
    campaign[CONTENT_KEY] = content
    campaign["content_type"] = "html" if sources == ["html"] else (sources[0] if sources else "plaintext")
    return ok(filter_fields(call, render_content(campaign)))


@router.route("GET", "/campaigns/{campaign_id}/content")
def get_content(call: Call, campaign_id: str) -> Reply:
    return ok(filter_fields(call, render_content(_campaign(call.state, campaign_id))))


def render_content(campaign: dict[str, Any]) -> dict[str, Any]:
    """The API form: ``plain_text``, ``html``, ``archive_html`` and (for variate content) the
    options; empty strings for a campaign with no content yet, as Mailchimp answers for a draft."""
    stored = campaign.get(CONTENT_KEY) or {}
    out: dict[str, Any] = {
        "plain_text": stored.get("plain_text", ""),
        "html": stored.get("html", ""),
        "archive_html": stored.get("archive_html", ""),
        "_links": [],
    }
    if "variate_contents" in stored:
        out["variate_contents"] = [dict(v) for v in stored["variate_contents"]]
    return out


def checklist(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    """``{"is_ready", "items": [{"type", "id", "heading", "details"}]}``: one item per check."""
    from .campaigns import subscribed_count

    settings = campaign["settings"]
    list_id = campaign["recipients"].get("list_id", "")
    content = campaign.get(CONTENT_KEY) or {}
    recipients = subscribed_count(state, list_id) if list_id in state.lists else 0
    checks = [
        (1, "List", bool(list_id) and list_id in state.lists and recipients > 0,
         f"{recipients} recipients" if list_id in state.lists else "Choose an audience for this campaign.",
         "Your segment of list is empty." if list_id in state.lists else "Choose an audience for this campaign."),
        (2, "Subject line", bool(settings.get("subject_line")), settings.get("subject_line", ""),
         "Add a subject line."),
        (3, "From", bool(settings.get("from_name")) and bool(settings.get("reply_to")),
         f"{settings.get('from_name', '')} <{settings.get('reply_to', '')}>", "Set a from name and a reply-to address."),
        (4, "Content", bool(content.get("html") or content.get("plain_text")), "Content is set.",
         "Design the content of this campaign (PUT /campaigns/{id}/content)."),
    ]
    items = [
        {"type": "success" if passed else "error", "id": check_id, "heading": heading,
         "details": good if passed else bad}
        for check_id, heading, passed, good, bad in checks
    ]
    return {"is_ready": all(i["type"] == "success" for i in items), "items": items}


@router.route("GET", "/campaigns/{campaign_id}/send-checklist")
def send_checklist(call: Call, campaign_id: str) -> Reply:
    campaign = _campaign(call.state, campaign_id)
    return ok(filter_fields(call, {**checklist(call.state, campaign), "_links": []}))


def require_ready(state: EmulatorState, campaign: dict[str, Any]) -> None:
    """What ``/actions/send`` checks: Mailchimp's 400 when any checklist item is an error."""
    if not checklist(state, campaign)["is_ready"]:
        raise bad_request(NOT_READY)
