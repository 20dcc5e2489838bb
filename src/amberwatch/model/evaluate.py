"""Scoring a labelled folder with a model, and the CV report: metrics, PR curve and worst-error contact sheet."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from amberwatch.errors import TrainedOnWarning
from amberwatch.model.classifier import Classifier
from amberwatch.model.dataset import ChipSet, load_folder
from amberwatch.model.metrics import best_f1_threshold, binary_metrics
from amberwatch.model.train import Recipe, pooled_cross_validation


def evaluate_folder(clf: Classifier, data_dir: str | os.PathLike[str]) -> dict:
    """Metrics of clf at its stored threshold on DIR/positive and DIR/negative, the best-F1 threshold on them too,
    and a TrainedOnWarning when some of them are examples clf was trained on (by pixel sha256)."""
    data = load_folder(data_dir)
    probs = clf.predict_proba(data.chips)
    result = binary_metrics(data.labels, probs, clf.threshold)
    result["model_version"] = clf.version
    result["data"] = f"{len(data)} examples of {str(data_dir)!r}"
    best = binary_metrics(data.labels, probs, best_f1_threshold(data.labels, probs))
    result["best_f1_on_this_data"] = {k: best[k] for k in ("f1", "precision", "recall", "threshold")}
    result.update(_trained_on(clf, data, probs, str(data_dir)))
    return result


def _trained_on(clf: Classifier, data: ChipSet, probs: np.ndarray, where: str) -> dict:
    """How many examples clf was trained on (warned), and the metrics on the others when there are both kinds."""
    known = clf.training_sha256s
    if known is None:
        return {"trained_on": None}
    seen = np.array([sha in known for sha in data.pixel_sha256s()], dtype=bool)
    out: dict = {"trained_on": int(seen.sum())}
    if seen.any():
        warnings.warn(
            TrainedOnWarning(
                f"{int(seen.sum())} of the {len(data)} examples in {where!r} are examples model {clf.version} was "
                "trained on (same pixels): scores on them are optimistic"
            ),
            stacklevel=3,
        )
    rest = ~seen
    if seen.any() and rest.any() and 0 < data.labels[rest].sum() < rest.sum():
        out["not_trained_on"] = binary_metrics(data.labels[rest], probs[rest], clf.threshold)
    return out


def evaluate_cv(
    data: ChipSet,
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    n_folds: int = 5,
    seed: int = 0,
    min_precision: float = 0.95,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    split_seeds: int | None = None,
    data_name: str | None = None,
) -> dict:
    """Block-grouped CV of the recipe on data, pooled over the split seeds `train` uses, so its threshold and F1 are
    the ones `train` with these options stores; writes metrics.json, pr_curve.png and worst_errors.png to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threshold, result, oof, folds = pooled_cross_validation(
        data,
        recipe,
        seed=seed,
        n_folds=n_folds,
        min_precision=min_precision,
        log=log,
        workers=workers,
        split_seeds=split_seeds,
    )
    result["seed"] = seed
    if data_name:
        result["data"] = data_name
    write_pr_curve(data.labels, oof, threshold, out / "pr_curve.png")
    write_contact_sheet(data, oof, threshold, out / "worst_errors.png")
    rows = [
        {"name": n, "group": g, "label": int(y), "fold": int(f), "p_mining": round(float(p), 4)}
        for n, g, y, f, p in zip(data.names, data.groups, data.labels, folds, oof)
    ]
    (out / "oof_predictions.json").write_text(json.dumps(rows, indent=0))
    result["files"] = {
        "pr_curve": str(out / "pr_curve.png"),
        "contact_sheet": str(out / "worst_errors.png"),
        "predictions": str(out / "oof_predictions.json"),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def write_pr_curve(labels: np.ndarray, probs: np.ndarray, threshold: float, path: Path) -> None:
    """Precision-recall curve PNG with the operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels, probs)
    op = binary_metrics(labels, probs, threshold)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(recall, precision, lw=2)
    ax.plot([op["recall"]], [op["precision"]], "o", color="red", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"Block-grouped CV, AP = {op['average_precision']}")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_contact_sheet(
    data: ChipSet, probs: np.ndarray, threshold: float, path: Path, n_each: int = 12, thumb_px: int = 128
) -> None:
    """PNG of the worst false positives (top row block) and false negatives (bottom), with their scores."""
    y = data.labels.astype(bool)
    fp = [i for i in np.argsort(-probs) if not y[i] and probs[i] >= threshold][:n_each]
    fn = [i for i in np.argsort(probs) if y[i] and probs[i] < threshold][:n_each]
    cols = 6
    rows_fp, rows_fn = max(1, -(-len(fp) // cols)), max(1, -(-len(fn) // cols))
    cell_h = thumb_px + 30
    sheet = Image.new("RGB", (cols * (thumb_px + 6) + 6, (rows_fp + rows_fn) * cell_h + 60), "white")
    draw = ImageDraw.Draw(sheet)
    y0 = 4
    for title, items, n_rows in (
        ("False positives (not mining, scored high)", fp, rows_fp),
        ("False negatives (mining, scored low)", fn, rows_fn),
    ):
        draw.text((6, y0), f"{title}: {len(items)} shown", fill="black")
        y0 += 22
        for k, i in enumerate(items):
            thumb = Image.fromarray(data.chips[i])
            thumb.thumbnail((thumb_px, thumb_px))
            x, yy = 6 + (k % cols) * (thumb_px + 6), y0 + (k // cols) * cell_h
            sheet.paste(thumb, (x, yy))
            draw.text((x, yy + thumb_px + 2), f"p={probs[i]:.2f} {data.groups[i]}"[:24], fill="black")
        if not items:
            draw.text((6, y0), "none", fill="gray")
        y0 += n_rows * cell_h + 8
    sheet.save(path)
