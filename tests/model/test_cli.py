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
        ],
    )
    assert result.exit_code == 0, result.output
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
