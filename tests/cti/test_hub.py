from astcti.cti.events import Delivered
from astcti.cti.hub import Hub


class Sink:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def deliver(self, text: str) -> None:
        self.texts.append(text)


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
    assert [t.count('"seq":') for t in hub.missed("101", 3)] == [1, 1]
    assert '"seq":4' in hub.missed("101", 3)[0]
    assert hub.missed("101", 1) is None  # seq 2 fell out of the 3-event buffer
    assert hub.missed("101", 9) is None  # from the future (e.g. astcti restarted)
    assert hub.missed("102", 0) == []


def test_events_older_than_the_age_limit_are_gone() -> None:
    hub = Hub(buffer_age=0.0)
    hub.publish(ev("101"))
    hub.publish(ev("101"))
    assert hub.missed("101", 0) is None
