"""Model registry: versions stored beside the DB, bundled version 0, promotion, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.errors import ConflictError, InvalidInputError, NotFoundError
from amberwatch.model.registry import ModelRegistry, current_model, load_version, parse_version
from amberwatch.project import models_dir


def test_register_saves_file_beside_db_and_lists_bundled_first(db_path, tiny_classifier):
    with ModelRegistry.open(db_path) as reg:
        info = reg.register(
            tiny_classifier(1),
            n_mining=3,
            n_not_mining=5,
            seed=1,
            metrics={"cv": {"f1": 0.8}},
            parent_version=0,
            training_sha256s=["b", "a"],
        )
        assert info.version == 1
        assert info.path == models_dir(db_path) / "v1.pt" and info.path.exists()
        assert info.path.parent.name == "project-models"
        versions = reg.versions()
        assert [v.version for v in versions] == [0, 1]
        assert versions[0].is_current and not versions[1].is_current
        assert reg.training_sha256s(1) == ["a", "b"]
        assert reg.training_sha256s(0) is None
        second = reg.register(tiny_classifier(2))
        assert second.version == 2


def test_promote_makes_version_current_and_loadable(db_path, tiny_classifier, rng):
    clf = tiny_classifier(3)
    chips = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    expected = clf.predict_proba(chips)
    with ModelRegistry.open(db_path) as reg:
        reg.register(clf)
        reg.promote(1)
        assert reg.current_version() == 1
        with pytest.raises(ConflictError, match="already"):
            reg.promote("v1")
    model = current_model(db_path)
    assert model.version == "1"
    np.testing.assert_allclose(model.predict_proba(chips), expected, rtol=1e-5, atol=1e-6)
    assert load_version(db_path, 1).version == "1"


def test_unknown_version_and_bad_version_text(db_path):
    with ModelRegistry.open(db_path) as reg, pytest.raises(NotFoundError, match="model version 7"):
        reg.get(7)
    with pytest.raises(InvalidInputError, match="'latest'"):
        parse_version("latest")
    assert parse_version("v12") == 12


def test_models_cli_list_show_promote(db_path, tiny_classifier):
    with ModelRegistry.open(db_path) as reg:
        reg.register(tiny_classifier(1), n_mining=4, n_not_mining=6, metrics={"cv": {"f1": 0.75}})
    runner = CliRunner()
    res = runner.invoke(main, ["models", "list", "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1].startswith("*") and lines[1].split()[1] == "0"
    assert "0.750" in lines[2]

    res = runner.invoke(main, ["models", "show", "1", "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["version"] == 1 and shown["n_mining"] == 4 and shown["current"] is False

    res = runner.invoke(main, ["models", "promote", "1", "--db", str(db_path)])
    assert res.exit_code == 0 and "now current" in res.output
    res = runner.invoke(main, ["models", "list", "--json", "--db", str(db_path)])
    assert [v["current"] for v in json.loads(res.output)] == [False, True]

    res = runner.invoke(main, ["models", "show", "9", "--db", str(db_path)])
    assert res.exit_code == 1 and "model version 9" in res.output
    res = runner.invoke(main, ["models", "promote", "0", "--db", str(db_path)])
    assert res.exit_code == 0
    with ModelRegistry.open(db_path) as reg:
        assert reg.current_version() == 0


def test_models_cli_missing_db(tmp_path):
    res = CliRunner().invoke(main, ["models", "list", "--db", str(tmp_path / "nope.db")])
    assert res.exit_code == 1 and "nope.db" in res.output


def _triage_of(tiny_classifier, threshold: float = 0.05):
    triage = tiny_classifier(7)
    triage.threshold = threshold
    triage.metadata["cv"] = {"recall": 0.81, "threshold": threshold, "min_recall_target": 0.8}
    return triage


def test_a_version_keeps_its_triage_model_beside_it_checked_by_sha256_else_the_bundled_one(db_path, tiny_classifier):
    from amberwatch.errors import ModelError
    from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load

    with ModelRegistry.open(db_path) as reg:
        own = reg.register(tiny_classifier(1), triage=_triage_of(tiny_classifier))
        plain = reg.register(tiny_classifier(2))
        assert own.triage.own and own.triage.path == models_dir(db_path) / "v1-triage.pt"
        assert own.triage.threshold == pytest.approx(0.05) and own.triage.cv["recall"] == 0.81
        assert reg.triage_model(1) == own.triage
        triage = load(own.triage.path)
        assert triage.version == "1-triage" and triage.metadata["role"] == "triage"  # its scans' model version
        for version in (0, plain.version):  # no triage model of its own: the bundled one goes with it
            bundled = reg.triage_model(version)
            assert (
                not bundled.own
                and bundled.path == BUNDLED_TRIAGE_PATH
                and bundled.threshold == pytest.approx(0.011, abs=1e-3)
            )
        assert reg.versions()[1].as_dict()["triage"]["own"] is True
        own.triage.path.write_bytes(own.triage.path.read_bytes() + b"x")
        with pytest.raises(ModelError, match=r"v1-triage\.pt"):
            reg.triage_model(1)


def test_a_registry_made_before_triage_models_upgrades_with_the_bundled_one_for_its_versions(db_path, tiny_classifier):
    from amberwatch.db import connect, migrate
    from amberwatch.model.registry import MIGRATIONS

    conn = connect(db_path)
    migrate(conn, "models", MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO model_versions (version, file_name, file_sha256, created_at) VALUES (1, 'v1.pt', 'x', 'now')"
    )
    conn.close()
    with ModelRegistry.open(db_path) as reg:
        assert not reg.get(1).triage.own and reg.get(1).triage.path.name == "triage.pt"


def test_models_list_says_which_triage_model_and_threshold_go_with_each_version(db_path, tiny_classifier):
    with ModelRegistry.open(db_path) as reg:
        reg.register(tiny_classifier(1), triage=_triage_of(tiny_classifier))
    res = CliRunner().invoke(main, ["models", "list", "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "triage (thresh)" in lines[0]
    assert "bundled (0.0110)" in lines[1] and "own (0.0500)" in lines[2]
