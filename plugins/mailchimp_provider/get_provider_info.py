"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from mailchimp_provider import __version__
from mailchimp_provider.hooks.credentials import CONN_FIELDS, UI_FIELD_BEHAVIOUR


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mailchimp",
        "name": "Mailchimp",
        "description": "Sync a data warehouse with Mailchimp: audience members, e-commerce, engagement.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "mailchimp",
                "hook-class-name": "mailchimp_provider.hooks.mailchimp.MailchimpHook",
                "hook-name": "Mailchimp",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "hooks": [
            {
                "integration-name": "Mailchimp",
                "python-modules": ["mailchimp_provider.hooks.mailchimp"],
            }
        ],
        "operators": [
            {
                "integration-name": "Mailchimp",
                "python-modules": ["mailchimp_provider.operators.batch"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Mailchimp",
                "python-modules": ["mailchimp_provider.sensors.batch"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Mailchimp",
                "python-modules": ["mailchimp_provider.triggers.batch"],
            }
        ],
        "extra-links": ["mailchimp_provider.links.MailchimpBatchLink"],
    }
