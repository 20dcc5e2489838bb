"""Retrain from reviewed corrections and compare the new model with the current one, side by side.

The training set is every active example of the store: imported data plus the corrections readers
and reviewers made (accepted flags are examples with source 'review', already labelled; rejected
detections are hard negatives with their category; excluded examples stay out).

The comparison is fair by construction, every score honest (never from a model trained on the example):
- the candidate's block-grouped out-of-fold scores (0.1-degree blocks over the new training set);
- the current model's out-of-fold scores recorded when it was trained (model metadata ``training_oof``) on the
  examples it was trained on, and its own predictions on those it never saw (new corrections); examples it
  trained on without scoring are left out of both. A model without that record (older files) has its recipe
  trained again on each of the candidate's folds, restricted to its training set (for such a bundled model,
  the examples that are not corrections);
- accuracy on every reviewed detection: out-of-fold predictions for detections that are training
  examples, else the two deployed models.
Every F1 is taken at the model's own stored threshold, the one its scans use (never a threshold chosen again
on the comparison's scores). A candidate worse than the current model (CV F1 lower by more than a tolerance, or
lower accuracy on reviewed detections) is registered but not promoted, unless forced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from amberwatch.errors import AmberwatchError, ConflictError, ModelError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import ExampleStore
from amberwatch.model.dataset import ChipSet
from amberwatch.model.head import warm_up
from amberwatch.model.metrics import binary_metrics, cv_basis, f1_statement
from amberwatch.model.modelfile import load as load_model_file
from amberwatch.model.pretrained import Int8Calibration, PretrainedRecipe
from amberwatch.model.processes import warm_pool
from amberwatch.model.recipes import TRIAGE_METADATA, TRIAGE_MIN_RECALL, pretrained_recipe, triage_recipe
from amberwatch.model.registry import ModelRegistry
from amberwatch.model.train import cross_validate, train_with_cv
from amberwatch.project import Project
from amberwatch.results.store import detection_thumbnail
from amberwatch.review.chips import detection_chip
from amberwatch.review.feedback import decided_feedback

CORRECTION_SOURCES = ("review", "label-page")
# Weight of each correction (the project's own place) against an imported example when a pretrained head trains:
# the learning curve (bench/learning_curve.py, RESULTS.md round 12) measured 5 against 1 and 20.
DEFAULT_LOCAL_WEIGHT = 5.0
DEFAULT_F1_TOLERANCE = 0.02
DEFAULT_FOLDS = 5

Log = Callable[[str], None]


@dataclass
class TrainingData:
    """The store's active examples as a ChipSet, with their sha256s and correction flags."""

    chips: object  # amberwatch.model.dataset.ChipSet
    sha256s: list[str]
    is_correction: np.ndarray  # (N,) bool
    categories: list[str | None]
    fingerprint: str


@dataclass(frozen=True)
class ReviewedItem:
    """A detection a reviewer decided on, with its true label and image."""

    feedback_id: int
    detection_id: int
    truth: int  # 1 = mining
    pixels: np.ndarray
    example_sha256: str | None


@dataclass
class ModelScores:
    """How one model did in the comparison."""

    label: str  # 'current' | 'candidate'
    version: int | None
    cv: dict
    cv_mode: str  # how its CV predictions were made
    reviewed: dict = field(default_factory=dict)  # n, correct, accuracy

    def as_dict(self) -> dict:
        """Plain dict for the registry and JSON output."""
        return {"version": self.version, "cv": self.cv, "cv_mode": self.cv_mode, "reviewed": self.reviewed}


