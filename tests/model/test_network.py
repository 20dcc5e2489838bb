"""Network building blocks: the cumulative-sum box blur and the shared preprocessing of ensemble members."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amberwatch.model.classifier import Classifier
from amberwatch.model.network import MiningNet, NetConfig, _box_blur


def test_box_blur_matches_average_pooling():
    x = torch.rand(2, 3, 57, 83)
    p = 15
    ref = F.avg_pool2d(x, (31, 1), stride=1, padding=(p, 0), count_include_pad=False)
    ref = F.avg_pool2d(ref, (1, 31), stride=1, padding=(0, p), count_include_pad=False)
    assert torch.allclose(_box_blur(x, 31), ref, atol=1e-5)


def test_ensemble_equals_mean_of_members():
    torch.manual_seed(0)
    cfg = NetConfig(widths=(8, 8, 8, 8), local_norm_px=7)
    nets = [MiningNet(cfg).eval(), MiningNet(cfg).eval()]
    both = Classifier(cfg, [n.state_dict() for n in nets])
    singles = [Classifier(cfg, [n.state_dict()]) for n in nets]
    chips = [torch.randint(0, 255, (96, 130, 3), dtype=torch.uint8).numpy()]
    expected = (singles[0].predict_proba(chips) + singles[1].predict_proba(chips)) / 2
    assert abs(float(both.predict_proba(chips)[0]) - float(expected[0])) < 1e-5
