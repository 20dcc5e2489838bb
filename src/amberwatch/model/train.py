"""Training core on plain arrays: fit an ensemble, block-grouped cross-validation, threshold choice."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from amberwatch import __version__
from amberwatch.db import utc_now_iso
from amberwatch.errors import ModelError
from amberwatch.model import pretrained
from amberwatch.model.augment import AugmentConfig, make_batch
from amberwatch.model.classifier import Classifier
from amberwatch.model.dataset import TEXTY_RESOLUTION_M_PER_PX, ChipSet
from amberwatch.model.metrics import binary_metrics, choose_threshold, recall_threshold
from amberwatch.model.network import MiningNet, NetConfig
from amberwatch.model.paste import PitPaster
from amberwatch.model.pretrained import PretrainedClassifier, PretrainedRecipe
from amberwatch.model.processes import map_in_processes


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model besides the data and the seed."""

    net: NetConfig = field(default_factory=NetConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    crop_px: int = 160  # training crop side in input pixels (= window_cells * cell_px)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-3
    members: int = 1  # ensemble of independently seeded networks
    paste_p: float = 0.0  # share of each batch replaced by pit copy-paste composites (amberwatch.model.paste)
    threads: int = 1  # more threads than free cores makes OpenMP spin: 1 is faster on a shared machine
    resolution_m_per_px: float = TEXTY_RESOLUTION_M_PER_PX

    def to_dict(self) -> dict:
        """Plain dict for the model metadata."""
        d = asdict(self)
        d["net"] = self.net.to_dict()
        d["augment"] = self.augment.to_dict() if self.augment else None
        return d


def _seed_all(seed: int, threads: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    return np.random.default_rng(seed)


def fit_network(
    data: ChipSet,
    config: TrainConfig,
    seed: int,
    log: Callable[[str], None] | None = None,
    targets: np.ndarray | None = None,
) -> dict:
    """Train one MiningNet on data; return its state dict (torch thread/determinism settings are restored after).

    ``targets``: per-example training targets in 0..1 in place of the labels (soft targets, e.g. a teacher's
    probabilities); the class weight and the pasted pits still come from the labels."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _fit_network(data, config, seed, log, targets)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _fit_network(
    data: ChipSet, config: TrainConfig, seed: int, log: Callable[[str], None] | None, targets: np.ndarray | None
) -> dict:
    if len(data) == 0 or data.labels.min() == data.labels.max():
        raise ModelError(f"training needs examples of both labels, got counts {data.counts()}")
    targets = data.labels if targets is None else targets
    rng = _seed_all(seed, config.threads)
    net = MiningNet(config.net)
    ds = config.net.downsample
    # Pool once up front (exactly what the network's first op does): augmentation then runs on 1/ds^2 pixels.
    chips = [downsample_chip(c, ds) for c in data.chips]
    n_pos = int(data.labels.sum())
    pos_weight = torch.tensor((len(data) - n_pos) / n_pos)
    steps_per_epoch = max(1, math.ceil(len(data) / config.batch_size))
    total = steps_per_epoch * config.epochs
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    net.train()
    paster = PitPaster(chips, data.labels) if config.paste_p > 0 else None
    for epoch in range(config.epochs):
        order = rng.permutation(len(data))
        losses = []
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:
                continue
            batch_chips, batch_labels = [chips[i] for i in idx], targets[idx].astype(np.float32)
            if paster is not None:
                for j in np.flatnonzero(rng.random(len(idx)) < config.paste_p):
                    batch_chips[j], batch_labels[j] = paster.draw(rng)
            x = make_batch(batch_chips, config.crop_px // ds, config.augment, rng)
            y = torch.from_numpy(batch_labels)
            loss = F.binary_cross_entropy_with_logits(net(x, downsampled=True), y, pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if log and (epoch % 5 == 4 or epoch == config.epochs - 1):
            log(f"  epoch {epoch + 1}/{config.epochs} loss {np.mean(losses):.4f}")
    net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def downsample_chip(chip: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor pixel blocks (edge rows/columns that do not fill a block are dropped)."""
    if factor == 1:
        return chip
    h, w = chip.shape[0] // factor * factor, chip.shape[1] // factor * factor
    if h == 0 or w == 0:
        return chip[:1, :1]
    pooled = chip[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).astype(np.float32).mean(axis=(1, 3))
    return pooled.astype(np.float32)


Recipe = TrainConfig | Sequence[TrainConfig] | PretrainedRecipe


def member_configs(recipe: Recipe) -> list[TrainConfig]:
    """One TrainConfig per ensemble member: config.members copies, or the given list (mixed ensemble)."""
    if isinstance(recipe, TrainConfig):
        return [recipe] * recipe.members
    configs = list(recipe)
    if not configs:
        raise ModelError("an ensemble recipe needs at least one member")
    cells = {(c.net.cell_px, c.net.window_cells) for c in configs}
    if len(cells) > 1:
        raise ModelError(f"ensemble members must share cell_px and window_cells, got {sorted(cells)}")
    return configs


def _network_job(data: ChipSet, job: tuple[np.ndarray, TrainConfig, int]) -> dict:
    idx, config, seed = job
    return fit_network(data.subset(idx), config, seed)


def train_networks(
    data: ChipSet,
    jobs: list[tuple[np.ndarray, TrainConfig, int]],
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Train one network per (example indices, config, seed) job, in `workers` processes; state dicts in order."""
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for k, (idx, _, seed) in enumerate(jobs):
            if log:
                log(f"training network {k + 1}/{len(jobs)} (seed {seed}, {len(idx)} examples)")
            out.append(_network_job(data, jobs[k]))
        return out
    if log:
        log(f"training {len(jobs)} networks in {workers} processes")
    return map_in_processes(_network_job, data, jobs, workers)


def fit(
    data: ChipSet, recipe: Recipe, seed: int = 0, log: Callable[[str], None] | None = None, workers: int = 1
) -> Classifier | PretrainedClassifier:
    """Train the recipe on all of data (CNN member m gets seed seed+m) -> a model at threshold 0.5."""
    if isinstance(recipe, PretrainedRecipe):
        return pretrained.cv_and_fit(data, recipe, [], log, workers)[1]
    configs = member_configs(recipe)
    everything = np.arange(len(data))
    states = train_networks(data, [(everything, c, seed + m) for m, c in enumerate(configs)], workers, log)
    return Classifier(
        [c.net for c in configs], states, threshold=0.5, resolution_m_per_px=configs[0].resolution_m_per_px
    )


def block_folds(labels: np.ndarray, groups: list[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold id per example: stratified by label, never splitting a group (0.1-degree block)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise ModelError(f"{n_folds}-fold cross-validation needs at least {n_folds} blocks, got {n_groups}")
    folds = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[test] = k
    return folds


def cross_validate(
    data: ChipSet,
    recipe: Recipe,
    n_folds: int = 5,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    split_seed: int | None = None,
    workers: int = 1,
    folds: np.ndarray | None = None,
    train_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(mining) for every example (block-grouped folds) -> (probabilities, fold ids).

    ``folds`` reuses given fold ids (to compare models on the same folds); ``train_mask`` restricts
    every fold's training part to a subset of the examples (every example is still scored).
    """
    if folds is None:
        folds = block_folds(data.labels, data.groups, n_folds, seed if split_seed is None else split_seed)
    if isinstance(recipe, PretrainedRecipe):
        return pretrained.cross_validate(data, recipe, folds, log, train_mask, workers)[0], folds
    configs = member_configs(recipe)
    n_folds = int(folds.max()) + 1
    allowed = np.ones(len(data), dtype=bool) if train_mask is None else train_mask
    jobs = [
        (np.flatnonzero((folds != k) & allowed), c, seed + m) for k in range(n_folds) for m, c in enumerate(configs)
    ]
    t0 = time.perf_counter()
    states = train_networks(data, jobs, workers)
    oof = np.zeros(len(data), dtype=np.float32)
    for k in range(n_folds):
        test_idx = np.flatnonzero(folds == k)
        members = states[k * len(configs) : (k + 1) * len(configs)]
        clf = Classifier([c.net for c in configs], members, resolution_m_per_px=configs[0].resolution_m_per_px)
        oof[test_idx] = clf.predict_proba([data.chips[i] for i in test_idx])
        if log:
            m = binary_metrics(data.labels[test_idx], oof[test_idx], 0.5)
            log(
                f"fold {k + 1}/{n_folds}: n={len(test_idx)} pos={int(data.labels[test_idx].sum())} "
                f"AP={m['average_precision']:.3f} F1@0.5={m['f1']:.3f}"
            )
    if log:
        log(f"cross-validation trained {len(jobs)} networks in {time.perf_counter() - t0:.0f} s")
    return oof, folds


def scored_folds(data: ChipSet, score_mask: np.ndarray, n_folds: int, split_seed: int) -> np.ndarray:
    """Block folds made on the scored examples alone; the others get fold -1 (always in training)."""
    folds = np.full(len(data), -1, dtype=np.int64)
    idx = np.flatnonzero(score_mask)
    folds[idx] = block_folds(data.labels[idx], [data.groups[i] for i in idx], n_folds, split_seed)
    return folds


def train_with_cv(
    data: ChipSet,
    recipe: Recipe,
    *,
    seed: int = 0,
    n_folds: int = 5,
    min_precision: float = 0.95,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    score_mask: np.ndarray | None = None,
    split_seeds: int | None = None,
    int8_ranges: dict[str, list[float]] | None = None,
    min_recall: float | None = None,
) -> tuple[Classifier | PretrainedClassifier, dict]:
    """CV (threshold from out-of-fold predictions), then train on all data; metadata filled in.

    ``score_mask`` limits the CV score and threshold to some examples; the others (e.g. crops cut from whole
    images) join every fold's training part and are never scored. The threshold pools the out-of-fold scores of
    ``split_seeds`` fold splits (default: 5 for the pretrained recipe, 1 for the CNN). A pretrained model keeps
    given ``int8_ranges``. ``min_recall`` (a triage model) sets the threshold for recall instead of precision.
    The metadata's ``training_oof`` (example pixel sha256 -> out-of-fold score on the first
    split, None if never scored) lets a later retrain compare with this model without training it again."""
    t0 = time.perf_counter()
    scored = np.ones(len(data), dtype=bool) if score_mask is None else np.asarray(score_mask, dtype=bool)
    seeds = split_seed_list(recipe, seed, n_folds, split_seeds)
    fold_sets = [scored_folds(data, scored, n_folds, s) for s in seeds]
    if isinstance(recipe, PretrainedRecipe):  # every head of every split, the final one too, in one pool
        oofs, clf = pretrained.cv_and_fit(data, recipe, fold_sets, log, workers, int8_ranges)
    else:
        oofs = [cross_validate(data, recipe, n_folds, seed, log, workers=workers, folds=f)[0] for f in fold_sets]
        clf = fit(data, recipe, seed=seed, log=log, workers=workers)
    threshold, cv = 0.5, {}
    if fold_sets:
        threshold, cv = _pooled_cv(data, list(zip(oofs, fold_sets)), scored, n_folds, min_precision, seeds, min_recall)
        if log:
            log(
                f"CV: threshold {threshold:.3f} precision {cv['precision']:.3f} recall {cv['recall']:.3f} "
                f"F1 {cv['f1']:.3f} AP {cv['average_precision']:.3f} (split seeds {seeds})"
            )
    clf.threshold = threshold
    clf.metadata.update(recipe_metadata(recipe, clf))
    clf.metadata.update(
        {
            "version": clf.metadata.get("version", "unversioned"),
            "fingerprint": data.fingerprint,
            "counts": data.counts(),
            "cv": cv,
            "threshold": threshold,
            "cell_px": clf.cell_px,
            "context_px": clf.context_px,
            "resolution_m_per_px": clf.resolution_m_per_px,
            "seed": seed,
            "created_at": utc_now_iso(),
            "package_version": __version__,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "training_oof": training_oof(data, oofs[0] if oofs else None, scored),
        }
    )
    return clf, {"oof": oofs[0] if oofs else None, "folds": fold_sets[0] if fold_sets else None}


def split_seed_list(recipe: Recipe, seed: int, n_folds: int, split_seeds: int | None) -> list[int]:
    """Seeds of the fold splits whose out-of-fold scores set a model's threshold (5 for pretrained, 1 for the CNN)."""
    n_splits = split_seeds or (5 if isinstance(recipe, PretrainedRecipe) else 1)
    return [seed + k for k in range(n_splits)] if n_folds >= 2 else []


def pooled_cross_validation(
    data: ChipSet,
    recipe: Recipe,
    *,
    seed: int = 0,
    n_folds: int = 5,
    min_precision: float = 0.95,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    split_seeds: int | None = None,
) -> tuple[float, dict, np.ndarray, np.ndarray]:
    """The threshold and CV metrics train_with_cv would store for these options, without the final fit
    -> (threshold, CV metrics, first split's out-of-fold scores, its fold ids)."""
    if n_folds < 2:
        raise ModelError(f"cross-validation needs --folds of at least 2, got {n_folds}")
    scored = np.ones(len(data), dtype=bool)
    seeds = split_seed_list(recipe, seed, n_folds, split_seeds)
    fold_sets = [scored_folds(data, scored, n_folds, s) for s in seeds]
    if isinstance(recipe, PretrainedRecipe):
        oofs = pretrained.cross_validate(data, recipe, fold_sets, log, None, workers)
    else:
        oofs = [cross_validate(data, recipe, n_folds, seed, log, workers=workers, folds=f)[0] for f in fold_sets]
    threshold, cv = _pooled_cv(data, list(zip(oofs, fold_sets)), scored, n_folds, min_precision, seeds)
    return threshold, cv, oofs[0], fold_sets[0]


def training_oof(data: ChipSet, oof: np.ndarray | None, scored: np.ndarray) -> dict[str, float | None]:
    """Pixel sha256 of every training example -> its out-of-fold score (None when not scored)."""
    return {
        sha: (round(float(p), 6) if oof is not None and ok else None)
        for sha, p, ok in zip(data.pixel_sha256s(), oof if oof is not None else np.zeros(len(data)), scored)
    }


def _pooled_cv(
    data: ChipSet,
    runs: list,
    scored: np.ndarray,
    n_folds: int,
    min_precision: float,
    split_seeds: list[int],
    min_recall: float | None = None,
) -> tuple[float, dict]:
    """Threshold (lowest with pooled OOF precision >= min_precision; with min_recall, the highest keeping recall
    >= min_recall) and CV metrics pooled over split seeds."""
    labels = np.concatenate([data.labels[scored]] * len(runs))
    pooled = np.concatenate([r[scored] for r, _ in runs])
    if min_recall is None:
        threshold = choose_threshold(labels, pooled, min_precision)
    else:
        threshold = recall_threshold(labels, pooled, min_recall)
    cv = binary_metrics(labels, pooled, threshold)
    target = {"min_precision_target": min_precision} if min_recall is None else {"min_recall_target": min_recall}
    cv.update(
        {
            "folds": n_folds,
            "grouping": "0.1-degree block",
            **target,
            "scored_examples": int(scored.sum()),
            "split_seeds": split_seeds,
            "n_positive": int(data.labels[scored].sum()),
            "n_negative": int((data.labels[scored] == 0).sum()),
        }
    )
    if len(runs) > 1:
        cv["confusion_matrix_summed_over"] = f"{len(runs)} split seeds"
        cv["average_precision_by_split_seed"] = [
            binary_metrics(data.labels[scored], r[scored], threshold)["average_precision"] for r, _ in runs
        ]
    return threshold, cv


def recipe_metadata(recipe: Recipe, clf: Classifier | PretrainedClassifier) -> dict:
    """What the model file records of the recipe that made it."""
    if isinstance(recipe, PretrainedRecipe):
        return {"recipe": "pretrained", "train_config": recipe.to_dict(), "backbone": clf.backbone.identity}
    configs = member_configs(recipe)
    return {
        "recipe": "cnn",
        "input_px": configs[0].crop_px,
        "train_config": [c.to_dict() for c in configs],
        "members": len(configs),
    }
