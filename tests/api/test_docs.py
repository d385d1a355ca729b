from pathlib import Path

from astcti.api.docs import render


def test_protocol_md_is_generated_from_the_declarations() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    assert path.read_text() == render(), (
        "docs/protocol.md is stale: run `python -m astcti.api.docs > docs/protocol.md`")
