"""The report page: pictures, records, the HTML, and the page in a real headless Chromium from file://.

Conversions here go through the converter's contract (mode, variations, method, summary) with a
stand-in that writes real audio, so the pictures, players and links are the real thing; the
converter itself is tested in test_convert.py.
"""

from __future__ import annotations

import csv
import html.parser
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse
from urllib.request import url2pathname

import numpy as np
import pytest
import soundfile
from test_batch import write_tone
from test_watch import wait_for

from converter.app import batch
from converter.app.jobs import ALT_PRESET_INFIX, MODES, VINV_AUTHOR, Status, WorkerSetup, convert_job, plan_job
from converter.app.report.page import PAGE_NAME, STAMP_NAME, write_page
from converter.app.report.pictures import HEIGHT, OTHER_CURVE, OWN_CURVE, WIDTH, palette, picture_pair
from converter.app.report.png import indexed_png
from converter.app.report.records import REPORT_FOLDER, Record, VariationRecord, record_place
from converter.app.watch import WatchedFolder

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
HOSTILE_NAMES = ['a "quote".wav', "<script>alert(1).wav", "<img src=x onerror=alert(2)>.wav", "ünï cødé ✓.wav",
                 "with space.wav", "it's & more.wav"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@dataclass(frozen=True)
class StandInVariation:
    preset_path: Path
    method: str
    distance: float
    similarity: float


@dataclass(frozen=True)
class StandInResult:
    input_path: Path
    preset_path: Path
    preview_path: Path
    note: int
    cents: float
    pitched: bool
    note_length: float
    distance: float
    similarity: float
    refined: bool
    method: str
    summary: str
    variations: tuple[StandInVariation, ...]


def contract_conversion(path, *, model, out_dir, refine_seconds, threads, mode, variations):
    """converter.convert.convert's contract with a stand-in: the preview is the input, distorted; files named
    bad* fail. The score depends on the name, so that sorting has something to sort."""
    path, out_dir = Path(path), Path(out_dir)
    if path.name.startswith("bad"):
        raise ValueError(f"{path.name}: no note found <b>in</b> this")
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    preset, preview = out_dir / f"{path.stem}.vital", out_dir / f"{path.stem}.preview.wav"
    preset.write_text(json.dumps({"author": VINV_AUTHOR, "mode": mode}))
    soundfile.write(preview, np.tanh(4.0 * audio.mean(axis=1)), rate)
    alternatives = []
    for number in range(1, variations + 1):
        alternative = out_dir / f"{path.stem}{ALT_PRESET_INFIX}{number}.vital"
        alternative.write_text(json.dumps({"author": VINV_AUTHOR, "variation": number}))
        alternatives.append(StandInVariation(alternative, "patch", 1.0, 50.0 - number))
    similarity = float(sum(map(ord, path.name)) % 90)
    return StandInResult(path, preset, preview, 57, 0.0, True, 0.5, 1.0, similarity, False,
                         "patch" if mode == "patch" else "resynth", "Saw table; filter off; amp A 0.01 s R 0.3 s",
                         tuple(alternatives))


def decode_png(data: bytes) -> np.ndarray:
    """(height, width, channels) uint8 of an 8-bit, non-interlaced greyscale/RGB/RGBA or indexed PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * channels)
    rows = np.zeros((height, width * channels), np.int32)
    previous = np.zeros(width * channels, np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) % 256
        else:
            row = np.zeros_like(line)
            for x in range(line.size):
                left = row[x - channels] if x >= channels else 0
                up, corner = previous[x], previous[x - channels] if x >= channels else 0
                if kind == 1:
                    guess = left
                elif kind == 3:
                    guess = (left + up) // 2
                else:
                    p = left + up - corner
                    guess = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                row[x] = (line[x] + guess) % 256
        rows[y], previous = row, row
    pixels = rows.astype(np.uint8).reshape(height, width, channels)
    if colour == 3:
        pixels = np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)[pixels[..., 0]]
    return pixels


def pluck(seconds: float = 0.6, hz: float = 220.0, rate: int = 22050) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-5 * t)).astype(np.float32)


def test_png_writer_writes_valid_indexed_pngs():
    pixels = (np.arange(6 * 7).reshape(6, 7) % 5).astype(np.uint8)
    colours = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)], np.uint8)
    decoded = decode_png(indexed_png(pixels, colours))
    assert decoded.shape == (6, 7, 3) and np.array_equal(decoded, colours[pixels])
    for pixels, colours in [(np.zeros((0, 3), np.uint8), colours), (np.full((2, 2), 5, np.uint8), colours),
                            (np.zeros((2, 2), np.uint8), np.zeros((300, 3), np.uint8))]:
        with pytest.raises(ValueError):
            indexed_png(pixels, colours)


def test_both_pictures_share_their_scales():
    tone, rate = pluck(), 22050
    same = [decode_png(picture)[..., :3] for picture in picture_pair(tone, rate, tone, rate)]
    spectrum = lambda pixels: ~np.all(pixels[..., None, :] == palette()[[OTHER_CURVE, OWN_CURVE]], axis=-1).any(-1)
    assert np.array_equal(same[0][spectrum(same[0])], same[1][spectrum(same[0])])  # same sound, same picture

    input_picture, silent_picture = (decode_png(picture)[..., :3]
                                     for picture in picture_pair(tone, rate, np.zeros(rate // 2, np.float32), rate))
    assert input_picture.shape == silent_picture.shape == (HEIGHT, WIDTH, 3)
    floor = palette()[0]
    assert (np.all(input_picture == floor, axis=-1)).mean() < 0.9  # the tone shows
    silent_spectrum = silent_picture[np.all(silent_picture != palette()[OTHER_CURVE], axis=-1)]
    assert np.all(silent_spectrum == floor)  # silence stays at the bottom of the shared scale...
    assert np.all(silent_picture == palette()[OTHER_CURVE], axis=-1).sum() > WIDTH // 2  # ...under the input's curve


def write_record(page_root: Path, folder: Path, name: str, record: Record) -> None:
    place = record_place(page_root, folder, name)
    place.base.parent.mkdir(parents=True, exist_ok=True)
    place.record.write_bytes(record.to_json())


class Elements(html.parser.HTMLParser):
    """Every start tag of a document with its attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(document: str) -> Elements:
    elements = Elements()
    elements.feed(document)
    return elements


def linked_files(page: Path, document: str) -> dict[str, list[Path]]:
    """The files each img, audio and link of ``document`` (as ``page``) points to, by tag."""
    base = page.resolve().as_uri()
    found: dict[str, list[Path]] = {"img": [], "audio": [], "a": []}
    for tag, attributes in parse(document).tags:
        url = attributes.get("src") if tag in ("img", "audio") else attributes.get("href") if tag == "a" else None
        if url is None:
            continue
        target = urlparse(urljoin(base, url))
        assert target.scheme == "file", url
        found[tag].append(Path(url2pathname(unquote(target.path))))
    return found


def assert_links_stay_inside(page: Path, document: str) -> dict[str, list[Path]]:
    found = linked_files(page, document)
    for paths in found.values():
        for path in paths:
            assert path.is_file(), path
            assert os.path.realpath(path).startswith(os.path.realpath(page.parent) + os.sep), path
    return found


def test_the_page_escapes_every_name_and_never_links_outside_its_folder(tmp_path):
    root, outside = tmp_path / "pack", tmp_path / "outside"
    outside.mkdir()
    write_tone(outside / "elsewhere.wav")
    for name in HOSTILE_NAMES:
        source = write_tone(root / name)
        stem = source.stem
        (root / f"{stem}.vital").write_text("{}")
        (root / f"{stem}.alt-1.vital").write_text("{}")
        write_tone(root / f"{stem}.preview.wav")
        write_record(root, root, stem, Record(
            "converted", source.name, preset=f"{stem}.vital", preview=f"{stem}.preview.wav", note="C3",
            similarity=50.0, method=f"<b>{stem}</b>", summary=f"summary of {name}",
            variations=(VariationRecord(f"{stem}.alt-1.vital", "patch", 40.0),)))
    (root / "escape.vital").symlink_to(outside / "elsewhere.wav")  # a link that leads out of the folder
    write_record(root, root, "escape", Record("converted", "../outside/elsewhere.wav", preset="escape.vital",
                                              preview="../outside/elsewhere.wav", similarity=10.0))
    write_tone(root / "bad <i>.wav")
    write_record(root, root, "bad <i>", Record("failed", "bad <i>.wav", error='no "note" <script>x()</script>'))

    document = write_page(root).read_text(encoding="utf-8")
    elements = parse(document)
    assert [tag for tag, _ in elements.tags if tag == "script"] == ["script"]  # only the page's own
    assert {tag for tag, _ in elements.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "h1",
                                                  "h2", "p", "div", "button",
                                                  "audio", "a", "ul", "li", "span", "section", "script"}
    text = "".join(elements.text)
    for name in HOSTILE_NAMES:
        assert name in text and f"<b>{Path(name).stem}</b>" in text
    assert 'no "note" <script>x()</script>' in text
    found = assert_links_stay_inside(root / PAGE_NAME, document)
    assert {path.name for path in found["audio"]} == {*HOSTILE_NAMES, *(f"{Path(n).stem}.preview.wav" for n in
                                                                          HOSTILE_NAMES)}
    assert "elsewhere" not in " ".join(str(path) for paths in found.values() for path in paths)


def run_chromium(page: Path, profile: Path, *arguments: str, fragment: str = "") -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` from file:// (``fragment``: the part after #), with nothing from the network."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1280,900", *arguments,
         page.resolve().as_uri() + (f"#{fragment}" if fragment else "")],
        capture_output=True, text=True, timeout=120,
    )


def make_pack(root: Path, names: list[str]) -> None:
    for k, name in enumerate(names):
        write_tone(root / name, seconds=0.6, hz=110.0 * 2 ** (k / 5))


@needs_chromium
@pytest.mark.slow
def test_chromium_loads_the_batch_page_from_file_urls_with_every_picture_and_player(tmp_path):
    pack = tmp_path / "My Pack"
    make_pack(pack, [*HOSTILE_NAMES, "drums/kick.wav", "bad.wav"])
    report = batch.convert_folders([pack], workers=2, variations=2, progress=False, conversion=contract_conversion)
    assert report.count(Status.CONVERTED) == len(HOSTILE_NAMES) + 1 and len(report.failures) == 1
    page = write_page(pack)

    shown = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = shown.stdout
    found = assert_links_stay_inside(page, dom)
    assert len(found["img"]) == len(found["audio"]) == 2 * (len(HOSTILE_NAMES) + 1)
    assert all(path.suffix == ".png" and REPORT_FOLDER in path.parts for path in found["img"])
    assert sum(path.name.endswith(".alt-2.vital") for path in found["a"]) == len(HOSTILE_NAMES) + 1
    tags = parse(dom).tags
    assert all(attributes.get("loading") == "lazy" for tag, attributes in tags if tag == "img")
    assert all(attributes.get("preload") == "none" for tag, attributes in tags if tag == "audio")
    assert [tag for tag, _ in tags if tag == "script"] == ["script"]
    assert "bad.wav" in dom and "no note found &lt;b&gt;in&lt;/b&gt; this" in dom

    scores = [float(attributes["data-score"]) for tag, attributes in tags if "data-score" in attributes]
    assert scores != sorted(scores, reverse=True)  # by name at first...
    # ...and by score once asked: the sort buttons keep their choice in the address
    by_score = run_chromium(page, tmp_path / "profile", "--dump-dom", fragment="sort=best")
    best_first = [float(attributes["data-score"]) for tag, attributes in parse(by_score.stdout).tags
                  if "data-score" in attributes]
    assert best_first == sorted(scores, reverse=True)

    screenshot = tmp_path / "page.png"
    taken = run_chromium(page, tmp_path / "profile", f"--screenshot={screenshot}")
    assert taken.returncode == 0 and screenshot.is_file(), taken.stderr[-2000:]
    pixels = decode_png(screenshot.read_bytes())[..., :3]
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 500  # pictures, not an empty or broken page
    dark = np.all(pixels < 40, axis=-1).mean()  # the spectrograms' background
    assert 0.05 < dark < 0.9


def test_a_job_moves_variations_into_place_and_never_over_a_users_file(tmp_path):
    source = write_tone(tmp_path / "lead.wav", seconds=0.5)
    (tmp_path / "lead.alt-2.vital").write_text(json.dumps({"author": "Me"}))
    (tmp_path / "lead.alt-4.vital").write_text(json.dumps({"author": VINV_AUTHOR}))  # from a run with more
    job = plan_job(source, tmp_path, os.listdir(tmp_path), page_root=tmp_path)
    outcome = convert_job(job, contract_conversion, model=None, refine_seconds=0.0, threads=1, mode="patch",
                          variations=3, write_error_report=False)
    assert outcome.status is Status.CONVERTED and outcome.method == "patch"
    assert [variation.preset.name for variation in outcome.variations] == ["lead.alt-1.vital", "lead.alt-3.vital"]
    assert json.loads((tmp_path / "lead.alt-2.vital").read_text()) == {"author": "Me"}
    assert json.loads((tmp_path / "lead.alt-3.vital").read_text())["variation"] == 3
    assert not (tmp_path / "lead.alt-4.vital").exists()
    assert json.loads(job.preset.read_text())["mode"] == "patch"
    place = job.record_place()
    record = Record.from_json(place.record.read_bytes())
    assert (record.status, record.input, record.preset, record.method, record.pictures) == (
        "converted", "lead.wav", "lead.vital", "patch", True)
    assert [variation.preset for variation in record.variations] == ["lead.alt-1.vital", "lead.alt-3.vital"]
    assert place.input_picture.is_file() and place.preview_picture.is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".vinv", "lead.alt-1.vital", "lead.alt-2.vital", "lead.alt-3.vital", "lead.preview.wav", "lead.vital",
        "lead.wav"]

    again = convert_job(job, contract_conversion, model=None, refine_seconds=0.0, threads=1, mode="best",
                        variations=0, write_error_report=False)
    assert again.variations == () and sorted(path.name for path in tmp_path.glob("*.alt-*")) == ["lead.alt-2.vital"]


def test_the_csv_carries_method_variations_and_summary_and_a_rerun_keeps_them(tmp_path):
    make_pack(tmp_path / "pack", ["kick.wav", "bad.wav"])
    report = batch.convert_folders([tmp_path / "pack"], out_dir=tmp_path / "out", workers=1, variations=1,
                                   progress=False, conversion=contract_conversion)
    report.write_csv(tmp_path / "report.csv")
    rows = {Path(row["file"]).name: row for row in csv.DictReader((tmp_path / "report.csv").open())}
    assert rows["kick.wav"]["method"] == "resynth" and rows["kick.wav"]["summary"].startswith("Saw table")
    assert rows["kick.wav"]["variations"] == "kick.alt-1.vital 49.0"
    assert rows["bad.wav"]["status"] == "failed" and rows["bad.wav"]["error"].startswith("no note found")

    rerun = batch.convert_folders([tmp_path / "pack"], out_dir=tmp_path / "out", workers=1, progress=False,
                                  conversion=contract_conversion)
    skipped = {outcome.source.name: outcome for outcome in rerun.outcomes}["kick.wav"]
    assert skipped.status is Status.SKIPPED and skipped.method == "resynth" and skipped.variations
    document = write_page(tmp_path / "out").read_text(encoding="utf-8")
    assert "kick.wav" in document and "the input is not in this folder" in document  # --out: inputs are elsewhere
    assert_links_stay_inside(tmp_path / "out" / PAGE_NAME, document)


def test_mode_and_variations_reach_the_workers_from_both_command_lines_and_the_settings(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(batch, "convert_folders",
                        lambda folders, **options: seen.update(options) or batch.BatchReport())
    write_tone(tmp_path / "kick.wav")
    assert batch.main([str(tmp_path), "--mode", "resynth", "--variations", "3", "--quiet"]) == batch.EXIT_OK
    assert (seen["mode"], seen["variations"]) == ("resynth", 3)
    assert (tmp_path / PAGE_NAME).is_file()
    for bad in (["--mode", "sample"], ["--variations", "-1"]):
        with pytest.raises(SystemExit):
            batch.main([str(tmp_path), *bad])

    from converter.app import watch
    from converter.app.config import WatchSettings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings_file = tmp_path / "config" / "vinv" / "config.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps({"mode": "patch", "variations": 2}))
    assert (WatchSettings.load().mode, WatchSettings.load().variations) == ("patch", 2)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    captured = {}

    class Unstartable:
        def __init__(self, folder, **options):
            captured.update(options)

        def start(self):
            raise NotADirectoryError("not starting in this test")

    monkeypatch.setattr(watch, "WatchedFolder", Unstartable)
    handlers = list(logging.getLogger("vinv").handlers)
    try:
        assert watch.main(["--mode", "resynth", str(tmp_path / "inbox"), "--log-file", str(tmp_path / "log")]) == 2
    finally:
        logging.getLogger("vinv").handlers[:] = handlers
    assert (captured["mode"], captured["variations"]) == ("resynth", 2)
    settings_file.write_text(json.dumps({"mode": "sample"}))
    with pytest.raises(SystemExit):
        watch.main(["--print-config"])
    assert WorkerSetup().mode == MODES[0]


def test_the_modes_are_the_converters():
    from converter.convert import MODES as CONVERTER_MODES

    assert MODES == CONVERTER_MODES


@needs_chromium
@pytest.mark.slow
def test_the_watched_folders_page_updates_after_a_drop(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with WatchedFolder(inbox, workers=1, variations=1, settle_seconds=0.2, conversion=contract_conversion):
        page, stamp = inbox / PAGE_NAME, inbox / REPORT_FOLDER / STAMP_NAME
        wait_for(stamp.is_file, 30, "the page of the empty inbox")  # written after the page
        first_stamp = stamp.read_text()
        assert "Nothing converted here yet" in page.read_text(encoding="utf-8")
        write_tone(inbox / "new <drop>.wav", seconds=0.5)
        wait_for(lambda: "new &lt;drop&gt;.wav" in page.read_text(encoding="utf-8"), 60, "the drop on the page")
        wait_for(lambda: stamp.read_text() != first_stamp, 30, "the stamp an open page polls, to reload itself")
        write_tone(inbox / "gone.wav", seconds=0.5)
        wait_for(lambda: "gone.wav" in page.read_text(encoding="utf-8"), 60, "a second drop on the page")
        (inbox / "gone.wav").unlink()
        wait_for(lambda: "gone.wav" not in page.read_text(encoding="utf-8"), 30, "a deleted file to leave the page")
    shown = run_chromium(page, tmp_path / "profile", "--dump-dom")
    found = assert_links_stay_inside(page, shown.stdout)
    assert {path.name for path in found["audio"]} == {"new <drop>.wav", "new <drop>.preview.wav"}
    assert len(found["img"]) == 2 and "new <drop>.alt-1.vital" in {path.name for path in found["a"]}


def test_the_watch_daemon_and_the_page_writer_load_no_numpy():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, converter.app.watch, converter.app.launcher, converter.app.report.page; "
                               "print(sorted(name for name in ('numpy', 'soundfile') if name in sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
