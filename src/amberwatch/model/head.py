"""The pretrained recipe's head on pooled features: linear (logistic regression) or a small MLP, one type for both.

A head is ``logit = out_w @ act(hidden_w @ x + hidden_b) + out_b``, with act the identity for a linear head (one
hidden row) and ReLU for the MLP. Its first layer is linear in the features, so a scan applies it to every cell's
mean features and averages the result over each window, exactly as it would the pooled features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from amberwatch.errors import ModelError

HEADS = ("mlp", "linear")


@dataclass(frozen=True)
class Head:
    """logit = out_w @ act(hidden_w @ x + hidden_b) + out_b; act = ReLU if relu else identity."""

    hidden_w: np.ndarray  # (H, F) float32, any feature scaling folded in
    hidden_b: np.ndarray  # (H,) float32
    out_w: np.ndarray  # (H,) float32
    out_b: float
    relu: bool

    def __post_init__(self) -> None:
        h = self.hidden_w.shape[0]
        if self.hidden_w.ndim != 2 or self.hidden_b.shape != (h,) or self.out_w.shape != (h,):
            shapes = f"hidden {self.hidden_w.shape}, bias {self.hidden_b.shape}, out {self.out_w.shape}"
            raise ModelError(f"head shapes do not fit: {shapes}")

    @classmethod
    def linear(cls, weight: np.ndarray, bias: float) -> Head:
        """The head of a logistic regression: one identity row."""
        w = np.asarray(weight, dtype=np.float32).reshape(1, -1)
        return cls(w, np.array([bias], dtype=np.float32), np.ones(1, dtype=np.float32), 0.0, relu=False)

    @property
    def n_features(self) -> int:
        """Features the head takes."""
        return int(self.hidden_w.shape[1])

    @property
    def hidden(self) -> int:
        """Rows of the first layer (1 for a linear head)."""
        return int(self.hidden_w.shape[0])

    def activate(self, z: np.ndarray) -> np.ndarray:
        """The first layer's activation, elementwise."""
        return np.maximum(z, 0) if self.relu else z

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, F) pooled features -> (N,) logits."""
        z = np.asarray(features, dtype=np.float32) @ self.hidden_w.T + self.hidden_b
        return (self.activate(z) @ self.out_w + self.out_b).astype(np.float32)

    def to_payload(self) -> dict:
        """Model-file entries (tensors): a linear head keeps the v2 file's head_weight/head_bias, an MLP its layers."""
        import torch

        if not self.relu and self.hidden == 1:
            return {"head_weight": torch.from_numpy(self.hidden_w[0] * self.out_w[0]), "head_bias": self.linear_bias}
        return {
            "head_hidden_w": torch.from_numpy(self.hidden_w.copy()),
            "head_hidden_b": torch.from_numpy(self.hidden_b.copy()),
            "head_out_w": torch.from_numpy(self.out_w.copy()),
            "head_out_b": self.out_b,
        }

    @property
    def linear_bias(self) -> float:
        """A linear head's bias (hidden and output biases combined)."""
        return float(self.hidden_b[0] * self.out_w[0] + self.out_b)

    @classmethod
    def from_payload(cls, payload: dict) -> Head:
        """Inverse of to_payload (files with head_weight only hold a linear head)."""

        def arr(key: str) -> np.ndarray:
            return np.asarray(payload[key], dtype=np.float32)

        if "head_hidden_w" in payload:
            out_b = float(payload["head_out_b"])
            return cls(arr("head_hidden_w"), arr("head_hidden_b"), arr("head_out_w"), out_b, relu=True)
        return cls.linear(arr("head_weight"), float(payload["head_bias"]))


def blend_heads(parts: Sequence[tuple[Head, np.ndarray]], weights: Sequence[float], n_features: int) -> Head:
    """Heads on column subsets of n_features (each with its columns), logits weighted and summed -> one Head."""
    if len(parts) != len(weights) or not parts:
        raise ModelError(f"blend needs one weight per head, got {len(parts)} heads and {len(weights)} weights")
    if not all(h.relu for h, _ in parts):  # rows without ReLU would be read back as ReLU rows from a model file
        raise ModelError("blend takes MLP heads only (a blend of linear heads is one linear head)")
    rows = []
    for head, columns in parts:
        w = np.zeros((head.hidden, n_features), dtype=np.float32)
        w[:, columns] = head.hidden_w
        rows.append(w)
    return Head(
        np.concatenate(rows),
        np.concatenate([h.hidden_b for h, _ in parts]),
        np.concatenate([a * h.out_w for (h, _), a in zip(parts, weights)]).astype(np.float32),
        float(sum(a * h.out_b for (h, _), a in zip(parts, weights))),
        relu=parts[0][0].relu,
    )


@dataclass(frozen=True)
class MlpSettings:
    """How the MLP head trains (block CV chose these; RESULTS.md round 6)."""

    hidden: int = 64  # ReLU units per network
    networks: int = 2  # networks per head part, trained side by side; their logits are averaged (RESULTS.md round 8)
    dropout: float = 0.2
    epochs: int = 20
    # Batches of 512 at a 6x higher peak rate: the block CV of batches of 128 at 1e-3, in 0.7x the time (round 9)
    batch: int = 512
    max_lr: float = 6e-3  # one-cycle schedule
    weight_decay: float = 1e-2  # AdamW


def _check_labels(labels: np.ndarray) -> None:
    if len(labels) == 0 or labels.min() == labels.max():
        raise ModelError(f"training needs examples of both labels, got {int(labels.sum())} mining of {len(labels)}")


