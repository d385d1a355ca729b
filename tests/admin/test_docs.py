from pathlib import Path

from astcti.admin.docs import render


def test_admin_shell_md_is_generated_from_the_declarations() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "admin-shell.md"
    assert path.read_text() == render(), (
        "docs/admin-shell.md is stale: run `python -m astcti.admin.docs > docs/admin-shell.md`")
