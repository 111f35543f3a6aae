"""The listening page of `m2l gen eval` (report.html), rendered from its results.json.

results.json (format "m2l-gen-eval", version 1; see `m2l.generate.evaluate`):

- "format", "version", "m2l_version", "created", "command";
- "data": {"source", "kind" ("folder" | "manifest"), "clips"}; "options": {"seconds",
  "prompt_seconds", "steps", "seed", "embedding", "embedding_weights", "audio_items", "device"};
- "generator": {"path", "config", "labels", "codec_id", "codec_source"}; "codec": {"model_id",
  "version", "sample_rate"};
- "clips": [{"index", "name", "start_seconds", "mel_distance": {"continuation", "repeat",
  "floor"}}];
- "fad": {"floor", "baseline", "shuffled", "generated", "closed_gap"};
- "continuation": {"mel_distance": {"continuation", "repeat", "floor"}} (means over clips);
- "targets": {"fad_halfway", "fad_within_10_percent_of_floor", "continuation_beats_repeat"};
- "media": {set name: [audio paths relative to the report]} for "real", "floor", "baseline",
  "shuffled", "generated", "prompt" and "continued";
- "notes": strings.

Missing values are JSON null and shown as "n/a". Like the `m2l eval` report (whose style and
helpers it uses), the page has relative links only, no scripts, and needs no network.
"""

from __future__ import annotations

from typing import Any

from m2l.evaluate.report import escape_html, format_number, html_page, html_table, relative_url

SET_NOTES = {
    "floor": "decoded real latents: what the codec alone loses",
    "baseline": "decoded Gaussian latents with the corpus mean and std per dimension",
    "shuffled": "real latents with their frames in a random order, decoded",
    "generated": "unconditional clips of the generator",
    "train_floor": "decoded real latents of the training audio (--reference-audio): a perfect generator",
}
CONTINUATION_NOTES = {
    "continuation": "the generator's continuation of the prompt",
    "repeat": "the prompt's last seconds played again",
    "floor": "the codec's reconstruction of the true continuation",
}
TARGET_NOTES = {
    "fad_halfway": "FAD of generated clips at most (floor + baseline) / 2",
    "fad_within_10_percent_of_floor": "FAD of generated clips within 10% of the floor (the aim)",
    "continuation_beats_repeat": "continuation closer to the truth than repeating the prompt",
}


def fad_table(results: dict[str, Any]) -> str:
    """The FAD of every clip set against the real crops, and each over the floor's."""
    fad = results.get("fad", {})
    floor = fad.get("floor")
    rows = []
    for name, note in SET_NOTES.items():
        value = fad.get(name)
        if name == "train_floor" and value is None:
            continue  # no --reference-audio
        ratio = None if value is None or not floor else value / floor
        rows.append(
            f'<tr class="fad-row" data-set="{escape_html(name)}"><td class="text">{escape_html(name)}</td>'
            f'<td class="text">{escape_html(note)}</td><td>{format_number(value)}</td>'
            f"<td>{format_number(ratio, 2)}</td></tr>"
        )
    head = ['<th class="text">Clips</th>', '<th class="text">What</th>', "<th>FAD &darr;</th>"]
    return html_table(head + ["<th>/ floor</th>"], rows, ' id="fad"')


def continuation_table(results: dict[str, Any]) -> str:
    """The mean mel distance of each continuation estimate to the true continuation."""
    means = results.get("continuation", {}).get("mel_distance", {})
    rows = [
        f'<tr class="continuation-row" data-estimate="{escape_html(name)}">'
        f'<td class="text">{escape_html(name)}</td><td class="text">{escape_html(note)}</td>'
        f"<td>{format_number(means.get(name))}</td></tr>"
        for name, note in CONTINUATION_NOTES.items()
    ]
    head = ['<th class="text">Estimate</th>', '<th class="text">What</th>', "<th>Mel distance &darr;</th>"]
    return html_table(head, rows, ' id="continuation"')


def targets_table(results: dict[str, Any]) -> str:
    """Whether each target of BENCHMARKS is met ("n/a" when a number is missing)."""
    met = results.get("targets", {})
    words = {True: "yes", False: "no", None: "n/a"}
    rows = [
        f'<tr><td class="text">{escape_html(note)}</td><td class="text">{words[met.get(key)]}</td></tr>'
        for key, note in TARGET_NOTES.items()
    ]
    return html_table(['<th class="text">Target</th>', '<th class="text">Met</th>'], rows, ' id="targets"')