@dataclass
class RetrainResult:
    """Outcome of one retrain: the registered candidate, both models' scores and the decision."""

    candidate_version: int
    current_version: int
    current: ModelScores
    candidate: ModelScores
    promoted: bool
    forced: bool
    reasons: list[str]  # why the candidate is worse (empty when it is not)
    counts: dict
    seconds: float
    candidate_cv: dict = field(default_factory=dict)  # the CV metrics stored in the candidate's file (its threshold's)
    triage: str = ""  # the triage model that goes with the candidate, in words (its own, or why the bundled one)
    details: dict = field(default_factory=dict, repr=False)  # per-example OOF arrays, folds, sha256s (for experiments)

    def table(self) -> str:
        """Side-by-side comparison table, then the decision."""
        cur, cand = self.current, self.candidate
        rows = [
            (
                "examples (mining / not)",
                f"{cur.cv.get('n_train_mining', '-')} / {cur.cv.get('n_train_not_mining', '-')}",
                f"{self.counts['mining']} / {self.counts['not_mining']}",
            ),
            ("threshold (the model's own)", _fmt_score(cur.cv.get("threshold")), _fmt_score(cand.cv.get("threshold"))),
            ("CV F1 at that threshold", _fmt_score(cur.cv.get("f1")), _fmt_score(cand.cv.get("f1"))),
            ("  precision / recall", _fmt_precision_recall(cur.cv), _fmt_precision_recall(cand.cv)),
            ("  false positives", _fmt_confusion(cur.cv, "fp"), _fmt_confusion(cand.cv, "fp")),
            (
                "CV average precision",
                _fmt_score(cur.cv.get("average_precision")),
                _fmt_score(cand.cv.get("average_precision")),
            ),
            (
                "reviewed detections correct",
                f"{cur.reviewed.get('correct', 0)}/{cur.reviewed.get('n', 0)}",
                f"{cand.reviewed.get('correct', 0)}/{cand.reviewed.get('n', 0)}",
            ),
            ("reviewed accuracy", _fmt_score(cur.reviewed.get("accuracy")), _fmt_score(cand.reviewed.get("accuracy"))),
        ]
        cur_name, cand_name = f"current v{self.current_version}", f"candidate v{self.candidate_version}"
        head = f"{'':<30} {cur_name:>14} {cand_name:>14}"
        lines = [head] + [f"{name:<30} {a:>14} {b:>14}" for name, a, b in rows]
        n = cand.cv.get("n_positive", 0) + cand.cv.get("n_negative", 0)
        lines.append(
            f"(CV F1 and AP of both on the same {n} examples, "
            f"each at its model's stored threshold, the one scans use; candidate: block CV, {self.counts.get('folds')} "
            f"folds, 1 split; current: {cur.cv_mode})"
        )
        if self.candidate_cv:
            lines.append(
                f"Candidate's own CV, stored with it: {f1_statement(self.candidate_cv, cv_basis(self.candidate_cv))}"
            )
        if self.triage:
            lines.append(f"Triage model (scan --triage-zoom): {self.triage}")
        if self.promoted and self.forced and self.reasons:
            lines.append(f"Promoted v{self.candidate_version} despite: {'; '.join(self.reasons)} (--force)")
        elif self.promoted:
            lines.append(f"Promoted v{self.candidate_version}: it is now the current model.")
        else:
            lines.append(
                f"NOT promoted v{self.candidate_version}: {'; '.join(self.reasons)}. "
                f"Use --force, or 'amberwatch models promote {self.candidate_version}'."
            )
        return "\n".join(lines)

    def comparison(self) -> dict:
        """Plain dict stored with the candidate version in the registry."""
        return {
            "current_version": self.current_version,
            "current": self.current.as_dict(),
            "candidate": self.candidate.as_dict(),
            "promoted": self.promoted,
            "forced": self.forced,
            "reasons": self.reasons,
            "folds": self.counts.get("folds"),
        }


def _fmt_score(value: object) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _fmt_precision_recall(cv: dict) -> str:
    return f"{_fmt_score(cv.get('precision'))} / {_fmt_score(cv.get('recall'))}"


def _fmt_confusion(cv: dict, key: str) -> str:
    cm = cv.get("confusion_matrix") or {}
    return str(cm.get(key, "-"))


