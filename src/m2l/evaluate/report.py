"""The HTML report of `m2l eval`, rendered from its results (the content of results.json).

results.json (format "m2l-eval", version 1):

- "format", "version", "m2l_version", "created" (UTC, ISO 8601), "command" (the command line);
- "data": {"source", "kind" ("folder" | "manifest"), "items" (the limit, None = all), "seconds"
  (crop length, None = whole files), "crop"}; "options": the sweep and scoring options;
- "items": [{"index", "name", "path", "start_seconds", "seconds", "channels", "media"}], where
  "media" is {"audio", "image"} (paths relative to the report folder) for the first
  `audio_items` items and None for the others;
- "models": [{"label", "source", "slug", "model_id", "version" ("v1" | "v2"), "config",
  "sample_rate", "hop_length" (the codec's `samples_per_unit`, not the STFT hop),
  "boundary_spacing" (samples between seams), "latent_stats" (`m2l.evaluate.latents.latent_stats`
  over all items), "settings": [{"label", "slug", "steps",
  "sigma_cond", "metrics": {"si_sdr", "mel_distance", "stft_distance", "visqol" (item means),
  "level_db", "lr_correlation_error", "side_mid_change_db", "balance_error" (over stereo items),
  "visqol_change_from_1_step", "mel_distance_change_from_1_step" (multi-step settings), "fad",
  "boundary_ratio" (pooled over items), "decode_seconds"}, "items": [{"item", "name", "si_sdr",
  "mel_distance", "stft_distance", "visqol", "level_db", "lr_correlation",
  "lr_correlation_original", "lr_correlation_error", "side_mid_change_db", "balance_error"
  (stereo items; else null; see `m2l.evaluate.fidelity`), "boundary" (see
  `m2l.evaluate.boundaries.boundary_analysis`), "media"}]}]}];
- "notes": strings (metrics that could not be computed, ignored options).

Missing values are JSON null and shown as "n/a". The page uses relative links only, so the output
folder can be moved or served as it is; it has no scripts and needs no network.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

# (key, column title, higher is better; None: no "best" highlight)
METRIC_COLUMNS: tuple[tuple[str, str, bool | None], ...] = (
    ("si_sdr", "SI-SDR (dB) &uarr;", True),
    ("mel_distance", "Mel distance &darr;", False),
    ("stft_distance", "STFT distance &darr;", False),
    ("visqol", "ViSQOL &uarr;", True),
    ("level_db", "Level (dB)", None),
    ("lr_correlation_error", "L/R corr. error &darr;", False),
    ("side_mid_change_db", "Side/mid change (dB)", None),
    ("balance_error", "L/R balance error &darr;", False),
    ("visqol_change_from_1_step", "ViSQOL vs 1 step &uarr;", True),
    ("fad", "FAD &darr;", False),
    ("boundary_ratio", "Boundary / interior &darr;", False),
    ("decode_seconds", "Decode time (s)", None),
)
ITEM_COLUMNS = METRIC_COLUMNS[:8]
SCALE_NOTE = (
    "Spectrograms: time in seconds, frequency in kHz, colour in dB relative to the loudest bin of "
    "the item's original (0 dB, the top of the colour bar). The original and every reconstruction "
    "of an item share this scale: a quieter reconstruction looks darker."
)
ITEMS_ATTRS = ' class="items"'
LATENT_KEYS = ("dim", "count", "mean", "std", "abs_max", "saturation")

REPORT_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f4; } td.text, th.text { text-align: left; }
td.text { white-space: nowrap; }
td.best { font-weight: bold; background: #e8f5e9; }
pre { background: #f6f6f6; padding: 0.6em; white-space: pre-wrap; word-break: break-all; }
.listen { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.5em; }
figure img { width: 100%; height: auto; display: block; }
figure audio { width: 100%; margin-top: 0.3em; }
figcaption { font-size: 0.9em; margin-bottom: 0.3em; }
"""


def escape_html(value: object) -> str:
    """`value` as text that is safe inside HTML and in a quoted attribute."""
    return html.escape(str(value), quote=True)


