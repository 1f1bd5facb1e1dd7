"""What one conversion leaves for the report page: a record and two pictures under the page's ``.vinv/`` folder.

The page of a folder shows every input converted under it, in this run or an earlier one, so it is
built from files on disk rather than from one run's outcomes: for each output name (``kick`` of
``kick.vital``) the worker that converted it writes ``.vinv/files/<folder>/kick.json`` (this
record) and ``kick.input.png``/``kick.preview.png`` beside it, where ``<folder>`` is the output
folder relative to the page's folder. Paths in a record are relative to the output folder, so a
folder that is moved or copied whole keeps its page. No numpy here: the watch daemon reads records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_FOLDER = ".vinv"  # beside the page: its records, pictures and scripts; hidden, so never an input
RECORDS_FOLDER = "files"
RECORD_SUFFIX = ".json"
INPUT_PICTURE_SUFFIX = ".input.png"
PREVIEW_PICTURE_SUFFIX = ".preview.png"
CONVERTED, FAILED = "converted", "failed"
MAX_RECORD_BYTES = 1024 * 1024
PICTURE_WIDTH, PICTURE_HEIGHT = 320, 120  # pixels of each picture, as converter.app.report.pictures draws them


@dataclass(frozen=True)
class VariationRecord:
    """One alternative preset written beside the chosen one."""

    preset: str  # file name, in the output folder
    method: str
    similarity: float


@dataclass(frozen=True)
class Record:
    """One input's latest conversion: what the page shows in its row."""

    status: str  # CONVERTED or FAILED
    input: str  # the input, relative to the output folder (``kick.wav``, or ``../../pack/kick.wav`` with --out)
    preset: str = ""  # file names in the output folder
    preview: str = ""
    note: str = ""
    similarity: float | None = None
    method: str = ""  # which candidate won: a key of converter.convert.METHOD_NAMES
    summary: str = ""  # the settings that matter most, as the preset's comments give them
    variations: tuple[VariationRecord, ...] = field(default=())
    pictures: bool = False  # the two PNGs were made
    error: str = ""
    seconds: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        """Raises ValueError for anything that is not a record this version wrote."""
        values = json.loads(data)
        if not isinstance(values, dict) or values.get("status") not in (CONVERTED, FAILED):
            raise ValueError("not a vinv record")
        try:
            variations = tuple(VariationRecord(str(item["preset"]), str(item["method"]), float(item["similarity"]))
                               for item in values.get("variations", ()))
            similarity = values.get("similarity")
            return cls(
                status=values["status"], input=str(values["input"]), preset=str(values.get("preset", "")),
                preview=str(values.get("preview", "")), note=str(values.get("note", "")),
                similarity=None if similarity is None else float(similarity), method=str(values.get("method", "")),
                summary=str(values.get("summary", "")), variations=variations,
                pictures=bool(values.get("pictures", False)), error=str(values.get("error", "")),
                seconds=float(values.get("seconds", 0.0)),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a vinv record ({error})") from None


@dataclass(frozen=True)
class RecordPlace:
    """Where the record and pictures of one output name go: ``<page>/.vinv/files/<folder>/<name>``."""

    base: Path

    @property
    def record(self) -> Path:
        return self.base.with_name(self.base.name + RECORD_SUFFIX)

    @property
    def input_picture(self) -> Path:
        return self.base.with_name(self.base.name + INPUT_PICTURE_SUFFIX)

    @property
    def preview_picture(self) -> Path:
        return self.base.with_name(self.base.name + PREVIEW_PICTURE_SUFFIX)


def record_place(page_root: Path, output_folder: Path, name: str) -> RecordPlace:
    """The place for output name ``name`` (``kick`` of ``kick.vital``) of ``output_folder``, under ``page_root``."""
    relative = Path(os.path.relpath(output_folder, page_root))
    if relative.parts[:1] == ("..",):
        raise ValueError(f"{output_folder} is not inside {page_root}")
    return RecordPlace(page_root / REPORT_FOLDER / RECORDS_FOLDER / relative / name)


def read_records(page_root: Path) -> Iterator[tuple[Path, RecordPlace, Record]]:
    """Every readable record under ``page_root``: its output folder, its place and the record, sorted by path."""
    top = page_root / REPORT_FOLDER / RECORDS_FOLDER
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        here = Path(dirpath)
        output_folder = page_root / here.relative_to(top)
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(RECORD_SUFFIX):
                continue
            path = here / name
            try:
                if path.stat().st_size > MAX_RECORD_BYTES:
                    continue
                record = Record.from_json(path.read_bytes())
            except (OSError, ValueError, RecursionError):
                continue
            yield output_folder, RecordPlace(here / name[: -len(RECORD_SUFFIX)]), record
