"""The generated sections of docs/architecture.md are what the code says now; the prose around them is kept."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from quorum import docs_gen


def test_the_committed_architecture_doc_is_current() -> None:
    committed = docs_gen.DOC.read_text()
    wanted = docs_gen.render(committed)
    if wanted != committed:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(keepends=True), wanted.splitlines(keepends=True),
                                                 "docs/architecture.md", "generated", n=0))[:40])
        pytest.fail(f"docs/architecture.md is out of date: run `{docs_gen.COMMAND}` and commit the result\n{diff}")


def _doc(bodies: dict[str, str]) -> str:
    return "".join(f"prose before {name}\n<!-- generated:{name}:start -->\n{body}<!-- generated:{name}:end -->\n"
                   for name, body in bodies.items()) + "closing prose\n"


def test_render_replaces_only_what_is_between_the_markers() -> None:
    stale = _doc({name: "| stale | row |\n" for name in docs_gen.SECTIONS})
    rendered = docs_gen.render(stale)
    assert "stale" not in rendered
    assert rendered == _doc({name: f"\n{section()}\n" for name, section in docs_gen.SECTIONS.items()})
    assert docs_gen.render(rendered) == rendered


def test_a_missing_section_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ValueError, match="'tables'"):
        docs_gen.render(_doc({name: "" for name in docs_gen.SECTIONS if name != "tables"}))


def test_check_mode_fails_on_drift_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "architecture.md"
    doc.write_text(_doc({name: "" for name in docs_gen.SECTIONS}))
    before = doc.read_text()
    assert docs_gen.main(["--check", "--doc", str(doc)]) == 1
    assert docs_gen.COMMAND in capsys.readouterr().err
    assert doc.read_text() == before
    assert docs_gen.main(["--doc", str(doc)]) == 0
    assert docs_gen.main(["--check", "--doc", str(doc)]) == 0


def test_catalogue_rows_show_routing_keys_producers_and_readers() -> None:
    events = docs_gen.events_section()
    assert ("| `quorum.md.candle_closed.<exchange>.<symbol>.<timeframe>` | `CandleClosed` (market_data) | event | 1 "
            "| market_data | `features-candles`, `risk-candles`, `matching-candles`, `ledger-candles` |") in events
    assert "| `quorum.control.shutdown_acknowledged` | `ShutdownAcknowledged` (control) | event | 1 | every service |" \
        in events
