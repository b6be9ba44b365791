"""`GET /`: the MediaProvider document Plex reads when the provider is added."""

import re

from pipeline.provider.documents import IDENTIFIER


def test_root_is_a_media_provider_with_our_identifier(provider):
    response = provider.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()["MediaProvider"]
    assert document["identifier"] == "tv.plex.agents.custom.stash2plex" == IDENTIFIER
    assert document["title"] and document["version"]


def test_identifier_follows_plex_rules():
    assert IDENTIFIER.startswith("tv.plex.agents.custom.")
    assert re.fullmatch(r"[A-Za-z0-9.]+", IDENTIFIER.removeprefix("tv.plex.agents.custom."))


def test_root_serves_movies_only_with_our_scheme(provider):
    types = provider.get("/").json()["MediaProvider"]["Types"]
    assert types == [{"type": 1, "Scheme": [{"scheme": IDENTIFIER}]}]


def test_root_declares_the_metadata_and_match_features(provider):
    features = {f["type"]: f["key"] for f in provider.get("/").json()["MediaProvider"]["Feature"]}
    assert features == {"metadata": "/library/metadata", "match": "/library/metadata/matches"}
