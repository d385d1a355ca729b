from astcti.cti.events import Delivered
from astcti.cti.hub import Hub
from astcti.wire import Frame
from tests.cti.sink import Sink


def ev(ext: str, n: int = 0) -> Delivered:
    return Delivered(ext, f"c{n}", "t", alerting=ext)


def test_fan_out_only_to_monitors_of_the_extension() -> None:
    hub, a, b = Hub(), Sink(), Sink()
    assert hub.attach(a, "101") and hub.attach(b, "101") and hub.attach(b, "102")
    assert not hub.attach(a, "101")
    hub.publish(ev("101"))
    hub.publish(ev("102"))
    hub.publish(ev("103"))
    assert len(a.texts) == 1 and len(b.texts) == 2
    assert '"seq":1' in a.texts[0]
    assert hub.detach_all(b) == ["101", "102"]
    hub.publish(ev("101"))
    assert len(b.texts) == 2 and len(a.texts) == 2
    assert hub.monitor_counts() == {"101": 1}


def test_sequence_numbers_and_missed_events() -> None:
    hub = Hub(buffer_size=3)
    for n in range(5):
        hub.publish(ev("101", n))
    assert hub.last_seq("101") == 5
    assert hub.missed("101", 5) == []
    assert [f.text.count('"seq":') for f in hub.missed("101", 3)] == [1, 1]
    assert '"seq":4' in hub.missed("101", 3)[0].text
    assert hub.missed("101", 1) is None  # seq 2 fell out of the 3-event buffer
    assert hub.missed("101", 9) is None  # from the future (e.g. astcti restarted)
    assert hub.missed("102", 0) == []


def test_events_older_than_the_age_limit_are_gone() -> None:
    hub = Hub(buffer_age=0.0)
    hub.publish(ev("101"))
    hub.publish(ev("101"))
    assert hub.missed("101", 0) is None


def test_one_serialisation_shared_by_every_client_and_batched_per_client() -> None:
    hub, a, b = Hub(), Sink(), Sink()
    frames: list[list[Frame]] = []
    a.deliver_many = lambda fs: frames.append(fs)  # type: ignore[method-assign]
    hub.attach(a, "101")
    hub.attach(a, "102")
    hub.attach(b, "101")
    got_b: list[Frame] = []
    b.deliver = got_b.append  # type: ignore[method-assign]
    hub.publish_all([ev("101", 1), ev("102", 2)])
    assert len(frames) == 1 and [f.text.count('"callid":"c') for f in frames[0]] == [1, 1]
    assert got_b == [frames[0][0]]  # the very same frame object: serialised once
    assert frames[0][0].ws.startswith(b"\x81") and frames[0][0].line.endswith(b"\n")
