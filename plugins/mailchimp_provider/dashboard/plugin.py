"""The Airflow plugin that puts the dashboard into the Airflow 3 UI.

``fastapi_apps`` mounts :mod:`mailchimp_provider.dashboard.app` at ``/mailchimp`` on Airflow's API
server; ``external_views`` adds "Mailchimp" to the UI's navigation, showing that page inside the
UI (``url_route`` makes it an Airflow page, ``/plugin/mailchimp``). Registered through the
``airflow.plugins`` entry point (``pyproject.toml``), so an installed provider brings it along.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mailchimp_provider.dashboard.app import app

URL_PREFIX = "/mailchimp"


class MailchimpDashboardPlugin(AirflowPlugin):
    name = "mailchimp_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Mailchimp sync dashboard"}]
    external_views = [
        {
            "name": "Mailchimp",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "mailchimp",
        }
    ]
