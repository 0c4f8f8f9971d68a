"""The hook's identity and connection form, as Airflow's UI and ProvidersManager see them."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema
import pytest
from airflow.sdk import Connection

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.get_provider_info import get_provider_info
from mailchimp_provider.hooks.credentials import credentials_from_connection
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
    assert behaviour["relabeling"]["password"] == "API key"
    assert "Emulator" in behaviour["relabeling"]["host"] and "Mailchimp" in behaviour["relabeling"]["host"]
    assert behaviour["hidden_fields"] == ["login"]


README_EMULATOR_URI = "mailchimp://:0123456789abcdef0123456789abcdef-us1@127.0.0.1:8765/3.0"


def test_the_readme_emulator_uri_shows_as_host_port_and_path_and_the_form_saves_it_back_unchanged():
    """What the README tells users to export is what the form shows, field by field, and saving
    the form (a connection built from those fields) gives the same URI and the same base URL."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"AIRFLOW_CONN_MAILCHIMP_DEFAULT='{README_EMULATOR_URI}'" in readme
    loaded = Connection.from_uri(README_EMULATOR_URI, conn_id="mailchimp_default")
    assert (loaded.host, loaded.port, loaded.schema, loaded.extra_dejson) == ("127.0.0.1", 8765, "3.0", {})
    hidden = set(MailchimpHook.get_ui_field_behaviour()["hidden_fields"])
    assert not {"host", "port", "schema", "password"} & hidden  # every part of the URL is on the form

    saved = Connection(conn_id="mailchimp_default", conn_type="mailchimp", host=loaded.host, port=loaded.port,
                       schema=loaded.schema, password=loaded.password)
    assert saved.get_uri() == README_EMULATOR_URI
    assert credentials_from_connection(saved, mask=False).base_url == "http://127.0.0.1:8765/3.0"


def test_an_empty_api_path_on_the_form_means_mailchimps_3_0():
    form = Connection(conn_id="mc", conn_type="mailchimp", host="localhost", port=8765,
                      password="0123456789abcdef0123456789abcdef-us1")
    assert credentials_from_connection(form, mask=False).base_url == "http://localhost:8765/3.0"


def test_a_public_host_typed_into_the_form_is_still_refused_before_any_request():
    form = Connection(conn_id="mc", conn_type="mailchimp", host="mailchimp-proxy.example.com", port=8765,
                      schema="3.0", password="0123456789abcdef0123456789abcdef-us1")
    with pytest.raises(MailchimpConfigError, match="Refusing to send Mailchimp credentials"):
        credentials_from_connection(form, mask=False)


def test_provider_info_declares_the_same_form_for_airflow_3_ui():
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    assert set(fields) == {"oauth_token", "server_prefix", "max_in_flight"}
    assert fields["oauth_token"]["schema"]["format"] == "password"  # masked in the UI
    assert fields["max_in_flight"]["schema"]["maximum"] == 10
    assert conn_type["ui-field-behaviour"]["relabeling"]["password"] == "API key"
