"""The development SMS provider: private file, whole lines under concurrency."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from services.notify.sms import FileSmsSink, SmsProvider, provider_from_settings


async def test_lines_are_appended_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "outbox.ndjson"
    sink = FileSmsSink(path)
    await sink.send("+33612345678", "DMP : votre code de connexion est 123456.")
    await sink.send("+33700000000", "second")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["to"] for line in lines] == ["+33612345678", "+33700000000"]
    assert lines[0]["text"] == "DMP : votre code de connexion est 123456."
    assert lines[0]["time"].endswith("+00:00")
    assert path.stat().st_mode & 0o777 == 0o600


async def test_an_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "outbox.ndjson"
    path.write_text("")
    os.chmod(path, 0o644)
    await FileSmsSink(path).send("+33612345678", "x")
    assert path.stat().st_mode & 0o777 == 0o600


async def test_concurrent_writes_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "outbox.ndjson"
    sinks = [FileSmsSink(path), FileSmsSink(path)]  # two writers, like two replicas
    long_text = "é" * 5000
    await asyncio.gather(
        *(sinks[i % 2].send(f"+3361234{i:04d}", f"{i}:{long_text}") for i in range(100))
    )
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 100
    assert sorted(int(line["text"].split(":")[0]) for line in lines) == list(range(100))
    assert all(line["text"].endswith(long_text) for line in lines)


def test_provider_selection(tmp_path: Path) -> None:
    provider: SmsProvider = provider_from_settings("file", str(tmp_path / "x.ndjson"))
    assert isinstance(provider, FileSmsSink)