def load_training_data(db: Project | str | os.PathLike[str]) -> TrainingData:
    """Active examples of a project's store as a ChipSet grouped by 0.1-degree block."""
    with Project.using(db) as project:
        store = project.store(ExampleStore)
        examples = store.examples(status="active")
        if not examples:
            raise ModelError(f"{str(project.path)!r}: the example store has no active examples to train on")
        chips, labels, groups, names = [], [], [], []
        for ex, pixels in store.iter_pixels(examples):
            chips.append(pixels)
            labels.append(1 if ex.label == "mining" else 0)
            groups.append(ex.block_key)
            names.append(f"example {ex.id}")
        fingerprint = store.fingerprint(examples)
    y = np.asarray(labels, dtype=np.int64)
    return TrainingData(
        chips=ChipSet(chips, y, groups, names, fingerprint=fingerprint),
        sha256s=[ex.sha256 for ex in examples],
        is_correction=np.array([ex.source in CORRECTION_SOURCES for ex in examples], dtype=bool),
        categories=[ex.category for ex in examples],
        fingerprint=fingerprint,
    )


def correction_weights(is_correction: np.ndarray, local_weight: float) -> np.ndarray | None:
    """Each example's training weight: local_weight for corrections, 1 for the others (None when all are 1)."""
    if local_weight < 0:
        raise ModelError(f"the weight of corrections must be at least 0, got {local_weight}")
    if local_weight == 1 or not np.any(is_correction):
        return None
    return np.where(np.asarray(is_correction, dtype=bool), float(local_weight), 1.0)


def reviewed_items(project: Project) -> list[ReviewedItem]:
    """Every detection a reviewer accepted or rejected a flag on, with its true label and image.

    Accepted flag: the verdict is right (its example holds the image). Rejected flag: the verdict is
    wrong (image from the tile cache around the detection, else its thumbnail; skipped if neither).
    """
    conn = project.conn
    rows = decided_feedback(conn)
    if not rows:
        return []
    store = ExampleStore(conn)
    cache = None
    items: list[ReviewedItem] = []
    try:
        for r in rows:
            truth = int(r.mining)
            pixels, sha = None, None
            if r.example_id is not None:
                try:
                    ex = store.get(r.example_id)
                    pixels, sha = store.pixels(ex.id), ex.sha256
                except AmberwatchError:
                    pixels = None
            if pixels is None:
                pixels, cache = _detection_pixels(project, r.detection_id, cache)
            if pixels is None:
                continue
            items.append(ReviewedItem(r.id, r.detection_id, truth, pixels, sha))
    finally:
        if cache is not None:
            cache.close()
    return items


def _detection_pixels(project: Project, detection_id: int, cache):
    """Image of a detection from the tile cache (review.chips) or its thumbnail; None when neither exists."""
    conn, cache_path = project.conn, project.tile_cache_path()
    if cache is None and cache_path.exists():
        cache = TileCache(cache_path)
    if cache is not None:
        try:
            return detection_chip(conn, cache, detection_id), cache
        except AmberwatchError:
            pass
    try:
        jpeg = detection_thumbnail(conn, detection_id)
        if jpeg:
            return decode_image(jpeg, f"thumbnail of detection {detection_id}"), cache
    except AmberwatchError:
        pass
    return None, cache


def _reviewed_scores(
    items: list[ReviewedItem], index: dict[str, int], oof: np.ndarray, threshold_oof: float, deployed: Callable
) -> dict:
    """Accuracy on reviewed detections: out-of-fold prediction for training examples, else the deployed model."""
    if not items:
        return {"n": 0, "correct": 0, "accuracy": None}
    preds = np.zeros(len(items), dtype=np.int64)
    rest = []
    for k, it in enumerate(items):
        i = index.get(it.example_sha256) if it.example_sha256 else None
        if i is not None and not np.isnan(oof[i]):  # NaN: trained on, never scored
            preds[k] = int(oof[i] >= threshold_oof)
        else:
            rest.append(k)
    if rest:
        model = deployed()
        probs = model.predict_proba([items[k].pixels for k in rest])
        preds[rest] = (probs >= model.threshold).astype(np.int64)
    truth = np.array([it.truth for it in items])
    correct = int((preds == truth).sum())
    return {
        "n": len(items),
        "correct": correct,
        "accuracy": round(correct / len(items), 4),
        "out_of_fold": len(items) - len(rest),
    }


