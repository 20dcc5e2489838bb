"""The pretrained recipe's head on pooled features: linear (logistic regression) or a small MLP, one type for both.

A head is ``logit = out_w @ act(hidden_w @ x + hidden_b) + out_b``, with act the identity for a linear head (one
hidden row) and ReLU for the MLP. Its first layer is linear in the features, so a scan applies it to every cell's
mean features and averages the result over each window, exactly as it would the pooled features.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class MlpSettings:
    """How the MLP head trains (block CV chose these; RESULTS.md round 6)."""

    hidden: int = 64  # ReLU units per network
    networks: int = 3  # networks trained from different seeds; their logits are averaged (one wider head)
    dropout: float = 0.2
    epochs: int = 20
    batch: int = 128
    max_lr: float = 1e-3  # one-cycle schedule
    weight_decay: float = 1e-2  # AdamW


def _check_labels(labels: np.ndarray) -> None:
    if len(labels) == 0 or labels.min() == labels.max():
        raise ModelError(f"training needs examples of both labels, got {int(labels.sum())} mining of {len(labels)}")


def fit_linear(x: np.ndarray, y: np.ndarray, c: float) -> Head:
    """Standardise + balanced logistic regression (inverse L2 strength c) -> a linear Head on raw features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    _check_labels(y)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(scaler.transform(x), y)
    weight = lr.coef_[0] / scaler.scale_
    bias = float(lr.intercept_[0] - np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    return Head.linear(weight, bias)


def fit_mlp(x: np.ndarray, y: np.ndarray, settings: MlpSettings, seed: int = 0) -> Head:
    """Standardise + `networks` MLPs (BCE weighted to balance the labels) -> one Head averaging their logits."""
    import torch
    from sklearn.preprocessing import StandardScaler

    _check_labels(y)
    scaler = StandardScaler().fit(x)
    xt = torch.tensor(scaler.transform(x), dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    pos_weight = torch.tensor(float((y == 0).sum() / (y == 1).sum()))
    threads = torch.get_num_threads()
    # Batches of 128 x 816 gain nothing from a second thread, and OpenMP threads spinning against a busy
    # machine made a 20 s fit take 15 minutes.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # seeded initialisation and dropout without touching the caller's generator
            layers = [_train_mlp(xt, yt, pos_weight, settings, seed * 1000 + i) for i in range(settings.networks)]
    finally:
        torch.set_num_threads(threads)
    w1 = np.concatenate([w for w, _, _, _ in layers])
    b1 = np.concatenate([b for _, b, _, _ in layers])
    w2 = np.concatenate([v for _, _, v, _ in layers]) / settings.networks
    b2 = float(np.mean([float(c) for _, _, _, c in layers]))
    # Fold the standardisation into the first layer, so the head takes raw features.
    scale = scaler.scale_.astype(np.float64)
    hidden_w = w1 / scale[None, :]
    hidden_b = b1 - hidden_w @ scaler.mean_
    return Head(hidden_w.astype(np.float32), hidden_b.astype(np.float32), w2.astype(np.float32), b2, relu=True)


def _train_mlp(xt, yt, pos_weight, settings: MlpSettings, seed: int) -> tuple[np.ndarray, ...]:
    """One network on standardised rows -> (first weights, first biases, output weights, output bias)."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(xt.shape[1], settings.hidden), nn.ReLU(), nn.Dropout(settings.dropout), nn.Linear(settings.hidden, 1)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=settings.max_lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(xt) // settings.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.max_lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    net.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(xt), settings.batch):
            idx = order[i : i + settings.batch]
            loss = loss_fn(net(xt[idx])[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    first, last = net[0], net[3]
    return (
        first.weight.detach().numpy().astype(np.float64),
        first.bias.detach().numpy().astype(np.float64),
        last.weight.detach().numpy()[0].astype(np.float64),
        last.bias.detach().numpy()[0].astype(np.float64),
    )
