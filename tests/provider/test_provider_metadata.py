"""`GET /library/metadata/{ratingKey}` and `/images`: every field as Stash has it."""

import requests

from pipeline.provider.documents import IDENTIFIER
from tests.emulators.stash import png_image


def expected_fields(scene):
    """What the provider must answer for an emulator scene (the sample data is already clean text)."""
    fields = {
        "ratingKey": scene["id"], "key": f"/library/metadata/{scene['id']}", "type": "movie",
        "guid": f"{IDENTIFIER}://movie/{scene['id']}", "title": scene["title"],
        "originallyAvailableAt": scene["date"], "year": int(scene["date"][:4]), "summary": scene["details"],
        "duration": int(round(scene["files"][0]["duration"] * 1000)), "isAdult": True,
        "Genre": [{"tag": tag["name"]} for tag in scene["tags"]] or None,
    }
    if scene["studio"]:
        fields["studio"] = scene["studio"]["name"]
        fields["Studio"] = [{"tag": scene["studio"]["name"]}]
    if scene["rating100"]:
        fields["audienceRating"] = scene["rating100"] / 10
    return {key: value for key, value in fields.items() if value is not None}


def test_every_field_equals_stash_for_every_scene(provider, stash, dataset):
    for sample in dataset.scenes:
        scene = stash.scene(sample["id"])
        item = provider.metadata(scene["id"])
        for key, value in expected_fields(scene).items():
            assert item[key] == value, (scene["id"], key)
        assert [role["tag"] for role in item.get("Role", [])] == [p["name"] for p in scene["performers"]]
        assert [role["order"] for role in item.get("Role", [])] == list(range(1, len(scene["performers"]) + 1))
        if not scene["studio"]:
            assert "studio" not in item
        if not scene["rating100"]:
            assert "audienceRating" not in item and "Rating" not in item


def test_rating_is_stash_rating100_on_a_ten_point_scale(provider, stash):
    stash.update_scene("2", rating100=87)
    provider.service.refresh_once()
    item = provider.metadata("2")
    assert item["audienceRating"] == 8.7
    assert item["Rating"][0]["value"] == 8.7 and item["Rating"][0]["type"] == "audience"


def test_tagline_is_the_studio_code_by_default(provider, stash):
    stash.update_scene("3", code="ABC-123")
    provider.service.refresh_once()
    assert provider.metadata("3")["tagline"] == "ABC-123"


def test_text_is_sanitized_as_the_chain_does(provider, stash):
    stash.update_scene("4", title="  Caf\u00e9\u200b \u201cquoted\u201d\t title ", details="line one\r\n\r\n\r\n\r\nline two")
    provider.service.refresh_once()
    item = provider.metadata("4")
    assert item["title"] == 'Caf\u00e9 "quoted" title'
    assert item["summary"] == "line one\n\nline two"


def test_a_scene_without_title_date_or_studio_falls_back_like_the_chain(provider, stash):
    stash.add_scene({"id": "700", "title": None, "date": None, "studio": None, "files": ["/data/videos/bare_file.mkv"]})
    provider.service.refresh_once()
    item = provider.metadata("700")
    assert item["title"] == "bare_file"
    assert "originallyAvailableAt" not in item and "year" not in item and "studio" not in item


def test_roles_have_performer_photos_served_by_the_provider(provider, stash):
    scene = next(stash.scene(str(i)) for i in range(1, 21) if stash.scene(str(i))["performers"])
    roles = provider.metadata(scene["id"])["Role"]
    for role, performer in zip(roles, scene["performers"]):
        assert role["thumb"].startswith(provider.url + f"/images/performer/{performer['id']}")
        photo = requests.get(role["thumb"], timeout=10)
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
        assert photo.content == png_image(f"performer:{performer['id']}")


def test_poster_and_background_are_the_stash_screenshot_served_by_the_provider(provider, stash):
    item = provider.metadata("5")
    assert item["thumb"] == item["art"] and item["thumb"].startswith(provider.url + "/images/scene/5/screenshot")
    assert [image["type"] for image in item["Image"]] == ["coverPoster", "background"]
    poster = requests.get(item["thumb"], timeout=10)
    assert poster.status_code == 200 and poster.content == png_image("scene:5:1")


def test_a_new_screenshot_in_stash_gets_a_new_image_url(provider, stash):
    before = provider.metadata("6")["thumb"]
    stash.bump_screenshot("6")
    provider.service.refresh_once()
    after = provider.metadata("6")["thumb"]
    assert after != before
    assert requests.get(after, timeout=10).content == png_image("scene:6:2")


def test_images_endpoint_lists_every_image_of_the_item(provider):
    response = provider.get("/library/metadata/7/images")
    assert response.status_code == 200
    container = response.json()["MediaContainer"]
    assert container["identifier"] == IDENTIFIER and container["size"] == 2
    assert {image["type"] for image in container["Image"]} == {"coverPoster", "background"}
    assert all(image["url"].startswith(provider.url + "/images/scene/7/") for image in container["Image"])


def test_image_urls_use_provider_public_url_when_set(start_provider):
    provider = start_provider(provider_public_url="http://plex-sees-me:8787")
    assert provider.metadata("1")["thumb"].startswith("http://plex-sees-me:8787/images/scene/1/screenshot?v=")


def test_unknown_rating_key_is_404(provider):
    assert provider.get("/library/metadata/999999").status_code == 404
    assert provider.get("/library/metadata/999999/images").status_code == 404


def test_rating_key_outside_the_allowed_characters_is_404(provider):
    assert provider.get("/library/metadata/1.2").status_code == 404
    assert provider.get("/library/metadata/abc$").status_code == 404


def test_unknown_image_is_404(provider):
    assert provider.get("/images/scene/424242/screenshot").status_code == 404
    assert provider.get("/images/performer/424242").status_code == 404


def test_a_scene_added_in_stash_is_served_before_the_next_refresh(start_provider, stash):
    provider = start_provider(provider_refresh_seconds=3600)
    stash.add_scene({"id": "555", "title": "Brand new", "files": ["/data/videos/brand_new.mp4"]})
    assert provider.metadata("555")["title"] == "Brand new"  # a miss asks Stash directly, bounded
    assert provider.matched_ids({"type": 1, "filename": "/data/videos/brand_new.mp4", "includeAdult": 1}) == ["555"]
