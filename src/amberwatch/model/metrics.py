"""Binary classification metrics and the CV-based choice of the decision threshold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1, average precision and confusion matrix at threshold (P >= threshold is mining)."""
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(probs) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ap = float(average_precision_score(y, probs)) if 0 < y.sum() < len(y) else float("nan")
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "average_precision": round(ap, 4) if ap == ap else None,
        "threshold": round(float(threshold), 4),
        "n_positive": int(y.sum()),
        "n_negative": int((~y).sum()),
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, min_precision: float = 0.95, min_recall: float = 0.5
) -> float:
    """Lowest threshold reaching min_precision on out-of-fold predictions (max recall), else the max-F1 one.

    When min_precision is only reached at a recall below min_recall, the max-F1 threshold is used
    instead: a detector that finds almost nothing is worse than one with some false alarms. The
    threshold is set halfway between the chosen score and the next lower one, so it is not glued to
    a single example's score.
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    ok = np.flatnonzero((precision >= min_precision) & (recall >= min_recall))
    if len(ok):
        best = ok[np.argmax(recall[ok] + 1e-9 * precision[ok])]
    else:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1))
    t = float(thresholds[best])
    lower = p[p < t]
    return float((t + lower.max()) / 2) if len(lower) else t


def recall_threshold(labels: np.ndarray, probs: np.ndarray, min_recall: float) -> float:
    """Highest threshold keeping recall >= min_recall on out-of-fold predictions (a triage model's: recall first).

    Set halfway between the score of the positive that must still pass and the next lower score, as
    choose_threshold does.
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    if not y.any():
        return 0.5
    pos = np.sort(p[y])[::-1]
    t = float(pos[min(len(pos) - 1, max(0, int(np.ceil(min_recall * len(pos))) - 1))])
    lower = p[p < t]
    return float((t + lower.max()) / 2) if len(lower) else t


def cv_basis(cv: dict) -> str:
    """What a CV metrics dict was measured on, e.g. 'block CV, 5 folds x 5 split seeds, 881 examples'."""
    seeds = cv.get("split_seeds") or []
    splits = f" x {len(seeds)} split seeds" if len(seeds) > 1 else ", 1 split"
    n = cv.get("scored_examples") or (cv.get("n_positive") or 0) + (cv.get("n_negative") or 0)
    where = f" of {cv['data']}" if cv.get("data") else ""
    return f"block CV, {cv.get('folds', '?')} folds{splits}, {n} examples{where}"


def f1_statement(metrics: dict, basis: str, threshold_name: str = "the model's threshold") -> str:
    """'F1 0.865 (P 0.951, R 0.793) at the model's threshold 0.742 (basis)': an F1 that says where it comes from."""
    return (
        f"F1 {metrics['f1']:.3f} (precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}) "
        f"at {threshold_name} {metrics['threshold']:.3f} ({basis})"
    )


def best_f1_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """Threshold of maximum F1 on these scores (choose_threshold's max-F1 rule): a diagnostic, never stored."""
    # No precision target can be met, so choose_threshold falls back to its max-F1 threshold.
    return choose_threshold(labels, probs, min_precision=float("inf"))


def field_scores(labels: np.ndarray, probs: np.ndarray, fields: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per field (e.g. a source image): (score, 1 if it holds a positive) -> a positive field's score is the best of
    its positive crops' (it is found when any reaches the threshold), a negative field's the best of its crops'."""
    y = np.asarray(labels).astype(bool)
    best: dict[str, list] = {}
    for f, pos, p in zip(fields, y, np.asarray(probs, dtype=np.float64)):
        entry = best.setdefault(f, [-np.inf, False])
        if pos and not entry[1]:
            entry[:] = [p, True]
        elif pos == entry[1]:
            entry[0] = max(entry[0], p)
    scores = np.array([s for s, _ in best.values()], dtype=np.float64)
    return scores, np.array([int(pos) for _, pos in best.values()], dtype=np.int64)


def field_recall_threshold(labels: np.ndarray, probs: np.ndarray, fields: list[str], min_recall: float) -> float:
    """Highest threshold at which >= min_recall of the fields holding positives have a positive crop reaching it
    (a triage model's: a pit field is found when any of its cells is), halfway to the next lower crop score."""
    scores, positive = field_scores(labels, probs, fields)
    if not positive.any():
        return 0.5
    pos = np.sort(scores[positive == 1])[::-1]
    t = float(pos[min(len(pos) - 1, max(0, int(np.ceil(min_recall * len(pos))) - 1))])
    p = np.asarray(probs, dtype=np.float64)
    lower = p[p < t]
    return float((t + lower.max()) / 2) if len(lower) else t
