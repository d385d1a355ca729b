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


async def test_same_number_on_two_asterisks_is_served_by_neither_until_pinned() -> None:
    d = Directory()
    a = FakeLink("acti_tlink_01", {"PJSIP/150", "PJSIP/101"})
    b = FakeLink("acti_tlink_02", set(), up=False)  # not connected yet: endpoints unknown
    d.add_link(a)  # type: ignore[arg-type]
    d.add_link(b)  # type: ignore[arg-type]
    await d.add("150", "PJSIP")
    await d.add("101", "PJSIP")
    assert await d.link_up(a) == []  # type: ignore[arg-type]
    assert d.serving == {"150": "acti_tlink_01", "101": "acti_tlink_01"}
    b.up, b.endpoints = True, {"PJSIP/150"}  # the second Asterisk connects: it has 150 too
    lost = await d.link_up(b)  # type: ignore[arg-type]
    assert [ext for ext, _ in lost] == ["150"]
    assert "will not guess" in lost[0][1] and "pin extension 150" in lost[0][1]
    assert d.serving == {"101": "acti_tlink_01"}
    assert "endpoint:PJSIP/150" not in a.sources and "endpoint:PJSIP/150" not in b.sources
    assert d.resolve("acti_tlink_01", "PJSIP/150") is None
    assert d.ambiguous("150") == ["acti_tlink_01", "acti_tlink_02"]
    assert d.why_unserved("150").startswith(
        "extension 150 is on 2 Asterisks (acti_tlink_01, acti_tlink_02): astcti will not guess")
    # order of connection does not matter: a restart where 02 comes first refuses it as well
    d2 = Directory()
    for link in (b, a):
        d2.add_link(link)  # type: ignore[arg-type]
    await d2.add("150", "PJSIP")
    assert await d2.link_up(b) == [] and await d2.link_up(a) == []  # type: ignore[arg-type]
    assert "150" not in d2.serving
    # pinned: served by that link only, whichever else has the endpoint
    assert await d.add("150", "PJSIP", "acti_tlink_02") == "acti_tlink_02"
    assert d.serving["150"] == "acti_tlink_02" and d.ambiguous("150") == []
    assert d.resolve("acti_tlink_02", "PJSIP/150") == "150"
    assert d.resolve("acti_tlink_01", "PJSIP/150") is None
    assert await d.link_up(a) == []  # type: ignore[arg-type]
    assert d.serving["150"] == "acti_tlink_02"


async def test_pinned_extension_errors_name_the_pinned_link() -> None:
    d = Directory()
    a = FakeLink("acti_tlink_01", {"PJSIP/150"})
    b = FakeLink("acti_tlink_02", set())
    d.add_link(a)  # type: ignore[arg-type]
    d.add_link(b)  # type: ignore[arg-type]
    assert await d.add("150", "PJSIP", "acti_tlink_02") is None
    assert "not an endpoint on acti_tlink_02, the link it is pinned to" in d.why_unserved("150")
    assert await d.add("150", "PJSIP", "acti_tlink_09") is None
    assert "pinned to acti_tlink_09, which is not configured" in d.why_unserved("150")
    b.endpoints.add("PJSIP/150")
    b.up = False
    assert await d.add("150", "PJSIP", "acti_tlink_02") is None
    assert "acti_tlink_02 is down" in d.why_unserved("150")
    assert d.serving["150"] == "acti_tlink_02"  # kept while the link is down: linkup follows


async def test_a_served_extension_stays_with_its_link_while_that_link_is_down() -> None:
    d = Directory()
    a = FakeLink("acti_tlink_01", {"PJSIP/101"})
    b = FakeLink("acti_tlink_02", {"PJSIP/201"})
    for link in (a, b):
        d.add_link(link)  # type: ignore[arg-type]
    await d.add("101", "PJSIP")
    await d.add("201", "PJSIP")
    await d.link_up(a)  # type: ignore[arg-type]
    await d.link_up(b)  # type: ignore[arg-type]
    a.up = False  # Asterisk 01 is killed; 02 reconnects meanwhile
    assert await d.link_up(b) == []  # type: ignore[arg-type]
    assert d.serving == {"101": "acti_tlink_01", "201": "acti_tlink_02"}
    assert "Asterisk link acti_tlink_01 is down" in d.why_unserved("101")
