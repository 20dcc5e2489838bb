"""The model CLI: predict (with bad files), evaluate --data --json, train --data."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import amberwatch.model as model
from amberwatch.cli import main


def test_predict_prints_each_file_and_names_bad_ones(small_folder, tmp_path):
    good = sorted((small_folder / "positive").iterdir())[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    args = ["predict", str(good[0]), str(bad), str(tmp_path / "absent.png"), str(good[1]), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good[0]), str(good[1])]
    assert all(0 <= line["p_mining"] <= 1 and line["verdict"] in ("mining", "not_mining") for line in lines)
    assert "broken.png" in result.stderr and "absent.png" in result.stderr
    plain = CliRunner().invoke(main, ["predict", str(good[0])])
    assert plain.exit_code == 0 and str(good[0]) in plain.stdout


def test_predict_with_corrupt_model_names_it(small_folder, tmp_path):
    bad_model = tmp_path / "bad-model.pt"
    bad_model.write_bytes(b"nope")
    img = next((small_folder / "positive").iterdir())
    result = CliRunner().invoke(main, ["predict", str(img), "--model", str(bad_model)])
    assert result.exit_code == 1 and "bad-model.pt" in result.stderr


@pytest.mark.slow
def test_evaluate_data_json_with_bundled_model(small_folder):
    result = CliRunner().invoke(main, ["evaluate", "--data", str(small_folder), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("precision", "recall", "f1", "average_precision"):
        assert 0 <= metrics[key] <= 1
    assert metrics["n_positive"] == 8 and metrics["n_negative"] == 8
    assert metrics["threshold"] == round(model.load().threshold, 4)


def test_evaluate_data_missing_folder(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path), "--json"])
    assert result.exit_code == 1 and str(tmp_path) in result.stderr


@pytest.mark.slow
def test_train_from_folder_writes_one_model_file(small_folder, tmp_path):
    out = tmp_path / "trained.pt"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(small_folder),
            "--out",
            str(out),
            "--folds",
            "0",
            "--epochs",
            "1",
            "--members",
            "1",
            "--seed",
            "5",
            "--db",
            str(tmp_path / "no-project.db"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "not registered: 'amberwatch models add" in result.stdout
    clf = model.load(out)
    assert clf.metadata["seed"] == 5 and clf.metadata["counts"]["mining"] == 8


def test_evaluate_data_skips_unreadable_files_with_a_warning(small_folder, tmp_path):
    import shutil

    folder = tmp_path / "labelled"
    shutil.copytree(small_folder, folder)
    (folder / "negative" / "broken.png").write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["evaluate", "--data", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_negative"] == 8
    assert "broken.png" in result.stderr


def test_predict_on_a_decompression_bomb_is_a_one_line_error(small_folder, tmp_path):
    from tests.fixtures.tileserver import bomb_png

    good = sorted((small_folder / "positive").iterdir())[0]
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    result = CliRunner().invoke(main, ["predict", str(bomb), str(good), "--json"])
    assert result.exit_code == 1
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [str(good)]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {bomb}: image is too large")
    assert "Traceback" not in result.output and "DecompressionBombError" not in result.stderr


def _tiny_model_file(path, trained_on: list[str] = (), **metadata):
    """A small real model file whose metadata records the given training examples (pixel sha256s)."""
    from tests.loop.conftest import make_classifier

    clf = make_classifier()
    clf.threshold = 0.4
    clf.metadata.update(metadata)
    if trained_on:
        clf.metadata["training_oof"] = {sha: None for sha in trained_on}
    clf.save(path)
    return path


def test_predict_warns_that_it_expects_chips_on_a_whole_image(small_folder, tmp_path):
    import numpy as np
    from PIL import Image

    whole = tmp_path / "whole.png"
    Image.fromarray(np.full((900, 1000, 3), 120, np.uint8)).save(whole)
    chip = sorted((small_folder / "positive").iterdir())[0]
    model_file = _tiny_model_file(tmp_path / "m.pt")
    result = CliRunner().invoke(main, ["predict", str(whole), str(chip), "--model", str(model_file)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warned) == 1 and "whole.png: 1000 x 900 px is much larger than a chip" in warned[0]
    assert "imagery from-image" in warned[0] and "amberwatch scan" in warned[0]
    assert "threshold stored in the model" in result.stderr and "0.400" in result.stderr


def test_evaluate_data_warns_about_examples_the_model_was_trained_on(small_folder, tmp_path):
    from amberwatch.model.dataset import load_folder

    shas = load_folder(small_folder).pixel_sha256s()
    model_file = _tiny_model_file(tmp_path / "m.pt", trained_on=shas[:3] + shas[-3:])
    args = ["evaluate", "--data", str(small_folder), "--model", str(model_file)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["trained_on"] == 6 and metrics["threshold"] == 0.4
    assert metrics["not_trained_on"]["n_positive"] + metrics["not_trained_on"]["n_negative"] == 10
    assert "Warning: 6 of the 16 examples in" in result.stderr and "trained on" in result.stderr
    plain = CliRunner().invoke(main, args)
    assert "at the model's threshold 0.400 (16 examples of" in plain.stdout
    assert "scans and predict use the model's threshold 0.400" in plain.stdout
    assert "on the 10 it was not trained on: F1" in plain.stdout


def test_evaluate_data_on_held_out_examples_does_not_warn(small_folder, tmp_path):
    model_file = _tiny_model_file(tmp_path / "m.pt", trained_on=["0" * 64])
    result = CliRunner().invoke(main, ["evaluate", "--data", str(small_folder), "--model", str(model_file), "--json"])
    assert result.exit_code == 0 and "Warning" not in result.stderr
    assert json.loads(result.stdout)["trained_on"] == 0


def test_models_add_registers_a_model_file_that_scans_can_name(tmp_path):
    from amberwatch.model.registry import ModelRegistry, load_model_arg
    from amberwatch.scan.engine import resolve_model

    cv = {"f1": 0.75, "precision": 0.8, "recall": 0.7, "threshold": 0.4, "folds": 3, "split_seeds": [0]}
    cv.update({"scored_examples": 20})
    model_file = _tiny_model_file(
        tmp_path / "m.pt", trained_on=["a" * 64, "b" * 64], counts={"mining": 8, "not_mining": 12}, cv=cv
    )
    db = tmp_path / "p.db"
    result = CliRunner().invoke(main, ["models", "add", str(model_file), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "as model version 1" in result.stdout and "models promote 1" in result.stdout
    with ModelRegistry.open(db) as reg:
        v1 = reg.get(1)
        assert v1.n_mining == 8 and v1.metrics["cv"]["f1"] == 0.75 and not v1.is_current
        assert reg.training_sha256s(1) == ["a" * 64, "b" * 64]
    listing = CliRunner().invoke(main, ["models", "list", "--db", str(db)])
    assert "0.400" in listing.stdout and "block CV, 3 folds, 1 split, 20 examples" in listing.stdout
    model = resolve_model(db, "1")  # scan --model 1
    assert model.version == "1" and model.path.endswith("v1.pt") and model.clf.threshold == 0.4
    assert load_model_arg(db, "v1").threshold == 0.4
    promoted = CliRunner().invoke(main, ["models", "add", str(model_file), "--db", str(db), "--promote"])
    assert promoted.exit_code == 0 and "version 2" in promoted.stdout
    with ModelRegistry.open(db) as reg:
        assert reg.current_version() == 2


def test_train_from_a_folder_without_a_project_needs_out(small_folder, tmp_path):
    db = tmp_path / "absent.db"
    result = CliRunner().invoke(main, ["train", "--data", str(small_folder), "--db", str(db), "--folds", "0"])
    assert result.exit_code == 1 and "pass --out FILE" in result.stderr
    assert not db.exists()


@pytest.mark.slow
def test_train_registers_its_model_and_says_how_to_scan_with_it(small_folder, tmp_path):
    from amberwatch.model.registry import ModelRegistry

    db = tmp_path / "p.db"
    ModelRegistry.open(db).close()
    args = ["train", "--data", str(small_folder), "--db", str(db), "--recipe", "cnn", "--epochs", "1"]
    result = CliRunner().invoke(main, [*args, "--members", "1", "--folds", "2"])
    assert result.exit_code == 0, result.output
    with ModelRegistry.open(db) as reg:
        v1 = reg.load(1)
        assert reg.current_version() == 0 and len(reg.training_sha256s(1)) == 16
        assert reg.get(1).metrics["cv"]["threshold"] == round(v1.threshold, 4)
    out = result.stdout
    assert f"at the model's threshold {v1.threshold:.3f} (block CV, 2 folds, 1 split, 16 examples of " in out
    assert "registered model version 1" in out and "--model 1" in out and "models promote 1" in out
    again = CliRunner().invoke(main, [*args, "--members", "1", "--folds", "0", "--promote"])
    assert again.exit_code == 0, again.output
    assert "registered model version 2" in again.stdout and "now the project's current model" in again.stdout
    with ModelRegistry.open(db) as reg:
        assert reg.current_version() == 2
