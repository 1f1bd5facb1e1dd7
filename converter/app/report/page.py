"""``vinv-report.html``: one page per folder with every conversion under it, to judge by ear and by eye.

The page is built from the records under its ``.vinv/`` folder (converter.app.report.records), so it
shows earlier runs too and can be rebuilt at any time. Everything it needs is in the page or in
``.vinv/``: it opens from ``file://`` with no server and no network. Rows off screen are neither
laid out nor drawn (``content-visibility``), pictures load as they scroll into view and players
fetch nothing until played, so that a page of hundreds of conversions stays usable. Links are
relative, made only to files that exist inside the page's folder, and every name is escaped.
A watched folder's page is "live": it reloads itself when the watcher rewrites it (the watcher
also writes ``.vinv/stamp.js``; the page loads that small script every few seconds and compares),
but never while a sound is playing. No numpy here: the idle watch daemon writes pages.
"""

from __future__ import annotations

import hashlib
import html
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from converter.app.jobs import ERROR_SUFFIX, is_inside
from converter.app.report.records import (
    CONVERTED,
    PICTURE_HEIGHT,
    PICTURE_WIDTH,
    REPORT_FOLDER,
    Record,
    RecordPlace,
    read_records,
)
from converter.files import atomic_write_bytes

PAGE_NAME = "vinv-report.html"
STAMP_NAME = "stamp.js"
RELOAD_SECONDS = 3


@dataclass(frozen=True)
class Row:
    """One input as the page shows it."""

    name: str  # the input's path as the page names it
    output_folder: Path
    place: RecordPlace
    record: Record
    source: Path


def page_path(folder: str | os.PathLike[str]) -> Path:
    """Where ``folder``'s page is."""
    return Path(folder) / PAGE_NAME


def collect_rows(page_root: Path) -> list[Row]:
    """A row per record whose input still exists, sorted by name."""
    rows = []
    for output_folder, place, record in read_records(page_root):
        source = Path(os.path.normpath(output_folder / record.input))
        if not source.is_file():
            continue
        relative_folder = os.path.relpath(output_folder, page_root)
        name = source.name if relative_folder == "." else f"{Path(relative_folder).as_posix()}/{source.name}"
        rows.append(Row(name, output_folder, place, record, source))
    return sorted(rows, key=lambda row: row.name.casefold())


def write_page(folder: str | os.PathLike[str], *, live: bool = False) -> Path:
    """Build ``folder``'s page from its records and write it atomically; ``live`` for a watched folder."""
    page_root = Path(os.path.realpath(folder))
    body = _body(page_root, collect_rows(page_root))
    stamp = hashlib.sha1(body.encode("utf-8")).hexdigest()[:16]
    document = _document(page_root, body, stamp if live else None)
    path = atomic_write_bytes(page_path(page_root), document.encode("utf-8"))
    if live:
        assets = page_root / REPORT_FOLDER
        assets.mkdir(exist_ok=True)
        atomic_write_bytes(assets / STAMP_NAME, f'vinvStamp("{stamp}");\n'.encode("ascii"))
    return path


def _url(path: Path, page_root: Path) -> str | None:
    """A relative URL for ``path`` when it is a file inside ``page_root``; None otherwise (no link is made)."""
    if not (path.is_file() and is_inside(path, page_root)):
        return None
    relative = Path(os.path.relpath(path, page_root))
    return "/".join(quote(part, safe="") for part in relative.parts)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(path: Path, page_root: Path, label: str) -> str:
    url = _url(path, page_root)
    return f'<a href="{_text(url)}">{_text(label)}</a>' if url else _text(label)


def _score(similarity: float | None) -> str:
    return "" if similarity is None else f"{similarity:.0f}"


def _sound_cell(picture: Path, sound: Path, page_root: Path, what: str, show_picture: bool) -> str:
    parts = []
    picture_url = _url(picture, page_root) if show_picture else None
    if picture_url:
        parts.append(f'<img src="{_text(picture_url)}" loading="lazy" decoding="async" width="{PICTURE_WIDTH}" '
                     f'height="{PICTURE_HEIGHT}" alt="spectrogram of the {what}">')
    sound_url = _url(sound, page_root)
    if sound_url:
        parts.append(f'<audio controls preload="none" src="{_text(sound_url)}"></audio>')
    else:
        parts.append(f'<p class="away">the {what} is not in this folder</p>')
    return f'<div class="sound">{"".join(parts)}</div>'


def _converted_row(row: Row, page_root: Path) -> str:
    record, folder = row.record, row.output_folder
    variations = "".join(
        f"<li>{_link(folder / variation.preset, page_root, variation.preset)} "
        f'<span class="score">{_score(variation.similarity)}</span> {_text(variation.method)}</li>'
        for variation in record.variations
    )
    summary = f'<p class="summary">{_text(record.summary)}</p>' if record.summary else ""
    score = -1.0 if record.similarity is None else record.similarity
    return (
        f'<div class="row" data-name="{_text(row.name.casefold())}" data-score="{score:.2f}">'
        f'<div class="file"><p class="name">{_text(row.name)}</p>{summary}</div>'
        + _sound_cell(row.place.input_picture, row.source, page_root, "input", record.pictures)
        + _sound_cell(row.place.preview_picture, folder / record.preview, page_root, "preview", record.pictures)
        + f'<div class="match"><span class="score">{_score(record.similarity)}</span></div>'
        f"<div>{_text(record.note or 'unpitched')}</div>"
        f"<div>{_text(record.method)}</div>"
        f'<div class="preset">{_link(folder / record.preset, page_root, record.preset)}'
        + (f'<ul class="variations">{variations}</ul>' if variations else "")
        + "</div></div>"
    )


