"""The [slurm] table and --slurm KEY=VALUE: Slurm's own formats, one-line errors, what submitit is asked for."""

from __future__ import annotations

import pytest

from bench.core.errors import BenchError
from bench.workflows import slurm_settings
from bench.workflows.slurm_settings import SlurmSettings


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("BENCH_CONFIG", str(path))
    return path


@pytest.mark.parametrize("text, minutes", [
    ("90", 90), ("5:30", 6), ("2:00:00", 120), ("1-0", 1440), ("1-2:30", 1590), ("0-0:0:59", 1), (45, 45),
])
def test_slurm_time_formats_are_read_as_whole_minutes(text, minutes):
    assert SlurmSettings().with_values({"time": text}, "here").time == minutes


@pytest.mark.parametrize("key, value, expected", [
    ("time", "soon", "a Slurm time"),
    ("time", "0", "a time limit above 0"),
    ("mem", "lots", "memory as Slurm writes it"),
    ("cpus_per_task", 0, "at least 1"),
    ("gpus_per_task", -1, "at least 0"),
    ("partition", "two words", "a name without spaces"),
    ("sbatch", "mail-type=END", "--key=value or --flag"),
])
def test_a_bad_value_names_the_setting_and_what_it_must_be(key, value, expected):
    with pytest.raises(BenchError, match=f"slurm setting {key} = .* is not .*{expected}"):
        SlurmSettings().with_values({key: value}, "here")


def test_the_config_table_is_read_and_the_command_line_overrides_it(config):
    config.write_text('[slurm]\npartition = "gpu"\ntime = "12:00:00"\nmem = "32GB"\nsbatch = ["--mail-type=END"]\n'
                      'setup = ["module load cuda"]\nparallel = 4\n')
    settings = slurm_settings.settings(["time=30", "sbatch=--exclusive", "account=lab"], parallel=2)
    assert (settings.partition, settings.time, settings.mem, settings.account) == ("gpu", 30, "32G", "lab")
    assert settings.sbatch == ("--mail-type=END", "--exclusive") and settings.parallel == 2
    parameters = settings.submitit_parameters("bench-run", "cpu", None)
    assert parameters == {"job_name": "bench-run", "time": 30, "partition": "gpu", "account": "lab", "mem": "32G",
                          "array_parallelism": 2, "setup": ["module load cuda"],
                          "additional_parameters": {"mail-type": "END", "exclusive": True}}


def test_cuda_asks_for_one_gpu_unless_the_config_says_otherwise(config):
    assert slurm_settings.settings().submitit_parameters("j", "cuda", None)["gpus_per_task"] == 1
    assert "gpus_per_task" not in slurm_settings.settings().submitit_parameters("j", "auto", None)
    assert "gpus_per_task" not in slurm_settings.settings(["gres=gpu:a100:1"]).submitit_parameters("j", "cuda", None)
    assert "gpus_per_task" not in slurm_settings.settings(["gpus_per_task=0"]).submitit_parameters("j", "cuda", None)
    assert slurm_settings.settings(["gpus_per_task=2"]).submitit_parameters("j", "cpu", None)["gpus_per_task"] == 2


def test_threads_set_the_cpus_per_task_over_the_config(config):
    config.write_text("[slurm]\ncpus_per_task = 8\n")
    assert slurm_settings.settings().submitit_parameters("j", "cpu", None)["cpus_per_task"] == 8
    assert slurm_settings.settings().submitit_parameters("j", "cpu", 2)["cpus_per_task"] == 2


def test_without_a_time_a_day_is_asked_for_not_submitits_five_minutes(config):
    assert slurm_settings.settings().submitit_parameters("j", "cpu", None)["time"] == 24 * 60


@pytest.mark.parametrize("text, expected", [
    ("[slurm\n", "cannot read the configuration file"),
    ("slurm = 3\n", "'slurm' must be a table"),
    ("[slurm]\npartitoin = 'gpu'\n", "unknown \\[slurm\\] setting 'partitoin'; did you mean 'partition'"),
    ("[slurm]\ntime = true\n", "slurm setting time = True is not a Slurm time"),
])
def test_a_malformed_config_is_one_line_naming_the_file(config, text, expected):
    config.write_text(text)
    with pytest.raises(BenchError, match=expected) as error:
        slurm_settings.settings()
    assert "\n" not in str(error.value) and (str(config) in str(error.value) or "slurm setting" in str(error.value))


@pytest.mark.parametrize("override", ["partition", "=gpu"])
def test_a_command_line_setting_must_be_key_equals_value(config, override):
    with pytest.raises(BenchError, match="is not KEY=VALUE"):
        slurm_settings.settings([override])