def relative_url(relative: str) -> str:
    """A relative POSIX path as an href / src value."""
    return escape_html(quote(relative, safe="/"))


def format_number(value: object, digits: int = 3) -> str:
    """Numbers for a table cell: floats to `digits` decimals, None as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** (-digits) or value == 0 else f"{value:.2e}"
    return escape_html(value)


def html_table(head: list[str], rows: list[str], attrs: str = "") -> str:
    """A table of header cells `head` (`<th>` elements) and body `rows` (`<tr>` elements);
    `attrs` are the table's attributes (e.g. ' id="metrics"')."""
    cells = "".join(head)
    return f"<table{attrs}><thead><tr>{cells}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def _best(values: list[float | None], higher: bool | None) -> float | None:
    present = [v for v in values if v is not None]
    if higher is None or len(present) < 2:
        return None
    return max(present) if higher else min(present)


def _cells(
    values: dict[str, Any], columns: tuple[tuple[str, str, bool | None], ...], best: dict[str, float | None]
) -> str:
    out = []
    for key, _, _ in columns:
        value = values.get(key)
        mark = ' class="best"' if value is not None and value == best.get(key) else ""
        out.append(f"<td{mark}>{format_number(value)}</td>")
    return "".join(out)


def _header(results: dict[str, Any]) -> str:
    data, options = results.get("data", {}), results.get("options", {})
    crop = "whole files" if data.get("seconds") is None else f"{data['seconds']:g} s centred crops"
    lines = [
        f"<p>Created {escape_html(results.get('created', ''))} "
        f"with m2l {escape_html(results.get('m2l_version', ''))}.",
        f"Data: {escape_html(data.get('source', ''))} ({escape_html(data.get('kind', ''))}), "
        f"{len(results.get('items', []))} items, {crop}. Decoding seed {escape_html(options.get('seed'))}; "
        f"FAD embedding {escape_html(options.get('embedding'))}.</p>",
        f"<pre>{escape_html(results.get('command', ''))}</pre>",
    ]
    rows = [
        f'<tr><td class="text">{escape_html(m["label"])}</td>'
        f'<td class="text">{escape_html(m["model_id"])}</td>'
        f'<td class="text">{escape_html(m["version"])} ({escape_html(m["config"])})</td>'
        f"<td>{format_number(m['sample_rate'])}</td><td>{format_number(m['boundary_spacing'])}</td></tr>"
        for m in results.get("models", [])
    ]
    head = [
        '<th class="text">Model</th>',
        '<th class="text">Model id</th>',
        '<th class="text">Kind</th>',
        "<th>Sample rate</th>",
        "<th>Seam every (samples)</th>",
    ]
    return "\n".join(lines) + "\n<h2>Models</h2>\n" + html_table(head, rows, ' id="models"')


def metrics_table(results: dict[str, Any]) -> str:
    """Every setting-level metric, one row per model x setting (the best value of a column in bold)."""
    pairs = [(m, s) for m in results.get("models", []) for s in m["settings"]]
    best = {
        key: _best([s["metrics"].get(key) for _, s in pairs], higher) for key, _, higher in METRIC_COLUMNS
    }
    rows = [
        f'<tr class="metric-row" data-model="{escape_html(m["label"])}" '
        f'data-setting="{escape_html(s["label"])}">'
        f'<td class="text">{escape_html(m["label"])}</td><td class="text">{escape_html(s["label"])}</td>'
        f"{_cells(s['metrics'], METRIC_COLUMNS, best)}</tr>"
        for m, s in pairs
    ]
    head = ['<th class="text">Model</th>', '<th class="text">Setting</th>'] + [
        f"<th>{title}</th>" for _, title, _ in METRIC_COLUMNS
    ]
    return html_table(head, rows, ' id="metrics"')


def _latent_table(results: dict[str, Any]) -> str:
    rows = []
    for m in results.get("models", []):
        stats = m.get("latent_stats") or {}
        cells = "".join(f"<td>{format_number(stats.get(k))}</td>" for k in LATENT_KEYS)
        rows.append(f'<tr><td class="text">{escape_html(m["label"])}</td>{cells}</tr>')
    head = ['<th class="text">Model</th>'] + [f"<th>{k}</th>" for k in LATENT_KEYS]
    return html_table(head, rows, ' id="latents"')


