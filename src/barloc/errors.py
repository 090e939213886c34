"""User-facing errors: one line that names the file, the record and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with a user's input file or config, reported without a traceback."""

    def __init__(
        self,
        path: str | Path | None,
        problem: str,
        record: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.record = record
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path] if self.path else []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.problem}" if prefix else self.problem
