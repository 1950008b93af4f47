"""``python train.py`` as a user runs it (subprocesses: Hydra's run dir, exit codes, messages)."""

import json
import os
import subprocess
import sys

from conftest import ROOT, TINY
from vaemix.cli import done_line


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_bad_value_exits_2_with_one_line_and_no_traceback(tmp_path):
    r = _run("trainer.lr=-1", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    assert "error: trainer.lr=-1.0 is out of range; it must be > 0" in r.stderr
    assert "Traceback" not in r.stderr


def test_train_py_writes_a_run_dir_and_resumes(tmp_path, tfds_dir):
    args = [*TINY, f"data.data_dir={tfds_dir}", f"hydra.run.dir={tmp_path}"]
    first = _run(*args, "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "run_config.yaml").exists() and not (tmp_path / ".hydra").exists()
    second = _run(*args, "trainer.max_steps=4")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from" in (tmp_path / "train.log").read_text()
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 4


def test_only_vaemix_errors_become_one_line_and_exit_2(capsys):
    import pytest

    from vaemix.cli import main_guard
    from vaemix.errors import VaemixError

    def user_mistake(_):
        raise VaemixError("data.path='x.csv' does not exist")

    def bug(_):
        raise ValueError("a bug")

    with pytest.raises(SystemExit) as stopped:
        main_guard(user_mistake, None)
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: data.path='x.csv' does not exist\n"
    with pytest.raises(ValueError, match="a bug"):  # not swallowed: its traceback reaches the user
        main_guard(bug, None)
    assert issubclass(VaemixError, ValueError)  # library errors compose in user code


def test_hydra_composition_errors_become_one_line():
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError

    from vaemix.cli import one_line

    try:
        try:
            raise ConfigKeyError("Key 'learning_rate' not in 'TrainerConfig'\n    full_key: trainer.learning_rate")
        except ConfigKeyError as cause:
            raise ConfigCompositionException("Could not override 'trainer.learning_rate'.") from cause
    except ConfigCompositionException as e:
        assert one_line(e) == "Could not override 'trainer.learning_rate'; Key 'learning_rate' not in 'TrainerConfig'"
    missing = ConfigCompositionException(
        "In 'config': Could not find 'prior/x'\n\nAvailable options in 'prior':\n\tbase\n\tgmm\n\tnormal\n"
        "Config search path:\n\tprovider=hydra, path=pkg://hydra.conf"
    )
    assert one_line(missing) == "In 'config': Could not find 'prior/x'; available options in 'prior': gmm, normal"


def test_the_last_line_names_the_signals_and_says_why_separation_is_missing():
    metrics = {"step": 900, "elbo": -132.6, "separation": 0.1824, "confidence": 0.9741, "smallest_share": 0.059}
    assert done_line(metrics, "out") == (
        "done: step 900, eval ELBO -132.60 nats, cluster separation 0.182, confidence 0.974 and smallest "
        "cluster 0.059 (label-free); run dir out"
    )
    one = done_line({**metrics, "separation": float("nan"), "smallest_share": 0.0}, "out")
    assert "cluster separation n/a (one cluster holds every test example)," in one and "nan" not in one
    assert done_line({"step": 1, "elbo": -90.0}, "out") == "done: step 1, eval ELBO -90.00 nats; run dir out"