def player(caption: str, path: str) -> str:
    """A captioned audio player of the file at `path` (relative to the report)."""
    return (
        f"<figure><figcaption>{escape_html(caption)}</figcaption>"
        f'<audio controls preload="metadata" src="{relative_url(path)}"></audio></figure>'
    )


def listening(results: dict[str, Any]) -> str:
    """Players for the generated clips, the continuations and the reference sets."""
    media = results.get("media", {})
    clips = results.get("clips", [])
    count = len(media.get("generated", []))
    if not count:
        return "<p>No audio examples (--audio-items 0).</p>"
    prompt = results.get("options", {}).get("prompt_seconds")

    def grid(title: str, names: tuple[str, ...], i: int) -> str:
        name = escape_html(clips[i]["name"]) if i < len(clips) else ""
        figures = "\n".join(player(f"{n} {i}", media[n][i]) for n in names)
        return f'<h4>{title} {i} <small>({name})</small></h4>\n<div class="listen">{figures}</div>'

    generated = "\n".join(player(f"generated {i}", path) for i, path in enumerate(media["generated"]))
    parts = [
        "<h3>Generated</h3>",
        f'<div class="listen">{generated}</div>',
        "<h3>Continuations</h3>",
        f"<p>The prompt (the first {format_number(prompt, 2)} s of a real clip), the generator's "
        "clip that continues it (decoded from the prompt's latents and the made ones), and the "
        "real clip.</p>",
        *(grid("Clip", ("prompt", "continued", "real"), i) for i in range(count)),
        "<h3>References</h3>",
        *(grid("Clip", ("real", "floor", "baseline", "shuffled"), i) for i in range(count)),
    ]
    return "\n".join(parts)


def header(results: dict[str, Any]) -> str:
    """The run's description: when, what data, which generator and codec, the command."""
    data, options = results.get("data", {}), results.get("options", {})
    gen, codec = results.get("generator", {}), results.get("codec", {})
    return (
        f"<p>Created {escape_html(results.get('created', ''))} with m2l "
        f"{escape_html(results.get('m2l_version', ''))}. Data: {escape_html(data.get('source', ''))} "
        f"({escape_html(data.get('kind', ''))}), {format_number(data.get('clips'))} clips of "
        f"{format_number(options.get('seconds'), 2)} s (prompts of "
        f"{format_number(options.get('prompt_seconds'), 2)} s); {format_number(options.get('steps'))} "
        f"sampler steps, seed {format_number(options.get('seed'))}; FAD embedding "
        f"{escape_html(options.get('embedding'))}.</p>\n"
        f"<p>Generator {escape_html(gen.get('path', ''))} ({escape_html(gen.get('config', ''))}); "
        f"codec {escape_html(codec.get('model_id', ''))} ({escape_html(gen.get('codec_source', ''))}, "
        f"{format_number(codec.get('sample_rate'))} Hz).</p>\n"
        f"<pre>{escape_html(results.get('command', ''))}</pre>"
    )


def render_gen_report(results: dict[str, Any]) -> str:
    """The complete listening page (UTF-8 HTML) for the results of `m2l gen eval`."""
    gap = results.get("fad", {}).get("closed_gap")
    notes = "".join(f"<li>{escape_html(n)}</li>" for n in results.get("notes", [])) or "<li>none</li>"
    body = [
        "<h1>m2l generator evaluation</h1>",
        header(results),
        "<h2>Fréchet audio distance</h2>",
        "<p>Each set of clips against the real clips (lower is closer); FAD numbers compare only "
        "with the same embedding and the same number of clips.</p>",
        fad_table(results),
        f'<p id="closed-gap">Closed gap (baseline - generated) / (baseline - floor): '
        f"{format_number(gap, 2)} (0: the baseline, 1: the floor).</p>",
        "<h2>Continuation</h2>",
        "<p>Mean mel distance to the true continuation (the part of each clip after its prompt).</p>",
        continuation_table(results),
        "<h2>Targets</h2>",
        targets_table(results),
        "<h2>Listen</h2>",
        listening(results),
        "<h2>Notes</h2>",
        f'<ul id="notes">{notes}</ul>',
    ]
    return html_page("m2l generator evaluation", body)
