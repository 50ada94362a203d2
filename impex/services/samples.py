"""Try a descriptor on a sample file: its first rows as the engine reads them, with their errors; nothing written."""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from impex.exceptions import ConfigurationError, FileRejected
from impex.formats.readers import iter_records, scan
from impex.services.columns import compile_descriptor
from impex.services.imports import layout_of
from impex.services.pipeline import RecordPipeline

SAMPLE_ROWS = 20


@dataclass
class SampleCell:
    """One cell as the descriptor reads it: the value it becomes (as text), or why it is refused."""

    text: str = ""
    error: str = ""
    empty: bool = False


@dataclass
class SampleRow:
    """One record of the sample: its row number in the file, its cells in header order, its row problems."""

    row: int
    cells: list[SampleCell] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.problems) or any(cell.error for cell in self.cells)


@dataclass
class Sample:
    """What trying a descriptor on a file found."""

    problem: str = ""  # why the file would be rejected whole (or the descriptor cannot read files)
    header: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # column -> how it is read ("ignored", "key", ...)
    record_count: int = 0
    rows: list[SampleRow] = field(default_factory=list)

    @property
    def shown(self) -> list[str]:
        """Return the columns the rows show: those read (the ignored ones are only listed)."""
        return [name for name in self.header if self.notes.get(name) != "ignored"]

    @property
    def ignored(self) -> list[str]:
        return [name for name in self.header if self.notes.get(name) == "ignored"]

    @property
    def read(self) -> dict[str, str]:
        return {name: note for name, note in self.notes.items() if note != "ignored"}

    @property
    def refused_count(self) -> int:
        return sum(1 for row in self.rows if row.refused)


def show_value(value) -> str:
    """Show a converted value as it will be stored."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def descriptor_sample(*, descriptor, path: str | Path, max_bytes: int, tz: str = "UTC") -> Sample:
    """Read a sample file with a descriptor as an import would, and return its first rows; write nothing."""
    try:
        compiled = compile_descriptor(descriptor, tz=tz)
        layout = layout_of(descriptor)
    except ConfigurationError as exc:
        return Sample(problem=f"The descriptor cannot read files yet: {exc}")
    try:
        scanned = scan(path, layout=layout, max_bytes=max_bytes)
    except FileRejected as exc:
        return Sample(problem=f"The file would be rejected: {exc}")
    header = scanned.header
    sample = Sample(header=header, record_count=scanned.record_count)
    for name in header:
        if name in compiled.columns:
            column = compiled.columns[name]
            sample.notes[name] = f"{column.parent}.{column.field_name}" if column.parent else column.field_name
        elif compiled.reads_past(name):
            sample.notes[name] = "ignored"
        else:
            sample.notes[name] = "unknown"
    try:
        pipeline = RecordPipeline(compiled=compiled, header=header, connection_id=None, in_file=False)
    except FileRejected as exc:
        sample.problem = f"The file would be rejected: {exc}"
        return sample
    records = list(iter_records(path, layout=layout, header=header, stop=SAMPLE_ROWS, as_list=True))
    for reading in pipeline.read(records):
        row = SampleRow(row=reading.row, problems=reading.problems)
        if not reading.values and not reading.errors:
            sample.rows.append(row)
            continue
        for name in sample.shown:
            if name in reading.errors:
                row.cells.append(SampleCell(error=reading.errors[name]))
            else:
                value = reading.values.get(name)
                text = "" if value is None else show_value(value)
                row.cells.append(SampleCell(text=text, empty=text == ""))
        sample.rows.append(row)
    return sample
