"""kdgan.experiment and the checks kdgan.tune runs before Ray starts: names, storage paths,
the lock, damaged files. None of these tests starts Ray."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kdgan import experiment as exp
from kdgan import tune as tune_mod

from conftest import held, write_blobs_npz
from test_tune import SPACE


def _space(tmp_path: Path) -> Path:
    data = write_blobs_npz(tmp_path / "blobs.npz")
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(data=data, epochs=1, extra=""))
    return path


def _main(tmp_path, capsys, *args: str) -> tuple[int, str]:
    rc = tune_mod.main(["--space", str(_space(tmp_path)), *args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "/abs", "", "-x", ".hidden", "a b"])
def test_a_name_that_is_not_a_plain_folder_name_is_refused(tmp_path, capsys, name):
    rc, err = _main(tmp_path, capsys, f"--name={name}", "--storage-path", str(tmp_path / "s"))
    assert rc == 2 and err.startswith(f"error: --name {name!r}: expected a plain folder name")
    assert err.count("\n") == 1
    assert not (tmp_path / "s").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["kdgan-mnist", "run_2.b", "A1"])
def test_plain_names_pass(name):
    assert exp.check_name(name) == name


def test_a_relative_storage_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert exp.resolve_storage("results/x") == str(tmp_path / "results" / "x")
    assert exp.resolve_storage("s3://bucket/k") == "s3://bucket/k"


def test_a_storage_path_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    for storage in (tmp_path / "f", tmp_path / "f" / "deeper"):
        rc, err = _main(tmp_path, capsys, "--storage-path", str(storage))
        assert rc == 2 and err == f"error: --storage-path {storage}: {tmp_path / 'f'} is a file, not a folder\n"


def test_bad_numbers_are_refused_before_anything(tmp_path, capsys):
    for args, text in ((["--num-samples", "0"], "--num-samples=0: expected >= 1"),
                       (["--checkpoint-every", "0"], "--checkpoint-every=0: expected >= 1"),
                       (["--connect-timeout", "-1"], "--connect-timeout=-1.0: expected >= 0"),
                       (["--cpus-per-trial", "0"], "--cpus-per-trial 0 --gpus-per-trial 0: expected")):
        rc, err = _main(tmp_path, capsys, "--storage-path", str(tmp_path / "s"), *args)
        assert rc == 2 and text in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_second_search_on_a_held_experiment_is_refused_naming_the_holder(tmp_path, capsys):
    experiment = tmp_path / "s" / "held"
    with held(experiment, "the search") as holder:  # ExperimentLock's own lock files
        t0 = time.time()
        rc, err = _main(tmp_path, capsys, "--storage-path", str(tmp_path / "s"), "--name", "held")
        assert time.time() - t0 < 30
        assert rc == 2 and err.count("\n") == 1
        assert f"{experiment} is in use by the search of PID {holder.pid} on " in err
        assert json.loads((experiment / "lock.json").read_text())["pid"] == holder.pid


@pytest.mark.slow
def test_a_lock_left_by_a_killed_search_is_taken_over(tmp_path):
    experiment = tmp_path / "s" / "dead"
    with held(experiment, "the search") as holder:
        holder.kill()  # SIGKILL: no chance to release anything; lock.json stays behind
        holder.join(30)
    assert (experiment / "lock.json").exists()
    with exp.ExperimentLock(experiment):  # the kernel released the dead holder's lock
        assert json.loads((experiment / "lock.json").read_text())["pid"] == os.getpid()
    assert not (experiment / "lock.json").exists()


def test_damaged_files_are_one_line_naming_the_file_and_fresh(tmp_path, capsys):
    storage = tmp_path / "s"
    experiment = storage / "e"
    (experiment / "parts" / "trials").mkdir(parents=True)
    part = experiment / "parts" / "trials" / "abc.parquet"
    part.write_bytes(b"PAR1 garbage")
    rc, err = _main(tmp_path, capsys, "--storage-path", str(storage), "--name", "e")
    assert rc == 2 and err.startswith(f"error: {part}: not a readable Parquet file")
    assert "--fresh" in err and err.count("\n") == 1
    part.unlink()
    (experiment / "optuna.db").write_bytes(b"not sqlite at all, just bytes" * 100)
    rc, err = _main(tmp_path, capsys, "--storage-path", str(storage), "--name", "e")
    assert rc == 2 and err.startswith(f"error: {experiment / 'optuna.db'}: not a readable Optuna study")
    assert "--fresh" in err and err.count("\n") == 1


def test_fresh_clears_all_but_the_pretrained_players(tmp_path):
    experiment = tmp_path / "e"
    for rel in ("pretrain/cls-1.pt", "parts/trials/a.parquet", "optuna.db", "trials.parquet",
                "kdgan_a_1/result.json", "experiment_state-x.json"):
        (experiment / rel).parent.mkdir(parents=True, exist_ok=True)
        (experiment / rel).write_text("x")
    with exp.ExperimentLock(experiment):
        removed = exp.clear(experiment, str(tmp_path), "e")
        assert sorted(p.name for p in experiment.iterdir()) == [".lock", "lock.json", "pretrain"]
    assert set(removed) == {"parts", "optuna.db", "trials.parquet", "kdgan_a_1",
                            "experiment_state-x.json"}
    assert (experiment / "pretrain" / "cls-1.pt").exists()


@pytest.mark.slow
def test_an_address_nobody_answers_fails_within_its_deadline(tmp_path, capsys):
    t0 = time.time()
    rc, err = _main(tmp_path, capsys, "--storage-path", str(tmp_path / "s"), "--address",
                    "127.0.0.1:1", "--connect-timeout", "3")
    assert rc == 1 and time.time() - t0 < 20
    assert err.startswith("error: --address 127.0.0.1:1: no Ray cluster answers there")
    assert err.count("\n") == 1


def test_a_bad_environment_variable_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDGAN_PRETRAIN_LOCK_TIMEOUT", "soon")
    rc, err = _main(tmp_path, capsys, "--storage-path", str(tmp_path / "s"))
    assert rc == 2 and err == "error: KDGAN_PRETRAIN_LOCK_TIMEOUT='soon': expected seconds >= 0\n"
