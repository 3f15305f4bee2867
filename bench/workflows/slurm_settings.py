"""The Slurm resources of ``--executor slurm``: set once in the ``[slurm]`` table of the user's configuration
file (``BENCH_CONFIG``, default ``~/.config/bench/config.toml``), overridden per command by ``--slurm
KEY=VALUE``, and turned into the parameters of submitit's ``SlurmExecutor``::

    [slurm]
    partition = "gpu"
    account = "mylab"
    qos = "normal"
    time = "12:00:00"            # Slurm's formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
    mem = "32G"
    cpus_per_task = 8
    gpus_per_task = 1            # or gres = "gpu:a100:1"; --device cuda asks for one GPU unless one is set
    constraint = "a100"
    sbatch = ["--mail-type=END", "--mail-user=me@lab.org"]   # further #SBATCH options
    setup = ["module load cuda/12.4"]                         # shell lines run before each task
    folder = "/shared/me/bench-jobs"   # submissions' files: a folder every node sees
    parallel = 16                      # array tasks running at once (Slurm's %N; --slurm-parallel)
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from bench.core import paths
from bench.core.did_you_mean import unknown
from bench.core.errors import BenchError

DEFAULT_TIME_MIN = 24 * 60  # submitit would otherwise ask for 5 minutes
TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")
MEMORY = re.compile(r"\d+[KMGT]?")
SBATCH_OPTION = re.compile(r"--(?P<key>[a-z][a-z0-9-]*)(?:=(?P<value>.+))?")


def _minutes(value: object) -> int:
    """Slurm's time formats (``sbatch --time``) as whole minutes, rounded up."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = TIME.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, a, b, c = (int(match[k]) if match[k] else None for k in ("days", "a", "b", "c"))
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    else:  # MM or MM:SS
        seconds = a * 60 + (b or 0)
    if seconds <= 0:
        raise ValueError("a time limit above 0")
    return -(-seconds // 60)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ValueError("a name without spaces")
    return value.strip()


def _memory(value: object) -> str:
    text = str(value).strip().upper() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    text = text.removesuffix("B") if len(text) > 1 and text[-2] in "KMGT" else text
    if not MEMORY.fullmatch(text):
        raise ValueError("memory as Slurm writes it: a whole number with K, M, G or T (e.g. 32G)")
    return text


def _count(minimum: int):
    def parse(value: object) -> int:
        try:
            number = int(value) if not isinstance(value, (bool, float)) else None
        except ValueError:
            number = None
        if number is None or number < minimum:
            raise ValueError(f"a whole number of at least {minimum}")
        return number
    return parse


def _option(value: object) -> str:
    text = str(value).strip().removeprefix("#SBATCH").strip()
    if not SBATCH_OPTION.fullmatch(text):
        raise ValueError("sbatch options written --key=value or --flag")
    return text


def _line(value: object) -> str:
    if not isinstance(value, str) or "\n" in value:
        raise ValueError("one shell line")
    return value


PARSERS = {
    "partition": _text, "account": _text, "qos": _text, "constraint": _text, "gres": _text,
    "time": _minutes, "mem": _memory, "cpus_per_task": _count(1), "gpus_per_task": _count(0),
    "sbatch": _option, "setup": _line, "folder": str, "parallel": _count(1),
}
LISTS = ("sbatch", "setup")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gres: str | None = None
    time: int = DEFAULT_TIME_MIN
    mem: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    sbatch: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    folder: str = "bench-jobs"
    parallel: int | None = None

    def with_values(self, values: dict[str, object], where: str, extend: bool = False) -> SlurmSettings:
        """These settings with ``values`` parsed over them (``extend``: list keys add to the list)."""
        changes: dict[str, object] = {}
        for key, value in values.items():
            if key not in PARSERS:
                raise BenchError(unknown("[slurm] setting", key, PARSERS, hint=where))
            items = value if key in LISTS and isinstance(value, list) else [value] if key in LISTS else None
            try:
                if items is not None:
                    parsed = tuple(PARSERS[key](item) for item in items)
                    changes[key] = (*getattr(self, key), *parsed) if extend else parsed
                else:
                    changes[key] = PARSERS[key](value)
            except ValueError as exc:
                raise BenchError(f"{where}: slurm setting {key} = {value!r} is not {exc}") from None
        return replace(self, **changes)

    def submitit_parameters(self, job_name: str, device: str, threads: int | None) -> dict:
        """The parameters of ``SlurmExecutor.update_parameters``: ``threads`` (``--threads``) sets the CPUs
        per task over the config's; ``--device cuda`` asks for one GPU unless a GPU count or GRES is set."""
        params: dict = {"job_name": job_name, "time": self.time}
        for key in ("partition", "account", "qos", "constraint", "gres", "mem"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        cpus = threads or self.cpus_per_task
        if cpus:
            params["cpus_per_task"] = cpus
        gpus = self.gpus_per_task
        if gpus is None and device == "cuda" and self.gres is None:
            gpus = 1
        if gpus:
            params["gpus_per_task"] = gpus
        if self.parallel:
            params["array_parallelism"] = self.parallel
        if self.setup:
            params["setup"] = list(self.setup)
        extra = {}
        for option in self.sbatch:
            match = SBATCH_OPTION.fullmatch(option)
            extra[match["key"]] = match["value"] if match["value"] is not None else True
        if extra:
            params["additional_parameters"] = extra
        return params


def read(path: Path | None = None) -> SlurmSettings:
    """The ``[slurm]`` table of the configuration file (defaults where it or the file is absent)."""
    path = path or paths.config_file()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return SlurmSettings()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"cannot read the configuration file {path} ({exc}); fix it or point BENCH_CONFIG "
                         "elsewhere") from None
    table = data.get("slurm", {})
    if not isinstance(table, dict):
        raise BenchError(f"{path}: 'slurm' must be a table ([slurm]) of settings; see the README's Clusters section")
    return SlurmSettings().with_values(table, str(path))


def settings(overrides: list[str] | tuple[str, ...] = (), parallel: int | None = None) -> SlurmSettings:
    """The configuration file's settings under ``--slurm KEY=VALUE`` overrides and ``--slurm-parallel``."""
    values: dict[str, list | str] = {}
    for text in overrides:
        key, sign, value = text.partition("=")
        if not sign or not key.strip():
            raise BenchError(f"--slurm '{text}' is not KEY=VALUE; e.g. --slurm partition=gpu --slurm time=2:00:00")
        key = key.strip().replace("-", "_")
        if key in LISTS:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    config = read().with_values(values, "--slurm", extend=True)
    return replace(config, parallel=parallel) if parallel is not None else config

