"""Engagement pull (Mailchimp -> warehouse): lists, members, unsubscribes, campaigns, email activity.

Modules, in the order a run uses them:

* ``config``       -- ``include/engagement_pull.yaml`` as a typed ``EngagementConfig`` (shared loader)
* ``normalise``    -- Mailchimp JSON -> rows with Fivetran column names ("" dates -> NULL, UTC, extras)
* ``watermarks``   -- per-stream, per-scope bookmarks kept in ``<prefix>watermark``
* ``loading``      -- chunked ``warehouse.upsert.upsert_counts`` and per-table gained / changed tallies
* ``audiences``    -- lists and members (incremental on ``last_changed``), list-level unsubscribes
* ``campaigns``    -- sent campaigns + report summary, campaign unsubscribe reports
* ``unsubscribes`` -- one row per unsubscribe, whether it came from a report or a member status
* ``activity``     -- the email-activity batch planner and result applier
* ``statuses``     -- ``member_statuses()`` for the forward audience sync
* ``report``       -- ``engagement_report()`` / ``engagement_report_sql()`` for the demo and analysts

Import the submodules directly; this package stays cheap to import for the DAG processor.
"""