def fit_linear(x: np.ndarray, y: np.ndarray, c: float, weights: np.ndarray | None = None) -> Head:
    """Standardise + balanced logistic regression (inverse L2 strength c; optional per-row weights) -> a linear
    Head on raw features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    _check_labels(y)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    lr.fit(scaler.transform(x), y, sample_weight=weights)
    weight = lr.coef_[0] / scaler.scale_
    bias = float(lr.intercept_[0] - np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    return Head.linear(weight, bias)


def fit_mlp(x: np.ndarray, y: np.ndarray, settings: MlpSettings, seed: int = 0) -> Head:
    """Standardise + `networks` MLPs (BCE weighted to balance the labels) -> one Head averaging their logits."""
    return fit_mlp_parts(x, y, [np.arange(x.shape[1])], settings, seed)[0]


def fit_mlp_parts(
    x: np.ndarray,
    y: np.ndarray,
    parts: Sequence[np.ndarray],
    settings: MlpSettings,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> list[Head]:
    """Per column subset of x, `networks` MLPs averaged into one Head (on those columns); all train at once.
    ``weights``: each row's weight in the loss (the labels are balanced by their weighted totals)."""
    import torch

    _check_labels(y)
    for p, columns in enumerate(parts):
        if len(columns) == 0 or np.min(columns) < 0 or np.max(columns) >= x.shape[1]:
            raise ModelError(f"head part {p} needs columns among the {x.shape[1]} features, got {len(columns)}")
    mean, scale = _standardisation(x)
    z = ((x - mean) / scale).astype(np.float32)
    xs = [torch.from_numpy(np.ascontiguousarray(z[:, columns])) for columns in parts]
    yt = torch.tensor(y, dtype=torch.float32)
    w = np.ones(len(y)) if weights is None else _check_weights(weights, len(y))
    pos_weight = torch.tensor(float(w[y == 0].sum() / w[y == 1].sum()))
    wt = None if weights is None else torch.tensor(w / w.mean(), dtype=torch.float32)
    n = settings.networks
    threads = torch.get_num_threads()
    # Batches of a few hundred rows gain little from a second thread, and OpenMP threads spinning against a busy
    # machine made a 20 s fit take 15 minutes.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # seeded initialisation and dropout without touching the caller's generator
            layers, w2, b2 = _train_networks(xs, (yt, wt), pos_weight, n, settings, seed)
    finally:
        torch.set_num_threads(threads)
    heads = []
    for p, (columns, (w1, b1)) in enumerate(zip(parts, layers)):
        nets = slice(p * n, (p + 1) * n)
        # Fold the standardisation into the first layer, so the head takes raw features.
        hidden_w = w1 / scale[columns][None, :]
        hidden_b = b1 - hidden_w @ mean[columns]
        out_w, out_b = w2[nets].reshape(-1) / n, float(b2[nets].mean())
        heads.append(
            Head(hidden_w.astype(np.float32), hidden_b.astype(np.float32), out_w.astype(np.float32), out_b, True)
        )
    return heads


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 where constant), in float64, as scikit-learn's StandardScaler."""
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    scale = x64.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, scale


def _check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ModelError(f"example weights must be {n} finite values >= 0, not all 0; got shape {w.shape}")
    return w


def _train_networks(xs, targets, pos_weight, networks: int, settings: MlpSettings, seed: int) -> tuple:
    """`networks` independent one-hidden-layer networks per part (part p sees the standardised columns xs[p]),
    all trained side by side, one loss each -> ([(first weights, first biases) per part], output weights
    (nets, hidden), output biases (nets,)).

    One matrix product per part and batch instead of one per network: about 2x faster on one core.
    """
    import torch
    from torch import nn

    yt, wt = targets  # labels and per-row weights (None: every row 1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hidden = settings.hidden
    firsts = [nn.Linear(x.shape[1], networks * hidden) for x in xs]  # each network's init as on its own inputs
    nets = networks * len(xs)
    bound = 1 / hidden**0.5
    out_w = nn.Parameter(torch.empty(nets, hidden).uniform_(-bound, bound))
    out_b = nn.Parameter(torch.empty(nets).uniform_(-bound, bound))
    drop = nn.Dropout(settings.dropout)
    params = [p for f in firsts for p in (f.weight, f.bias)] + [out_w, out_b]
    opt = torch.optim.AdamW(params, lr=settings.max_lr, weight_decay=settings.weight_decay, fused=True)
    steps = settings.epochs * -(-len(yt) // settings.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.max_lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="mean" if wt is None else "none")
    for _ in range(settings.epochs):
        order = torch.randperm(len(yt), generator=generator)
        for i in range(0, len(yt), settings.batch):
            idx = order[i : i + settings.batch]
            h = torch.cat([torch.relu(f(x[idx])) for f, x in zip(firsts, xs)], dim=1)
            z = (drop(h).view(len(idx), nets, hidden) * out_w).sum(dim=2) + out_b
            loss = loss_fn(z, yt[idx, None].expand(-1, nets))
            loss = (loss if wt is None else (loss * wt[idx, None]).mean()) * nets  # the sum of each network's loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    layers = [tuple(t.detach().numpy().astype(np.float64) for t in (f.weight, f.bias)) for f in firsts]
    return layers, out_w.detach().numpy().astype(np.float64), out_b.detach().numpy().astype(np.float64)


def warm_up() -> None:
    """Fit a tiny MLP head: a process's first fit pays ~2 s of lazy imports, which a pool's worker pays ahead."""
    x = np.random.default_rng(0).normal(size=(64, 8))
    fit_mlp_parts(x, np.arange(64) % 2, [np.arange(8)], MlpSettings(epochs=1, batch=32))
