"""No answer, header, URL or log line ever carries the Stash API key or Plex's token (nor Stash's own image URLs)."""

from tests.conftest import PLEX_TOKEN, STASH_KEY, wait_for


def every_answer(provider, stash):
    """Responses to every route, in good times and bad."""
    answers = [provider.get("/"), provider.get("/healthz"), provider.get("/library/metadata/1"),
               provider.get("/library/metadata/1/images"), provider.get("/library/metadata/777777"),
               provider.match({"type": 1, "filename": "/data/videos/scene_000001.mp4", "includeAdult": 1, "manual": 1}),
               provider.match({"type": 1, "filename": "/data/videos/missing.mp4", "includeAdult": 1}),
               provider.match(b"{broken")]
    item = provider.metadata("1")
    answers += [provider.session.get(item["thumb"], timeout=10)]
    answers += [provider.session.get(role["thumb"], timeout=10) for role in provider.metadata("3").get("Role", [])]
    stash.faults.fail_next(1, 401, path_prefix="/scene/")
    answers.append(provider.get("/images/scene/2/screenshot"))  # Stash refuses the key: 502, no detail
    stash.faults.fail_next(1, 500, path_prefix="/graphql")
    answers.append(provider.get("/library/metadata/888888"))
    stash.go_down()
    try:
        answers += [provider.get("/library/metadata/999998"), provider.get("/images/scene/4/screenshot"),
                    provider.match({"type": 1, "filename": "/x/unknown.mp4", "includeAdult": 1})]
        wait_for(lambda: provider.get("/healthz").json()["stash"] == "failing", timeout=20, message="Stash failing")
    finally:
        stash.come_up()
    return answers


def test_no_answer_or_log_line_carries_the_stash_key(provider, stash, raw_logs):
    answers = every_answer(provider, stash)
    assert {a.status_code for a in answers} >= {200, 400, 404, 502}
    for answer in answers:
        for secret in (STASH_KEY, PLEX_TOKEN):  # Plex sends its token on every request (PLEX_HEADERS)
            assert secret.encode() not in answer.content
            assert secret not in str(answer.headers)
            assert secret not in answer.url
    assert raw_logs.lines, "the provider logged its events"
    assert not [line for line in raw_logs.lines if STASH_KEY in line or PLEX_TOKEN in line]


def test_answers_never_point_plex_at_stash(provider, stash):
    for rating_key in ("1", "2", "3"):
        text = provider.get(f"/library/metadata/{rating_key}").text + provider.get(f"/library/metadata/{rating_key}/images").text
        assert stash.url not in text and "apikey" not in text.lower()


def test_provider_sends_the_key_to_stash_in_the_header_only(provider, stash):
    stash.reset_requests()
    provider.session.get(provider.metadata("5")["thumb"], timeout=10)
    image_requests = [r for r in stash.requests if r.path.startswith("/scene/")]
    assert image_requests and all(r.headers.get("apikey") == STASH_KEY for r in image_requests)
    assert all(r.param("apikey") is None for r in image_requests)