def _failed_item(row: Row, page_root: Path) -> str:
    report = row.output_folder / f"{row.place.base.name}{ERROR_SUFFIX}"
    details = f' ({_link(report, page_root, "details")})' if _url(report, page_root) else ""
    return (f'<li><span class="name">{_link(row.source, page_root, row.name)}</span>: '
            f"{_text(row.record.error)}{details}</li>")


def _body(page_root: Path, rows: Iterable[Row]) -> str:
    rows = list(rows)
    converted = [row for row in rows if row.record.status == CONVERTED]
    failed = [row for row in rows if row.record.status != CONVERTED]
    parts = [
        f"<header><h1>vinv: {_text(page_root.name or str(page_root))}</h1>"
        f'<p class="counts">{len(converted)} converted, {len(failed)} failed</p>'
        '<p class="legend">Each picture starts at the sound\'s onset and spans the preview; frequency 40 Hz to '
        "16 kHz on a log scale, colour from the louder sound's peak down 80 dB, the same scales for both "
        "sounds of a row. White line: that sound's loudness; blue line: the other sound's. Match: 0 to 100, "
        "higher is closer.</p></header>",
    ]
    if converted:
        parts.append(
            '<p class="sort">Sort: <button type="button" data-sort="name">by name</button> '
            '<button type="button" data-sort="best">best match first</button> '
            '<button type="button" data-sort="worst">worst match first</button></p>'
            '<div class="row head"><div>file</div><div>input</div><div>preview</div>'
            '<div><button type="button" data-sort="best" title="sort by match">match</button></div>'
            "<div>note</div><div>method</div><div>preset and variations</div></div>"
            '<div id="converted">' + "".join(_converted_row(row, page_root) for row in converted) + "</div>"
        )
    else:
        parts.append('<p class="empty">Nothing converted here yet: drop samples into this folder '
                     "(or run vinv batch on it).</p>")
    if failed:
        parts.append(f'<section id="failed"><h2>Failed ({len(failed)})</h2><ul>'
                     + "".join(_failed_item(row, page_root) for row in failed) + "</ul></section>")
    return "".join(parts)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}.counts{margin:0}.legend{color:#555;max-width:60em}
.sort button,.head button{font:inherit;cursor:pointer}
.row{display:grid;grid-template-columns:14em WIDTHpx WIDTHpx 4em 5em 5em minmax(14em,1fr);gap:12px;
padding:8px;border-bottom:1px solid #ddd}
#converted .row{content-visibility:auto;contain-intrinsic-size:auto ROW_HEIGHTpx}
.head{position:sticky;top:0;background:#eee;z-index:1;font-weight:600}
.sound img{display:block;background:#000;width:WIDTHpx;height:HEIGHTpx}
.sound audio{display:block;width:WIDTHpx;height:32px;margin-top:4px}
.name{font-weight:600;margin:0;word-break:break-all;max-width:16em}.summary{color:#555;margin:.3em 0 0;max-width:16em}
.score{font-weight:700;font-size:1.2em}.variations{margin:.4em 0 0;padding-left:1.1em}
.away{color:#777;font-style:italic}#failed li{margin:.2em 0}
""".replace("WIDTH", str(PICTURE_WIDTH)).replace("ROW_HEIGHT", str(PICTURE_HEIGHT + 56)).replace(
    "HEIGHT", str(PICTURE_HEIGHT))

SCRIPT = """
(function () {
  var body = document.getElementById("converted");
  var orders = {
    name: function (a, b) { return a.dataset.name < b.dataset.name ? -1 : a.dataset.name > b.dataset.name ? 1 : 0; },
    best: function (a, b) { return parseFloat(b.dataset.score) - parseFloat(a.dataset.score); },
    worst: function (a, b) { return parseFloat(a.dataset.score) - parseFloat(b.dataset.score); }
  };
  function sortRows(how) {
    if (!body || !orders[how]) return;
    Array.prototype.slice.call(body.children).sort(orders[how]).forEach(function (row) { body.appendChild(row); });
    history.replaceState(null, "", "#sort=" + how);
  }
  document.querySelectorAll("button[data-sort]").forEach(function (button) {
    button.addEventListener("click", function () {
      var how = button.dataset.sort;
      if (how === "best" && location.hash === "#sort=best") how = "worst";
      sortRows(how);
    });
  });
  var asked = /^#sort=(\\w+)$/.exec(location.hash);
  if (asked) sortRows(asked[1]);
})();
"""

LIVE_SCRIPT = """
(function () {
  var shown = "STAMP";
  function playing() {
    return Array.prototype.some.call(document.querySelectorAll("audio"), function (a) { return !a.paused; });
  }
  window.vinvStamp = function (latest) { if (latest !== shown && !playing()) location.reload(); };
  setInterval(function () {
    var probe = document.createElement("script");
    probe.src = "REPORT_FOLDER/STAMP_NAME?" + Date.now();
    probe.onload = probe.onerror = function () { probe.remove(); };
    document.head.appendChild(probe);
  }, RELOAD_MS);
})();
"""


def _document(page_root: Path, body: str, stamp: str | None) -> str:
    live = ""
    if stamp is not None:
        live = (LIVE_SCRIPT.replace("STAMP_NAME", STAMP_NAME).replace("STAMP", stamp)
                .replace("REPORT_FOLDER", REPORT_FOLDER).replace("RELOAD_MS", str(RELOAD_SECONDS * 1000)))
    updated = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>vinv: {_text(page_root.name or str(page_root))}</title><style>{STYLE}</style></head>"
        f'<body>{body}<p class="updated">updated {updated}</p>'
        f"<script>{SCRIPT}{live}</script></body></html>\n"
    )