def current_recipe_oof(
    data,
    folds: np.ndarray,
    in_current: np.ndarray,
    config,
    seed: int,
    current_model,
    log: Log | None = None,
    workers: int = 1,
) -> tuple[np.ndarray, str]:
    """Out-of-fold P(mining) of the current model's recipe on the given folds, or of the fixed current model.

    Per fold, the recipe is trained on the fold's training part restricted to the current model's
    training examples. When that leaves a fold without both labels, the fixed current model scores
    every fold instead (said in the returned mode).
    """
    n_folds = int(folds.max()) + 1
    feasible = all(len(set(data.labels[(folds != k) & in_current].tolist())) == 2 for k in range(n_folds))
    if not feasible:
        if log:
            log("current model: training set unknown or one-sided in a fold; scoring the fixed current model")
        return current_model().predict_proba(data.chips).astype(np.float32), "fixed current model (may be optimistic)"
    t0 = time.perf_counter()
    oof, _ = cross_validate(data, config, seed=seed, workers=workers, folds=folds, train_mask=in_current)
    if log:
        log(f"current recipe: retrained on its training set, same folds ({time.perf_counter() - t0:.0f} s)")
    return oof, "its training set retrained on each fold"


def retrain(
    db: Project | str | os.PathLike[str],
    *,
    config=None,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    force: bool = False,
    f1_tolerance: float = DEFAULT_F1_TOLERANCE,
    min_precision: float = 0.95,
    workers: int = 1,
    split_seeds: int = 1,
    log: Log | None = None,
    local_weight: float = DEFAULT_LOCAL_WEIGHT,
    triage: bool = True,
) -> RetrainResult:
    """Train a candidate on the store's active examples, compare with the current model, register, maybe promote.

    The candidate's threshold comes from ``split_seeds`` fold splits (one by default: a candidate in seconds;
    the bundled model pools five). A pretrained candidate keeps the current model's int8 ranges when it has them,
    and its head weighs each correction ``local_weight`` times an imported example (the CNN recipe weighs all 1).
    With ``triage`` a pretrained candidate gets its own triage model (``scan --triage-zoom``), registered with it:
    the same examples at half resolution, its threshold chosen for block-CV recall (``train_triage``).
    ``db``: the command's open Project, or a project DB path opened for this retrain alone.
    """
    t_start = time.perf_counter()
    if n_folds < 2:
        raise ModelError(f"retrain compares models by cross-validation: --folds must be at least 2, got {n_folds}")
    with Project.using(db) as project:
        config = config or pretrained_recipe(feature_cache=str(project.feature_cache_path()))
        with warm_pool(workers, warm_up if isinstance(config, PretrainedRecipe) else None):  # starts while data load
            settings = (n_folds, seed, force, f1_tolerance, min_precision, workers, split_seeds, local_weight, triage)
            result = _retrain(project, config, settings, log)
    result.seconds = round(time.perf_counter() - t_start, 1)
    return result


