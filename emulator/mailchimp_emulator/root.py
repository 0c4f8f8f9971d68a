"""``GET /`` (API root) and ``GET /ping``."""

from __future__ import annotations

from .collections import filter_fields
from .routing import Call, Reply, ok, router


@router.route("GET", "/ping")
def ping(call: Call) -> Reply:
    return ok({"health_status": "Everything's Chimpy!"})


@router.route("GET", "/")
def api_root(call: Call) -> Reply:
    total = sum(1 for members in call.state.members.values() for m in members.values() if m["status"] == "subscribed")
    return ok(
        filter_fields(
            call,
            {
                "account_id": call.state.account_id,
                "login_id": call.state.account_id,
                "account_name": "Mailchimp Emulator",
                "email": "owner@emulator.invalid",
                "first_name": "Emulator",
                "last_name": "Owner",
                "username": "emulator",
                "avatar_url": "",
                "role": "owner",
                "member_since": "2020-01-01T00:00:00+00:00",
                "pricing_plan_type": "monthly",
                "first_payment": "",
                "account_timezone": "UTC",
                "account_industry": "Software",
                "contact": {"company": "Emulator", "addr1": "", "addr2": "", "city": "", "state": "", "zip": "", "country": "US"},
                "pro_enabled": False,
                "last_login": "",
                "total_subscribers": total,
                "industry_stats": {},
                "_links": [],
            },
        )
    )
