"""The hook's identity and connection form, as Airflow's UI and ProvidersManager see them."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema

from mailchimp_provider.get_provider_info import get_provider_info
from mailchimp_provider.hooks.mailchimp import MailchimpHook


def test_hook_identity():
    assert MailchimpHook.conn_name_attr == "mailchimp_conn_id"
    assert MailchimpHook.default_conn_name == "mailchimp_default"
    assert (MailchimpHook.conn_type, MailchimpHook.hook_name) == ("mailchimp", "Mailchimp")


def test_field_behaviour_relabels_the_key_and_the_emulator_host_and_validates():
    behaviour = MailchimpHook.get_ui_field_behaviour()
    schema_file = Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(behaviour, schema)
    assert behaviour["relabeling"] == {
        "password": "API key",
        "host": "API base URL (optional, emulator only)",
    }
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])


def test_provider_info_declares_the_same_form_for_airflow_3_ui():
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    assert set(fields) == {"oauth_token", "server_prefix", "max_in_flight"}
    assert fields["oauth_token"]["schema"]["format"] == "password"  # masked in the UI
    assert fields["max_in_flight"]["schema"]["maximum"] == 10
    assert conn_type["ui-field-behaviour"]["relabeling"]["password"] == "API key"