def _retrain(project: Project, config, settings: tuple, log: Log | None) -> RetrainResult:
    """retrain's body, in its pool of workers (settings: retrain's keywords from n_folds to triage)."""
    n_folds, seed, force, f1_tolerance, min_precision, workers, split_seeds, local_weight, with_triage = settings
    data = load_training_data(project)
    counts = {**data.chips.counts(), "corrections": int(data.is_correction.sum()), "folds": n_folds}
    if isinstance(config, PretrainedRecipe):
        data.chips.weights = correction_weights(data.is_correction, local_weight)
        counts["local_weight"] = local_weight
    if log:
        log(
            f"training set: {counts['mining']} mining, {counts['not_mining']} not mining "
            f"({counts['corrections']} from corrections, weighted {counts.get('local_weight', 1):g}), "
            f"{counts['groups']} blocks"
        )
    registry = project.store(ModelRegistry)
    current = _CurrentModel(registry)
    if not force and registry.get(current.version).training_fingerprint == data.fingerprint:
        raise ConflictError(
            f"the training set is unchanged since model version {current.version} (fingerprint "
            f"{data.fingerprint[:12]}): no corrections to learn from; use --force to train anyway"
        )
    candidate, cv_info = train_with_cv(
        data.chips,
        config,
        seed=seed,
        n_folds=n_folds,
        min_precision=min_precision,
        log=log,
        workers=workers,
        split_seeds=split_seeds,
        int8_ranges=current.int8_ranges() if isinstance(config, PretrainedRecipe) and config.int8 else None,
    )
    if "local_weight" in counts:  # how the candidate's head weighed the corrections, kept in its file
        candidate.metadata["local_weight"] = counts["local_weight"]
    runs = _Comparison(data, cv_info["folds"], cv_info["oof"], candidate)
    _score_current(runs, registry, current, config, seed, log, workers)
    result = _decide(runs, project, current, counts, force, f1_tolerance)
    result.candidate_cv = dict(candidate.metadata.get("cv") or {})
    triage_clf, result.triage = None, "none of its own (--no-triage): the bundled one goes with it"
    if with_triage:
        triage_clf, result.triage = train_triage(
            data.chips, config, current, (n_folds, seed, workers, split_seeds), log
        )
    _register(registry, result, candidate, data, counts, seed, triage_clf)
    result.details = {
        "sha256s": data.sha256s,
        "labels": data.chips.labels,
        "categories": data.categories,
        "is_correction": data.is_correction,
        "folds": runs.folds,
        "oof_current": runs.oof_current,
        "oof_candidate": runs.oof_candidate,
        "threshold_current": runs.threshold_current,
        "threshold_candidate": candidate.threshold,
    }
    return result


def train_triage(chips: ChipSet, config, current, cv: tuple[int, int, int, int], log: Log | None = None):
    """The triage model of a candidate trained on ``chips`` with ``config`` -> (model or None, what it is in words).

    The same recipe at half the examples' resolution (``recipes.triage_recipe``), trained on the same examples with
    the same weights, its threshold the highest keeping block-CV recall >= TRIAGE_MIN_RECALL (the bundled triage
    model's rule), the current triage model's int8 ranges kept. ``cv``: (folds, seed, workers, split seeds)."""
    recipe = triage_recipe(config)
    if recipe is None:
        return None, "none of its own (the cnn recipe has none): the bundled one goes with it"
    n_folds, seed, workers, split_seeds = cv
    if log:
        log("triage model: the same examples at half resolution, threshold for block-CV recall")
    clf, _ = train_with_cv(
        chips,
        recipe,
        seed=seed,
        n_folds=n_folds,
        log=log,
        workers=workers,
        split_seeds=split_seeds,
        int8_ranges=current.triage_int8_ranges() if recipe.int8 else None,
        min_recall=TRIAGE_MIN_RECALL,
    )
    clf.metadata.update(TRIAGE_METADATA)
    recall = (clf.metadata.get("cv") or {}).get("recall")
    at = f", block-CV recall {recall:.2f}" if recall is not None else ""
    return clf, f"its own, threshold {clf.threshold:.4f}{at} (target {TRIAGE_MIN_RECALL})"


