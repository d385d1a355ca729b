"""The dial policy language: Asterisk patterns, `internal`, and the suggested fix."""

from __future__ import annotations

import pytest

from astcti.cti.dialpolicy import DEFAULT_POLICY, PolicyError, parse_policy, suggest

EXTENSIONS = {"101", "102", "2001"}


@pytest.mark.parametrize("number, allowed", [
    ("101", True), ("2001", True),  # configured extensions (internal)
    ("105", False),  # not configured: not internal
    ("0112345678", True), ("0612345678", True), ("0712345678", True),  # national, mobile
    ("0812345678", False), ("0899123456", False), ("0912345678", False),  # special, premium
    ("0044201234567", False), ("+442012345678", False), ("011442012345", True),
    ("00", False), ("0", False), ("01", False),  # `.` needs at least one more character
    ("102@from-internal", False), ("0112345678@trunk", False), ("*97", False),
])
def test_default_policy(number: str, allowed: bool) -> None:
    assert parse_policy(DEFAULT_POLICY).allows(number, EXTENSIONS) is allowed


@pytest.mark.parametrize("pattern, yes, no", [
    ("_NXXNXXXXXX", ["2125551234"], ["1125551234", "212555123"]),
    ("_1[2-9]XX", ["1234", "1999"], ["1134", "12345"]),
    ("_00X.", ["0044201234567", "0012"], ["001", "0144"]),
    ("_+X.", ["+442012345678"], ["442012345678"]),
    ("_9!", ["9", "95550001"], ["8"]),
    ("_Z", ["1", "9"], ["0", "11"]),
    ("112", ["112"], ["1120", "11"]),
    ("*97", ["*97"], ["*98"]),
])
def test_asterisk_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    policy = parse_policy(pattern)
    assert all(policy.allows(n, ()) for n in yes)
    assert not any(policy.allows(n, ()) for n in no)


@pytest.mark.parametrize("text, words", [
    ("_0[1-7X.", "[ without ]"), ("_0]X", "] without ["), ("_", "nothing after _"),
    ("_0[]X", "empty [] set"), ("0 1", "use digits"), ("_0(1)", "use digits"),
])
def test_bad_policies_name_the_entry(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(f"internal,{text}")


def test_empty_policy_allows_nothing_and_suggestions_allow_the_number() -> None:
    assert not parse_policy("").allows("101", EXTENSIONS)
    for number in ("0044201234567", "0899123456", "95550001", "+442012345678", "112"):
        assert parse_policy(suggest(number)).allows(number, ())
    assert suggest("0044201234567") == "_0044X."
