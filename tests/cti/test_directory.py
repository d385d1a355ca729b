"""Which link serves an extension when several Asterisks are configured."""

from __future__ import annotations

from astcti.cti.directory import Directory


class FakeLink:
    def __init__(self, name: str, endpoints: set[str], up: bool = True) -> None:
        self.name = name
        self.endpoints = endpoints
        self.up = up
        self.sources: set[str] = set()

    async def subscribe(self, sources) -> None:
        self.sources.update(sources)

    async def unsubscribe(self, sources) -> None:
        self.sources.difference_update(sources)


async def test_extension_is_served_by_the_asterisk_that_has_it() -> None:
    d = Directory()
    a = FakeLink("acti_tlink_01", {"PJSIP/101", "PJSIP/102"})
    b = FakeLink("acti_tlink_02", {"PJSIP/201"})
    d.add_link(a)  # type: ignore[arg-type]
    d.add_link(b)  # type: ignore[arg-type]
    for number in ("101", "201", "301"):
        await d.add(number, "PJSIP")
    await d.link_up(a)  # type: ignore[arg-type]
    await d.link_up(b)  # type: ignore[arg-type]
    assert d.serving == {"101": "acti_tlink_01", "201": "acti_tlink_02"}
    assert a.sources == {"endpoint:PJSIP/101", "deviceState:PJSIP/101"}
    assert b.sources == {"endpoint:PJSIP/201", "deviceState:PJSIP/201"}
    assert d.resolve("acti_tlink_02", "PJSIP/201") == "201"
    assert d.resolve("acti_tlink_01", "PJSIP/201") is None
    assert "is not an endpoint on any connected Asterisk" in d.why_unserved("301")
    assert d.why_unserved("999").startswith("unknown extension 999: add it with")
    await d.remove("201")
    assert b.sources == set() and d.link_of("201") is None


async def test_extension_added_while_linked_is_subscribed_at_once() -> None:
    d = Directory()
    a = FakeLink("acti_tlink_01", {"PJSIP/105"})
    d.add_link(a)  # type: ignore[arg-type]
    assert await d.add("105", "PJSIP") == "acti_tlink_01"
    assert "endpoint:PJSIP/105" in a.sources


async def test_down_links_are_named_in_the_error() -> None:
    d = Directory()
    d.add_link(FakeLink("acti_tlink_01", set(), up=False))  # type: ignore[arg-type]
    await d.add("101", "PJSIP")
    assert "Asterisk link is down" in d.why_unserved("101")