class _CurrentModel:
    """The project's current model version, loaded only when a comparison needs the deployed model itself."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.version = registry.current_version()
        self._model = None

    def __call__(self):
        if self._model is None:
            self._model = self.registry.load(self.version)
        return self._model

    def _loaded(self):
        """The model, or None when it cannot be loaded (a missing file, another backbone)."""
        try:
            return self()
        except AmberwatchError:
            return None

    def int8_ranges(self) -> dict[str, list[float]] | None:
        """The current model's int8 activation ranges when it is a pretrained model that has them."""
        calibration = getattr(self._loaded(), "int8", None)
        return calibration.ranges if isinstance(calibration, Int8Calibration) else None

    def triage_int8_ranges(self) -> dict[str, list[float]] | None:
        """The int8 activation ranges of the current model's triage model, when it has them."""
        try:
            triage = load_model_file(self.registry.triage_model(self.version).path)
        except AmberwatchError:
            return None
        calibration = getattr(triage, "int8", None)
        return calibration.ranges if isinstance(calibration, Int8Calibration) else None

    def threshold(self) -> float:
        """The threshold stored in the current model (its registered CV metrics' when the file cannot be loaded)."""
        model = self._loaded()
        if model is not None:
            return float(model.threshold)
        stored = (self.registry.get(self.version).metrics.get("cv") or {}).get("threshold")
        if stored is None:
            raise ModelError(f"model version {self.version}: its file cannot be loaded and no threshold is recorded")
        return float(stored)

    def training_oof(self) -> dict[str, float | None] | None:
        """Its training examples' out-of-fold scores recorded when it was trained (None for older files)."""
        model = self._loaded()
        stored = model.metadata.get("training_oof") if model is not None else None
        return stored if isinstance(stored, dict) and stored else None


@dataclass
class _Comparison:
    """Out-of-fold predictions of both models on the same folds."""

    data: TrainingData
    folds: np.ndarray
    oof_candidate: np.ndarray
    candidate: object
    in_current: np.ndarray | None = None  # which examples the current model was trained on
    oof_current: np.ndarray | None = None
    current_mode: str = ""
    threshold_current: float = 0.5
    compared: np.ndarray | None = None  # examples both models have honest scores on (None: all)

    def __post_init__(self) -> None:
        if self.compared is None:
            self.compared = np.ones(len(self.oof_candidate), dtype=bool)


def _score_current(
    runs: _Comparison,
    registry: ModelRegistry,
    current: _CurrentModel,
    config,
    seed: int,
    log: Log | None,
    workers: int,
) -> None:
    """The current model's honest scores on the examples, and its stored threshold.

    From what it recorded when it was trained, when it did (nothing is trained); else its recipe is trained again
    on each of the candidate's folds, restricted to its own training examples.
    """
    data = runs.data
    known = registry.training_sha256s(current.version)
    stored = current.training_oof()
    if stored is not None:
        _stored_and_unseen(runs, current, stored, set(known) if known is not None else set(stored), log)
    else:
        # Without a recorded training set (a bundled model of an older release), its data are the imported
        # examples, not the corrections made since.
        imported = {s for s, c in zip(data.sha256s, data.is_correction) if not c}
        current_set = set(known) if known is not None else imported
        runs.in_current = np.array([s in current_set for s in data.sha256s], dtype=bool)
        if runs.in_current.all():
            gone = len(current_set - set(data.sha256s))
            runs.oof_current = runs.oof_candidate
            runs.current_mode = "same training set as the candidate" + (
                f" (less {gone} of its examples excluded since)" if gone else ""
            )
        else:
            runs.oof_current, runs.current_mode = current_recipe_oof(
                data.chips, runs.folds, runs.in_current, config, seed, current, log, workers
            )
    runs.threshold_current = current.threshold()


def _stored_and_unseen(
    runs: _Comparison, current: _CurrentModel, stored: dict, trained: set[str], log: Log | None
) -> None:
    """The current model's honest scores without training anything: its recorded out-of-fold scores on the
    examples it was trained on, and its own predictions on the examples it never saw (e.g. new corrections).
    Examples it trained on without scoring them (tile boxes of the bundled model) are left out of the comparison."""
    data = runs.data
    runs.in_current = np.array([s in trained for s in data.sha256s], dtype=bool)
    recorded = [stored.get(s) if s in trained else None for s in data.sha256s]
    runs.oof_current = np.array([np.nan if p is None else p for p in recorded], dtype=np.float32)
    unseen = np.flatnonzero(~runs.in_current)
    if len(unseen):
        runs.oof_current[unseen] = current().predict_proba([data.chips.chips[i] for i in unseen])
    runs.compared = ~np.isnan(runs.oof_current)
    left_out = int((~runs.compared).sum())
    runs.current_mode = (
        f"its recorded out-of-fold scores on {int(runs.in_current.sum()) - left_out} examples, "
        f"its predictions on {len(unseen)} it never saw"
        + (f"; {left_out} it trained on without scoring left out of both" if left_out else "")
    )
    if log:
        log(f"current model: {runs.current_mode}")


