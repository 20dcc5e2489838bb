"""The shared Click options of options.py: one definition of --workers, --seed, --folds, --out and --data, used by
every command that takes them (issue 27 item 5)."""

from __future__ import annotations

import click
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.options import data_option, folds_option, out_option, seed_option, workers_option


@click.command()
@workers_option("Processes.")
@seed_option()
@folds_option(min_folds=2)
@out_option("Folder.", folder=True, default="evaluation", dest="out_dir")
@data_option("Labelled folder.")
def probe(workers: int, seed: int, folds: int, out_dir: str, data_dir: str | None) -> None:
    """Echo the parsed options."""
    click.echo(f"{workers} {seed} {folds} {out_dir} {data_dir}")


def test_shared_options_parse_with_their_defaults(tmp_path):
    runner = CliRunner()
    assert runner.invoke(probe, []).output.strip() == "1 0 5 evaluation None"
    out = runner.invoke(probe, ["--workers", "3", "--seed", "7", "--folds", "2", "--data", str(tmp_path)])
    assert out.output.strip() == f"3 7 2 evaluation {tmp_path}"


def test_shared_options_refuse_out_of_range_values(tmp_path):
    runner = CliRunner()
    assert runner.invoke(probe, ["--workers", "0"]).exit_code == 2
    assert runner.invoke(probe, ["--folds", "1"]).exit_code == 2
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    assert runner.invoke(probe, ["--out", str(afile)]).exit_code == 2  # a folder option refuses a file


def _option(command: click.Command, name: str) -> click.Option:
    return next(p for p in command.params if isinstance(p, click.Option) and name in p.opts)


def test_commands_take_the_shared_definitions():
    scan = _option(main.commands["scan"], "--workers")
    assert (scan.type.min, scan.type.max, scan.default) == (1, 256, None)
    for name in ("train", "evaluate", "retrain"):
        workers, seed, folds = (_option(main.commands[name], o) for o in ("--workers", "--seed", "--folds"))
        assert (workers.type.min, workers.default, seed.default, folds.default) == (1, 1, 0, 5), name
    assert _option(main.commands["evaluate"], "--out").default == "evaluation"
    assert _option(main.commands["story"].commands["build"], "--out").required
