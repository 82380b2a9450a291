"""Figures (matplotlib) and the HTML report, built only from saved results."""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import LayerscopeError
from ..files import read_json
from ..tables import read_csv
from .figures import curves_figure, reconstruction_grid

__all__ = [
    "build_report",
    "depth_report",
    "page",
    "read_meta",
    "similarity_report",
    "summary_rows",
    "table",
]


def read_meta(run_dir: str | Path) -> dict:
    """A run directory's ``config.json`` (study config, kind, versions, device)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise LayerscopeError(f"{run_dir} is not a run directory (no config.json)")
    return read_json(path)


def summary_rows(run_dir: str | Path) -> list[dict]:
    """The final row of each target with the verdicts a reader looks for."""
    path = Path(run_dir) / "summary.csv"
    if not path.exists():
        return []
    rows = read_csv(path)
    for r in rows:
        r["m_g<m_r"] = (
            "yes" if r.get("embedding_distance", 0) < r.get("reference_distance", 0) else "no"
        )
    return rows


def depth_report(run_dir: str | Path) -> Path:
    """Rebuild grid.png, curves.png and report.html of a depth run from its saved targets."""
    from ..studies.depth import DepthConfig, load_targets

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    config = DepthConfig.from_dict(meta["study"])
    targets = [t for t in load_targets(run_dir) if t.restart == 0]  # restarts: see below
    grid = reconstruction_grid(targets, run_dir / "grid.png", config.size)
    curves = curves_figure(targets, run_dir / "curves.png")
    restarts = ""
    if (run_dir / "restarts.csv").exists():
        from .figures import restarts_figure

        spread = read_csv(run_dir / "restarts.csv")
        restarts_figure(spread, run_dir / "restarts.png")
        restarts = (
            f"<h2>Restarts: {spread[0]['restarts'] if spread else 0} descents per target from "
            "different a0</h2><p>spread = mean pairwise ‖a_g^i − a_g^j‖ between their "
            "reconstructions, next to their mean m_g: several inputs that match the layer "
            "equally well yet differ from each other mean the layer is not injective there."
            '</p><img src="restarts.png">'
            + _table(["model", "weights", "image", "layer", "spread", "m_g", "m_r", "m_i"],
                     [[r["model"], Path(str(r["weights"])).stem, r["image"], r["layer"],
                       r["spread"], r["embedding_distance"], r["reference_distance"],
                       r["input_distance"]] for r in spread])
        )  # fmt: skip
    rows = summary_rows(run_dir)
    cols = [
        ("model", "model"),
        ("weights", "weights"),
        ("image", "image"),
        ("layer", "layer"),
        ("iteration", "N"),
        ("embedding_distance", "m_g"),
        ("reference_distance", "m_r"),
        ("m_g<m_r", "m_g<m_r"),
        ("input_distance", "m_i"),
        ("reference_input_distance", "‖a′−a‖"),
        ("embedding_distance_rms", "m_g/elem"),
        ("status", "status"),
    ]

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h in cols) + "</tr>\n"
    for r in rows:
        table += "<tr>" + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k, _ in cols) + "</tr>\n"
    inv = config.inversion
    settings = {
        "models": ", ".join(config.models),
        "weights": ", ".join(config.weights),
        "images": ", ".join(config.images),
        "size": config.size,
        "normalisation": config.normalize,
        "iterations": inv.iterations,
        "step rule": inv.step,
        "lr": f"{inv.lr.start} → {inv.lr.end}",
        "loss": f"{inv.loss.scale} · L1 {inv.loss.reduction}",
        "blur": "off"
        if inv.blur is None
        else f"kernel {inv.blur.kernel_size}, σ {inv.blur.sigma.start} → {inv.blur.sigma.end}",
        "jitter": "off" if inv.jitter is None else f"crop {inv.jitter.size}",
        "a0": f"N({inv.init_mean}, {inv.init_std:.4g})",
        "σ′ (reference shift)": f"{inv.reference_sigma:.4g}",
        "seed": inv.seed,
        "device": meta.get("device"),
        "layerscope / torch": f"{meta.get('layerscope')} / {meta.get('torch')}",
    }
    settings_html = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in settings.items()
    )
    failed = [r for r in rows if r.get("status") != "ok"]
    notes = "".join(
        f"<li>{html.escape(str(r['model']))} {html.escape(str(r['layer']))}: "
        f"{html.escape(str(r.get('message', '')))}</li>"
        for r in failed
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>layerscope depth · {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Depth study: input reconstruction from each layer</h1>
<p>Gradient descent on an input <i>a<sub>g</sub></i> from <i>a<sub>0</sub></i> so that a layer's
activations match those of the target <i>a</i>. <b>m_g</b> = ‖O(a) − O(a<sub>g</sub>)‖₂,
<b>m_r</b> = ‖O(a) − O(a′)‖₂ with a′ = a + N(0, σ′), <b>m_i</b> = ‖a<sub>g</sub> − a‖₂.
m_g &lt; m_r while m_i stays large means the layer cannot tell a<sub>g</sub> from a although
they differ: non-uniqueness.</p>
<h2>Settings</h2><table>{settings_html}</table>
<h2>Final distances</h2><table>{table}</table>
{"<h2>Failed targets</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Reconstructions</h2>{'<img src="grid.png">' if grid else "<p>none yet</p>"}
<h2>Distances over the descent</h2>{'<img src="curves.png">' if curves else ""}
{restarts}
<p>Data: <a href="metrics.csv">metrics.csv</a> (every recorded iteration),
<a href="summary.csv">summary.csv</a>, <a href="config.json">config.json</a>.</p>
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page)
    return out


_STYLE = """body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } img { max-width: 100%; }"""


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n"
    return (
        "<table>"
        + head
        + "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>\n" for row in rows)
        + "</table>"
    )


def _page(title: str, heading: str, body: str) -> str:
    return (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title>\n<style>\n{_STYLE}\n</style></head><body>\n<h1>{html.escape(heading)}"
            f"</h1>\n{body}\n</body></html>\n")  # fmt: skip


def similarity_report(run_dir: str | Path) -> Path:
    """Figures and report.html of a similarity run (layer × layer, or over training), redrawn
    from its CSV: the tables a reader looks for, the settings, the baselines."""
    from .figures import over_training_figure, similarity_heatmaps

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    study = meta.get("study", {})
    settings = {k: v for k, v in study.items() if k != "options"} | study.get("options", {})
    settings |= {"device": meta.get("device"), "layerscope": meta.get("layerscope")}
    settings_html = _table(["setting", "value"], [[k, str(v)] for k, v in settings.items()])
    if meta.get("kind") == "similarity-training":
        rows = read_csv(run_dir / "over_training.csv")
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        epochs = sorted({r["epoch"] for r in rows})
        label = meta.get("label") or Path(str(study.get("run"))).name
        over_training_figure(rows, layers, run_dir / "over_training.png", label)
        tables = ""
        for m in dict.fromkeys(r["measure"] for r in rows):
            vals = {(r["layer"], r["epoch"]): r["value"] for r in rows if r["measure"] == m}
            body = [[layer, *(vals.get((layer, e), "") for e in epochs)] for layer in layers]
            tables += f"<h3>{html.escape(m)}</h3>" + _table(
                ["layer", *(f"epoch {e}" for e in epochs)], body
            )
        body = (
            "<p>Each layer at every saved epoch (0 = the initialisation) against the same layer "
            "of the last checkpoint, on the same inputs.</p>"
            f'<img src="over_training.png"><h2>Values</h2>{tables}<h2>Settings</h2>'
            f"{settings_html}"
            '<p>Data: <a href="over_training.csv">over_training.csv</a>, '
            '<a href="config.json">config.json</a>.</p>'
        )
        page = _page(f"layerscope similarity over training · {run_dir.name}",
                     "Similarity of each layer to its final state", body)  # fmt: skip
    else:
        rows = read_csv(run_dir / "similarity.csv")
        la = list(dict.fromkeys(r["layer_a"] for r in rows))
        lb = list(dict.fromkeys(r["layer_b"] for r in rows))
        label_a, label_b = meta.get("label_a", "A"), meta.get("label_b", "B")
        figures = similarity_heatmaps(rows, la, lb, run_dir, label_a, label_b)
        best_rows = []
        for m in dict.fromkeys(r["measure"] for r in rows):
            for a in la:
                cand = [r for r in rows if r["measure"] == m and r["layer_a"] == a]
                best = max(cand, key=lambda r: -1 if r["value"] != r["value"] else r["value"])
                best_rows.append([m, a, best["layer_b"], best["value"],
                                  best.get("baseline_shuffled", ""),
                                  best.get("baseline_random", ""),
                                  best.get("baseline_untrained_seeds", "")])  # fmt: skip
        imgs = "".join(f'<img src="{f.name}"><br>' for f in figures)
        body = (
            "<p>Every layer of A against every layer of B on the same inputs. Baselines: B's "
            "rows shuffled (independent inputs), Gaussian random directions of B's shape (CCA's "
            "chance level for n and p), the same layer of A in two untrained seeds (CKA).</p>"
            f"<p>A = <b>{html.escape(label_a)}</b>, B = <b>{html.escape(label_b)}</b>, "
            f"n = {rows[0].get('n', '?') if rows else '?'} inputs.</p>{imgs}"
            "<h2>Best match in B for each layer of A</h2>"
            + _table(
                [
                    "measure",
                    "layer A",
                    "best layer B",
                    "value",
                    "shuffled",
                    "random",
                    "untrained seeds",
                ],
                best_rows,
            )
            + f"<h2>Settings</h2>{settings_html}"
            '<p>Data: <a href="similarity.csv">similarity.csv</a> (every pair), '
            '<a href="config.json">config.json</a>.</p>'
        )
        page = _page(f"layerscope similarity · {run_dir.name}",
                     "Representational similarity between layers", body)  # fmt: skip
    out = run_dir / "report.html"
    out.write_text(page)
    return out


def build_report(run_dir: str | Path) -> Path:
    """(Re)build the HTML report of any run directory from what it saved."""
    kind = read_meta(run_dir).get("kind")
    if kind == "depth":
        return depth_report(run_dir)
    if kind == "training-effect":
        from ..studies.training_effect import write_report

        return write_report(Path(run_dir))
    if kind in ("similarity", "similarity-training"):
        return similarity_report(run_dir)
    raise LayerscopeError(f"no report for runs of kind {kind!r}")


#: Shared page helpers for the studies that own their report page.
page = _page
table = _table