def _decide(
    runs: _Comparison,
    project: Project,
    current: _CurrentModel,
    counts: dict,
    force: bool,
    f1_tolerance: float,
) -> RetrainResult:
    """Both models' CV and reviewed-detection scores, and whether the candidate may be promoted."""
    m, candidate, every = runs.compared, runs.candidate, runs.data.chips.labels
    labels = every[m]
    cv_cur = binary_metrics(labels, runs.oof_current[m], runs.threshold_current)  # at its stored threshold
    cv_cur.update(
        {
            "n_train_mining": int(every[runs.in_current].sum()),
            "n_train_not_mining": int((every[runs.in_current] == 0).sum()),
        }
    )
    cv_cand = binary_metrics(labels, runs.oof_candidate[m], candidate.threshold)
    cv_cand.update({"n_train_mining": counts["mining"], "n_train_not_mining": counts["not_mining"]})
    items = reviewed_items(project)
    index = {s: i for i, s in enumerate(runs.data.sha256s)}
    rev_cur = _reviewed_scores(items, index, runs.oof_current, runs.threshold_current, current)
    rev_cand = _reviewed_scores(items, index, runs.oof_candidate, candidate.threshold, lambda: candidate)
    reasons = []
    if cv_cand["f1"] < cv_cur["f1"] - f1_tolerance:
        reasons.append(
            f"CV F1 {cv_cand['f1']:.3f} at its threshold {cv_cand['threshold']:.3f} is lower than the current "
            f"model's {cv_cur['f1']:.3f} at its threshold {cv_cur['threshold']:.3f} by more than {f1_tolerance:.3f}"
        )
    if rev_cand["n"] and rev_cand["accuracy"] < rev_cur["accuracy"]:
        reasons.append(
            f"accuracy on {rev_cand['n']} reviewed detections {rev_cand['accuracy']:.3f} is lower "
            f"than the current model's {rev_cur['accuracy']:.3f}"
        )
    return RetrainResult(
        candidate_version=-1,
        current_version=current.version,
        current=ModelScores("current", current.version, cv_cur, runs.current_mode, rev_cur),
        candidate=ModelScores("candidate", None, cv_cand, "trained on each fold", rev_cand),
        promoted=force or not reasons,
        forced=force,
        reasons=reasons,
        counts=counts,
        seconds=0.0,
    )


def _register(
    registry: ModelRegistry, result: RetrainResult, candidate, data: TrainingData, counts: dict, seed: int, triage
) -> None:
    """Register the candidate (and its triage model) with its scores and comparison; promote it when the decision
    says so."""
    reasons, force = result.reasons, result.forced
    info = registry.register(
        candidate,
        training_sha256s=data.sha256s,
        training_fingerprint=data.fingerprint,
        n_mining=counts["mining"],
        n_not_mining=counts["not_mining"],
        seed=seed,
        metrics={"cv": result.candidate_cv, "reviewed": result.candidate.reviewed},
        comparison=result.comparison(),
        parent_version=result.current_version,
        note=("retrained" if result.promoted else "refused: " + "; ".join(reasons))
        + f" ({counts['corrections']} corrections)",
        triage=triage,
    )
    result.candidate_version = info.version
    result.candidate.version = info.version
    registry.set_comparison(info.version, result.comparison())
    if result.promoted:
        registry.promote(
            info.version, forced=bool(force and reasons), reason="retrain" + (" --force" if force and reasons else "")
        )
