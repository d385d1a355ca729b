"""Trace lines never carry secrets and cost nothing when nobody traces."""

from astcti.admin.trace import TraceBus, mask, summarize_ari


def test_mask_hides_passwords_and_tokens_at_any_depth() -> None:
    masked = mask({"request": "login", "username": "u", "password": "p4ss",
                   "nested": [{"token": "t0k"}], "Secret": "x", "empty": ""})
    assert masked == {"request": "login", "username": "u", "password": "***",
                      "nested": [{"token": "***"}], "Secret": "***", "empty": ""}


def test_client_trace_masks_login() -> None:
    bus, lines = TraceBus(), []
    bus.on_client(object(), '{"id":"1","request":"login","password":"hunter22"}',
                  {"msgtype": "response", "token": "abcdef"})
    assert lines == []  # nobody traces: nothing formatted or sent
    bus.subscribe("client", lambda ch, line: lines.append(line))
    bus.on_client(object(), '{"id":"1","request":"login","password":"hunter22"}',
                  {"msgtype": "response", "token": "abcdef"})
    assert len(lines) == 2 and "hunter22" not in "".join(lines) and "abcdef" not in "".join(lines)


def test_ari_summary() -> None:
    line = summarize_ari({"type": "ChannelStateChange",
                          "channel": {"name": "PJSIP/101-00000001", "state": "Ringing",
                                      "caller": {"number": "0912"}}})
    assert line == "ChannelStateChange PJSIP/101-00000001 state=Ringing caller=0912"