def _item_tables(results: dict[str, Any]) -> str:
    parts = []
    for m in results.get("models", []):
        for s in m["settings"]:
            rows = []
            for r in s["items"]:
                b = r.get("boundary") or {}
                rows.append(
                    f'<tr class="item-row"><td class="text">{escape_html(r["name"])}</td>'
                    f"{_cells(r, ITEM_COLUMNS, {})}<td>{format_number(b.get('ratio'))}</td>"
                    f"<td>{format_number(b.get('boundaries'))}</td></tr>"
                )
            head = (
                ['<th class="text">Item</th>']
                + [f"<th>{t}</th>" for _, t, _ in ITEM_COLUMNS]
                + ["<th>Boundary / interior</th>", "<th>Seams</th>"]
            )
            parts.append(
                f"<details><summary>{escape_html(m['label'])} &mdash; {escape_html(s['label'])}</summary>\n"
                f"{html_table(head, rows, ITEMS_ATTRS)}</details>"
            )
    return "\n".join(parts)


def _figure(caption: str, media: dict[str, str]) -> str:
    return (
        f"<figure><figcaption>{caption}</figcaption>"
        f'<img src="{relative_url(media["image"])}" alt="spectrogram: {caption}">'
        f'<audio controls preload="metadata" src="{relative_url(media["audio"])}"></audio></figure>'
    )


def _listening(results: dict[str, Any]) -> str:
    parts = []
    for item in results.get("items", []):
        if not item.get("media"):
            continue
        figures = [_figure("Original", item["media"])]
        for m in results.get("models", []):
            for s in m["settings"]:
                row = next((r for r in s["items"] if r["item"] == item["index"]), None)
                if row is not None and row.get("media"):
                    sdr = format_number(row["si_sdr"], 1)
                    caption = f"{escape_html(m['label'])} &mdash; {escape_html(s['label'])} (SI-SDR {sdr} dB)"
                    figures.append(_figure(caption, row["media"]))
        parts.append(
            f'<h3>{escape_html(item["name"])}</h3>\n<div class="listen">' + "\n".join(figures) + "</div>"
        )
    if not parts:
        return "<p>No audio examples (--audio-items 0).</p>"
    return f"<p>{SCALE_NOTE}</p>\n" + "\n".join(parts)


def render_report(results: dict[str, Any]) -> str:
    """The complete report page (UTF-8 HTML) for `results`."""
    notes = "".join(f"<li>{escape_html(n)}</li>" for n in results.get("notes", [])) or "<li>none</li>"
    body = [
        "<h1>m2l evaluation</h1>",
        _header(results),
        "<h2>Metrics</h2>",
        metrics_table(results),
        "<p>Per setting: item means of SI-SDR, mel and STFT distances and ViSQOL; the level of the "
        "reconstruction against the original (dB, negative: quieter); for stereo items, how far "
        "the L/R correlation moved and the change of side-to-mid energy (dB); for more than one "
        "decoding step, ViSQOL's change from one step; FAD between the "
        "original items and their reconstructions; error near codec seams (chunk or window "
        "boundaries) over error elsewhere, pooled over items (1 = seams add no error).</p>",
        "<h2>Latent statistics</h2>",
        _latent_table(results),
        "<h2>Per-item scores</h2>",
        _item_tables(results),
        "<h2>Listen</h2>",
        _listening(results),
        "<h2>Notes</h2>",
        f'<ul id="notes">{notes}</ul>',
        "<details><summary>Options</summary><pre>"
        + escape_html(json.dumps(results.get("options", {}), indent=1))
        + "</pre></details>",
    ]
    return html_page("m2l evaluation", body)


def html_page(title: str, body: list[str]) -> str:
    """A complete page (UTF-8 HTML) titled `title` (plain text) with the report style, whose body
    is the HTML fragments `body`, one per line."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape_html(title)}</title><style>{REPORT_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
