"""Text cleaning: what Plex receives is always clean, bounded text."""

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sanitize import clean_date, clean_names, clean_text, truncate


def test_control_and_format_characters_are_removed():
    assert clean_text("a\x00b\u200bc\u202ed\x7f", 100) == "abcd"


def test_whitespace_collapses_to_single_spaces():
    assert clean_text("  one \t two\n\nthree  ", 100) == "one two three"


def test_summary_keeps_paragraphs_but_not_runs_of_blank_lines():
    assert clean_text("first  line\n\n\n\nsecond", 100, multiline=True) == "first line\n\nsecond"


def test_smart_quotes_become_ascii():
    assert clean_text("\u201cHi\u201d it\u2019s", 100) == "\"Hi\" it's"


def test_emoji_survive_including_joined_sequences():
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert clean_text(f"party \U0001F389 {family}", 100) == f"party \U0001F389 {family}"


def test_text_is_nfc_normalized():
    assert clean_text("Cafe\u0301", 100) == "Caf\u00e9"


def test_long_text_is_cut_at_a_word_boundary_with_an_ellipsis():
    cut = truncate("alpha beta gamma delta", 14)
    assert cut == "alpha beta..."
    assert len(cut) <= 14


def test_one_long_word_is_cut_inside_the_word():
    assert truncate("x" * 50, 10) == "xxxxxxx..."


def test_names_are_deduplicated_case_insensitively_and_capped():
    assert clean_names(["Drama", "drama", " ", "Comedy", "Action"], 255, 2) == ["Drama", "Comedy"]


def test_malformed_or_impossible_dates_are_dropped():
    assert clean_date("2024-02-30") is None
    assert clean_date("24-1-1") is None
    assert clean_date(None) is None
    assert clean_date("2024-02-29") == "2024-02-29"


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_clean_text_never_exceeds_the_limit_and_has_no_control_characters(text, limit):
    cleaned = clean_text(text, limit)
    assert len(cleaned) <= limit
    assert all(unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn") for ch in cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
