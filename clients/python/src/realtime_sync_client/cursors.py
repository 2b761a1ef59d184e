"""Where the per-conversation cursors live between runs.

A cursor is the seq of the last change this device applied in a conversation.
The client saves after every change it applies, so a program that restarts
sends `sync` with exactly what it had applied: nothing is lost, and at worst
the change being applied at the moment of a crash comes again (apply changes
idempotently: a message by id, keeping the higher version).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class CursorStore(Protocol):
    """What the client needs from a store: read everything once, save everything often."""

    def load(self) -> dict[int, int]: ...

    def save(self, cursors: Mapping[int, int]) -> None: ...


class MemoryCursorStore:
    """Cursors kept for the life of the process only (the default)."""

    def __init__(self, cursors: Mapping[int, int] | None = None):
        self.cursors: dict[int, int] = dict(cursors or {})

    def load(self) -> dict[int, int]:
        return dict(self.cursors)

    def save(self, cursors: Mapping[int, int]) -> None:
        self.cursors = dict(cursors)


class JsonFileCursorStore:
    """Cursors in a JSON file, `{"cursors": {"12": 45}}`, replaced atomically
    (written to a temporary file in the same folder, then renamed over it), so a
    crash mid-write leaves the previous cursors rather than a broken file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> dict[int, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        cursors = data.get("cursors", {}) if isinstance(data, dict) else {}
        return {int(k): int(v) for k, v in cursors.items()}

    def save(self, cursors: Mapping[int, int]) -> None:
        text = json.dumps({"cursors": {str(k): v for k, v in sorted(cursors.items())}})
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
