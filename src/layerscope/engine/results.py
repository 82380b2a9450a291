"""A depth target's result and its files: the reconstruction ``a_g``, the curve of distances
(m_g, m_i, m_r per recorded iteration), its status; saved to and loaded from
``targets/<key>/`` (``result.json`` last: its presence marks a finished target)."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..core.files import atomic_path, read_json, read_tensor, write_json
from ..core.tables import read_csv, write_csv
from .images import save_image
from .models import weights_label

__all__ = ["TargetResult"]


_CURVE_KEYS = (
    "iteration",
    "embedding_distance",
    "embedding_distance_rms",
    "input_distance",
    "input_distance_rms",
    "reference_distance",
    "reference_distance_rms",
    "reference_input_distance",
    "loss",
    "lr",
    "sigma",
)


def slug(s: str) -> str:
    """A folder-safe form of ``s``; a name that had to change gets a short hash of the raw
    name, so ``p q.png`` and ``p-q.png`` never share a folder."""
    cleaned = _clean(s)
    return cleaned if cleaned == s else f"{cleaned}-{short_hash(s)}"


def _clean(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.") or "x"


def short_hash(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()[:6]


@dataclass
class TargetResult:
    """One target's outcome: its reconstruction ``a_g``, its curve of distances, its status."""

    model: str
    weights: str
    image: str
    layer: str
    reconstruction: torch.Tensor
    curve: list[dict] = field(default_factory=list)
    status: str = "ok"  # "ok" | "diverged" | "not converged" (see verdict)
    message: str = ""
    restart: int = 0  # k > 0: the same target from another a0 (non-uniqueness)
    #: what the eye sees (layerscope.recognition.judgement): ssim, outside [0, 1] and, with
    #: a judge, p_class, class_rank, top5 of the target's class by an independent net
    judged: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Folder name: model, weights, image, layer (checkpoints by stem and a short hash of
        the path, so two ``model.safetensors`` in different folders never share a folder)."""
        w = self.weights
        w = w if w in ("none", "imagenet") else f"{_clean(Path(w).stem)}-{short_hash(w)}"
        key = "__".join((slug(self.model), w, slug(self.image), slug(self.layer)))
        return key if self.restart == 0 else f"{key}__r{self.restart}"

    @property
    def final(self) -> dict:
        """The last recorded row: what the descent ended with (what the tables call final)."""
        return self.curve[-1] if self.curve else {}

    @property
    def best(self) -> dict:
        """The recorded row with the lowest m_g (the first of equals): where a descent that
        lost ground late was closest to its target. Only recorded iterates count
        (``record_every``); the reconstruction kept is the last, not this one."""
        rows = [r for r in self.curve if not math.isnan(r.get("embedding_distance", math.nan))]
        return min(rows, key=lambda r: r["embedding_distance"]) if rows else {}

    def summary(self) -> dict:
        """The final row with the best recorded m_g and its iteration beside it."""
        best = self.best
        last = self.rows()[-1]
        m_g, m_r = last.get("embedding_distance"), last.get("reference_distance")
        ratio = m_g / m_r if isinstance(m_g, float) and isinstance(m_r, float) and m_r else None
        return (
            last
            | {
                # m_g in units of m_r: comparable across nets whose activations differ in scale
                "embedding_over_reference": float("nan") if ratio is None else ratio,
                "best_embedding_distance": best.get("embedding_distance", float("nan")),
                "best_iteration": best.get("iteration", -1),
                "message": self.message,
            }
            | self.judged
        )

    def _repr_html_(self) -> str:
        """In a notebook: the reconstruction beside its final distances."""
        return _html_table([self]) if self.reconstruction.numel() == 0 else (
            f'<div style="display:flex;gap:1em;align-items:center">{_inline_png(self)}'
            f"{_html_table([self])}</div>"
        )  # fmt: skip

    def rows(self) -> list[dict]:
        """Tidy rows: one per recorded iteration."""
        ident = {
            "model": self.model,
            "weights": self.weights,
            "image": self.image,
            "layer": self.layer,
            "restart": self.restart,
            "status": self.status,
        }
        return [ident | row for row in self.curve]

    def save(self, directory: str | Path) -> Path:
        """``<dir>/<key>/``: reconstruction.png, reconstruction.safetensors, curve.csv, result.json;
        result.json is written last, so its presence marks a finished target."""
        d = Path(directory) / self.key
        with atomic_path(d / "reconstruction.png") as tmp:
            save_image(self.reconstruction, tmp, format="PNG")
        with atomic_path(d / "reconstruction.safetensors") as tmp:
            save_file({"reconstruction": self.reconstruction.contiguous().cpu()}, tmp)
        write_csv(d / "curve.csv", self.rows())
        fields_ = ("model", "weights", "image", "layer", "status", "message", "restart")
        meta = {k: getattr(self, k) for k in fields_}
        if self.judged:
            meta["judged"] = self.judged
        write_json(d / "result.json", meta)
        return d

    @classmethod
    def load(cls, directory: str | Path, tensors: bool = True) -> TargetResult:
        """Read a saved target; ``tensors=False`` skips the reconstruction (tables only)."""
        d = Path(directory)
        meta = read_json(d / "result.json")
        rec = (
            read_tensor(d / "reconstruction.safetensors", "reconstruction")
            if tensors
            else torch.empty(0)
        )
        curve = [{k: row[k] for k in _CURVE_KEYS if k in row} for row in read_csv(d / "curve.csv")]
        return cls(reconstruction=rec, curve=curve, **meta)


_COLUMNS = (("embedding_distance", "m_g"), ("reference_distance", "m_r"),
            ("input_distance", "m_i"), ("iteration", "N"))  # fmt: skip


def _html_table(targets) -> str:
    """Final distances of ``targets`` as an HTML table (notebooks, ``_repr_html_``)."""
    import html

    head = "".join(f"<th>{h}</th>" for h in ("model", "weights", "image", "layer"))
    head += "".join(f"<th>{h}</th>" for _, h in _COLUMNS) + "<th>status</th>"
    body = ""
    for t in targets:
        w = weights_label(t.weights)
        cells = [t.model, w, t.image, t.layer + (f" r{t.restart}" if t.restart else "")]
        cells += [f"{t.final.get(k, float('nan')):.4g}" for k, _ in _COLUMNS[:3]]
        cells += [str(t.final.get("iteration", "")), t.status]
        body += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _inline_png(t: TargetResult, size: int = 160) -> str:
    """The reconstruction as an inline PNG (a notebook has no run directory to point at)."""
    import base64
    import io

    from .images import image_to_pil

    buf = io.BytesIO()
    image_to_pil(t.reconstruction).resize((size, size)).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="reconstruction from {t.layer}" src="data:image/png;base64,{data}">'
