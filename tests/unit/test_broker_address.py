"""One broker-address module: parsing, redaction (URL-decoded passwords too) and queue names."""

import pytest

from pipeline.broker_address import (
    BrokerUrlError,
    check_queue_prefix,
    dlq_name,
    is_stub,
    parse_broker_url,
    redact_url,
    url_password,
)
from pipeline.config import explicit_settings
from pipeline.errors import register_secrets, scrub
from pipeline.stages import PERFORMERS, STAGES, queue_roles, stage_named


@pytest.mark.parametrize(("url", "shown"), [
    ("amqp://bob:s%3Acret@rabbit:5672/prod", "amqp://bob:***@rabbit:5672/prod"),
    ("https://user:pw@stash.lan/graphql?apikey=abc#top", "https://user:***@stash.lan/graphql?***"),
    ("http://127.0.0.1:32400/library?X-Plex-Token=secret", "http://127.0.0.1:32400/library?***"),
    ("http://plex.lan:32400", "http://plex.lan:32400"),
    ("amqp://justuser@rabbit/", "amqp://justuser@rabbit/"),
    ("not a url", "<invalid URL>"),
])
def test_redaction_hides_passwords_and_query_strings(url, shown):
    assert redact_url(url) == shown


def test_the_password_is_read_url_decoded():
    assert url_password("amqp://bob:p%40ss%3Aw%2Frd@rabbit/") == "p@ss:w/rd"
    assert url_password("amqp://rabbit/") is None


def test_settings_register_the_broker_password_decoded_and_as_written():
    settings = explicit_settings(broker_url="amqp://bob:p%40ss%3Aword@rabbit/")
    register_secrets(settings.secrets())
    assert "p@ss:word" in settings.secrets() and "p%40ss%3Aword" in settings.secrets()
    assert scrub("pika: auth failed for p@ss:word") == "pika: auth failed for ***"


def test_settings_reject_a_broker_url_the_hook_could_not_parse():
    with pytest.raises(ValueError, match="broker_url"):
        explicit_settings(broker_url="amqp://host:70000/")
    with pytest.raises(BrokerUrlError):
        parse_broker_url("amqp://host:70000/")


def test_stub_urls_are_recognised_whatever_their_case():
    assert is_stub("stub://") and is_stub("STUB://x") and not is_stub("amqp://stub/")


def test_queue_names_come_from_the_prefix_and_the_stage():
    assert [stage.queue("s2p") for stage in STAGES] == [
        "s2p.fetch_scene", "s2p.match_plex", "s2p.push_metadata", "s2p.sync_performers"]
    assert dlq_name("s2p") == "s2p.dlq"
    roles = dict(queue_roles("s2p"))
    assert roles["s2p.sync_performers.DQ"] == "delay" and roles["s2p.maintenance"] == "maintenance"
    assert roles["s2p.dlq"] == "dlq"


def test_a_prefix_dramatiq_would_reject_is_refused():
    assert check_queue_prefix("stash2plex-test.1") == "stash2plex-test.1"
    with pytest.raises(BrokerUrlError):
        check_queue_prefix("bad prefix!")


def test_each_stage_names_the_next_and_where_its_retries_restart():
    assert [stage.next_name for stage in STAGES] == ["match", "push", "performers", None]
    assert PERFORMERS.retry_at == "fetch" and stage_named("match").retry_at == "fetch"
    with pytest.raises(AttributeError):
        PERFORMERS.retry_at = "performers"  # type: ignore[misc]
