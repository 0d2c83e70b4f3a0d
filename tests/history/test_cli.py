"""`dmp history generate` and `dmp history import` (NDJSON and CSV) against the service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from dmp_cli.main import app
from services.history_feed.linefile import read_lines, write_lines
from tests.fixtures.history import HistoryClient
from tests.history.cda_sample import sample_lines
from tests.history.lines import prefix


def test_generate_writes_valid_shapes(tmp_path: Path) -> None:
    out = tmp_path / "lines.csv"
    result = CliRunner().invoke(
        app, ["history", "generate", str(out), "--count", "300", "--patients", "20"]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as handle:
        lines = list(read_lines(handle, "csv"))
    assert len(lines) == 300
    kinds = {line.WhichOneof("details") for line in lines}
    assert {"drug", "medical_act", "biology"} <= kinds


async def _invoke(*args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def test_import_csv_then_again(history: HistoryClient, tmp_path: Path) -> None:
    pfx = prefix()
    out = tmp_path / "feed.csv"
    await _invoke("history", "generate", str(out), "--count", "120", "--prefix", pfx)
    target = history.running.target
    first = await _invoke("history", "import", str(out), "--target", target, "--batch", "50")
    assert "accepted" in first
    assert len(await history.stored(pfx)) == 120
    again = await _invoke("history", "import", str(out), "--target", target, "--batch", "50")
    assert "duplicate" in again
    assert "120" in again


async def test_import_ndjson_from_cnam_sample(history: HistoryClient, tmp_path: Path) -> None:
    pfx = prefix()
    lines = sample_lines()
    for line in lines:
        line.line_id = pfx + line.line_id
    lines[0].billed_amount_cents = -5  # one bad line: reported with its reason
    out = tmp_path / "cnam.ndjson"
    with out.open("w", encoding="utf-8") as handle:
        write_lines(handle, lines, "ndjson")
    output = await _invoke("history", "import", str(out), "--target", history.running.target)
    assert "INVALID_AMOUNT: 1" in output
    assert len(await history.stored(pfx)) == 24
