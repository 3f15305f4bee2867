"""Model cards: which adapter, the parameters that differ from its defaults, presets and search space.

Cards are read from the catalog (``bench/catalog/models/``) and from the user's card folder
(``BENCH_CARDS_DIR``, where ``bench sweep`` writes tuned cards); a name may be used once.

Schema::

    name = "linear"                       # must equal the file name (before .toml)
    adapter = "bench.adapters.linear:LinearModel"   # "module:Class", imported only when used
    description = "..."
    citation = "..."
    baseline = true                       # optional: a simple baseline (leaderboard references)
    family = "latent_additive"            # optional: the family plots draw it in (default: see ``family``)
    counts = true                         # optional: the adapter reads layers['counts'] (raw counts),
                                          # which the harness then loads (it skips them otherwise)
    environment = "cellflow.txt"          # optional: the model runs in its own virtual environment,
                                          # built from this pinned requirements file (beside the card,
                                          # else in the catalog's environments/); see kit.environment
    [params]                              # overrides of the adapter's defaults
    [presets.fast]                        # named overrides on top of params ("default" = params)
    [search_space]                        # for sweeps: name = { type = "float", low, high, log }

The adapter's constructor declares the parameters and their defaults (a kit adapter in its ``Params``
dataclass): they are the one source of defaults. ``resolve_params`` returns a run's complete parameters:
the adapter's defaults, then the card's params, the preset's values and ``--param`` overrides.

An ablation or tuned card can start from another card instead of repeating it (the parent is looked
up beside the card first, then among all known cards)::

    name = "linear_no_go"
    extends = "linear"                    # inherit adapter, description, citation, params, presets, search_space
    description = "..."                   # own strings replace the parent's (omitted ones are inherited)
    unset = ["search_space.ridge"]        # drop inherited entries (see below)
    [params]                              # merged key by key over the parent's params
    [presets.fast]                        # merged key by key over the parent's preset of that name
    [search_space]                        # entries replace the parent's entry of the same name whole

``unset`` names what the card drops after merging: ``search_space.<name>``, ``presets.<preset>``,
``presets.<preset>.<name>``, or ``params.<name>``: a parameter the card does not pass at all (the
adapter's default applies and runs do not record it, e.g. the adversary's size of a card without
adversary). Naming an entry that is not there is an error. ``baseline`` and ``family`` are not inherited; ``counts``,
``environment`` and ``unset`` parameters are.

``card_hash`` identifies what a card runs (adapter, the adapter's defaults, every preset's complete
parameters, search space, counts), so a run notices a changed parent or default; it imports the adapter.

Dataset manifests are read by ``bench.data.manifest``; both give did-you-mean errors for unknown names.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
import tomllib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import paths
from bench.core.did_you_mean import unknown
from bench.core.errors import BenchError

DEFAULT_PRESET = "default"


def preset_label(model: str, preset: str, notes: Sequence[str] = ()) -> str:
    """``model``, or ``model [preset]`` when the preset is not the default: how tables name a run's card.
    ``notes`` join the preset in the brackets (``model [preset, note]``, ``model [note]``)."""
    parts = ([] if preset == DEFAULT_PRESET else [preset]) + list(notes)
    return f"{model} [{', '.join(parts)}]" if parts else model


@dataclass(frozen=True)
class ModelCard:
    name: str
    adapter: str
    description: str
    citation: str
    params: dict = field(default_factory=dict)
    presets: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    baseline: bool = False
    counts: bool = False
    extends: str = ""
    family: str = ""
    sweep: dict = field(default_factory=dict)
    unset: list = field(default_factory=list)
    environment: str = ""
    path: Path | None = None

    @property
    def preset_names(self) -> list[str]:
        return [DEFAULT_PRESET, *sorted(self.presets)]


def card_files(directories: list[Path] | None = None) -> dict[str, Path]:
    """Card name -> file over ``directories`` (default: the catalog's and the user's card folders)."""
    files: dict[str, Path] = {}
    for directory in dict.fromkeys(d.resolve() for d in directories or paths.card_dirs()):
        for path in sorted(directory.glob("*.toml")):
            if path.stem in files:
                raise BenchError(f"model card '{path.stem}' is defined twice, in {files[path.stem]} and {path}; "
                                 "rename or remove one")
            files[path.stem] = path
    return files


def read_card(path: Path) -> ModelCard:
    """Read a card; a parent named by ``extends`` is looked up beside it, then among all known cards."""
    known = {**card_files(), **{p.stem: p for p in path.parent.glob("*.toml")}}
    return _read_card(path, (), known)


def _read_card(path: Path, chain: tuple[str, ...], known: dict[str, Path]) -> ModelCard:
    """``chain``: the cards being read that extend this one, outermost first (to report cycles);
    ``known``: card name -> file, where parents are found."""
    try:
        table = tomllib.loads(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"cannot read model card {path}: {exc}") from None
    extra = set(table) - (set(ModelCard.__dataclass_fields__) - {"path"})
    if extra:
        raise BenchError(f"{path}: unknown field(s) {', '.join(sorted(extra))}")
    _check_tables(path, table)
    unset = table.get("unset", [])
    if not isinstance(unset, list) or not all(isinstance(entry, str) for entry in unset):
        raise BenchError(f"{path}: 'unset' must be a list of strings, e.g. unset = [\"search_space.ridge\"]")
    if "extends" in table:
        parent = _read_parent(path, table["extends"], (*chain, path.stem), known)
        table = _inherit(parent, table)
    for entry in unset:
        _unset(path, table, entry)
    for key in ("name", "adapter", "description", "citation"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise BenchError(f"{path}: missing or empty '{key}'; every model card needs it")
    if not isinstance(table.get("family", ""), str):
        raise BenchError(f"{path}: 'family' must be a card name in quotes, got {table['family']!r}")
    if not isinstance(table.get("environment", ""), str):
        raise BenchError(f"{path}: 'environment' must be a requirements file's name in quotes, "
                         f"got {table['environment']!r}")
    if not isinstance(table.get("counts", False), bool):
        raise BenchError(f"{path}: 'counts' must be true or false, got {table['counts']!r}")
    if table["name"] != path.stem:
        raise BenchError(f"{path}: name '{table['name']}' must match the file name '{path.stem}'")
    module, _, cls = table["adapter"].partition(":")
    if not module or not cls:
        raise BenchError(f"{path}: adapter must be 'module:Class', got '{table['adapter']}'")
    return ModelCard(**table, path=path)


def _check_tables(path: Path, table: dict) -> None:
    """params, presets (and each preset) and search_space must be tables, so parents and children merge."""
    presets = table.get("presets", {})
    named = {"params": table.get("params", {}), "search_space": table.get("search_space", {}), "presets": presets}
    if isinstance(presets, dict):
        named |= {f"presets.{name}": preset for name, preset in presets.items()}
    for key, value in named.items():
        if not isinstance(value, dict):
            raise BenchError(f"{path}: '{key}' must be a table, e.g. [{key}]")


def _read_parent(path: Path, name: object, chain: tuple[str, ...], known: dict[str, Path]) -> ModelCard:
    """The card ``name`` that ``chain`` (ending with ``path``'s card) extends."""
    if not isinstance(name, str) or name not in known:
        raise BenchError(f"{path}: " + unknown("parent model card", str(name), sorted(known), "fix 'extends'"))
    if name in chain:
        cycle = " -> ".join((*chain, name))
        raise BenchError(f"{path}: model cards extend each other in a cycle ({cycle}); remove one 'extends'")
    return _read_card(known[name], chain, known)


def _inherit(parent: ModelCard, table: dict) -> dict:
    """The child's table over the parent's: strings replace, tables merge key by key; baseline stays its own."""
    child_presets = table.get("presets", {})
    return {
        "adapter": parent.adapter,
        "description": parent.description,
        "citation": parent.citation,
        "counts": parent.counts,
        "environment": parent.environment,
        **table,
        "params": {**parent.params, **table.get("params", {})},
        "presets": {
            name: {**parent.presets.get(name, {}), **child_presets.get(name, {})}
            for name in parent.presets | child_presets
        },
        "search_space": {**parent.search_space, **table.get("search_space", {})},
        "unset": list(dict.fromkeys([*parent.unset, *table.get("unset", [])])),
    }


def _unset(path: Path, table: dict, entry: str) -> None:
    """Drop ``entry`` from the merged ``table``; ``params.<name>`` also leaves the adapter's default out
    (``resolve_params`` checks that the adapter has the parameter)."""
    *where, key = entry.split(".")
    if where == ["params"]:
        table.get("params", {}).pop(key, None)
        return
    if where not in (["search_space"], ["presets"]) and not (len(where) == 2 and where[0] == "presets"):
        raise BenchError(f"{path}: cannot unset '{entry}'; name params.<name>, search_space.<name>, "
                         "presets.<preset> or presets.<preset>.<name>")
    container = table.get(where[0], {})
    container = container.get(where[1], {}) if len(where) == 2 else container
    if key not in container:
        known = [".".join([*where, name]) for name in container]
        raise BenchError(f"{path}: " + unknown("entry to unset", entry, known, "fix 'unset'"))
    del container[key]


def all_cards(directory: Path | None = None) -> dict[str, ModelCard]:
    """Every known card by name (or only those in ``directory``)."""
    everywhere = card_files()
    files = card_files([directory]) if directory else everywhere
    known = {**everywhere, **files}
    return {name: _read_card(path, (), known) for name, path in files.items()}


def family(name: str, cards: dict[str, ModelCard]) -> str:
    """The first ``family`` named along ``name``'s ``extends`` chain, else the card at its root (itself when
    it extends none, or when it is not a known card, e.g. an external model). A card that extends another
    only to reuse its adapter, but is a model of its own (``latent_additive`` of ``cpa``), names its family."""
    while name in cards and not cards[name].family and cards[name].extends:
        name = cards[name].extends
    if name not in cards:
        return name
    return cards[name].family or name


def find_card(name: str) -> ModelCard:
    cards = all_cards()
    if name not in cards:
        raise BenchError(unknown("model", name, cards, "see `bench list models`"))
    return cards[name]


def adapter_class(card: ModelCard) -> type:
    """The card's adapter class; a module beside the card (in a card folder) is found too, after installed ones.
    A module that cannot be imported (missing, a syntax error, raising) is an error naming the card's file."""
    module_name, _, class_name = card.adapter.partition(":")
    if card.path is not None and str(card.path.parent) not in sys.path:
        sys.path.append(str(card.path.parent))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        last = traceback.format_exception_only(exc)[-1].strip()
        raise BenchError(f"{card.path or card.name}: cannot import adapter module '{module_name}' ({last})") from exc
    if not hasattr(module, class_name):
        raise BenchError(f"{card.path or card.name}: module '{module_name}' has no class '{class_name}'")
    return getattr(module, class_name)


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with a TOML value (``3``, ``0.1``, ``true``, ``"x"``); a bare word is a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BenchError(f"--param '{text}' must look like key=value, e.g. --param ridge=0.5")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def check_preset(card: ModelCard, preset: str | None) -> str:
    """``preset`` (None: the default) if the card has it; a did-you-mean error otherwise."""
    preset = preset or DEFAULT_PRESET
    if preset not in card.preset_names:
        raise BenchError(unknown(f"preset of model '{card.name}'", preset, card.preset_names))
    return preset


def adapter_defaults(card: ModelCard) -> dict:
    """The adapter's parameters that have a default, with it (imports the adapter)."""
    parameters = inspect.signature(adapter_class(card)).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def resolve_params(card: ModelCard, preset: str | None = None, overrides: list[str] | tuple = ()) -> dict:
    """A run's complete parameters: the adapter's defaults (less the card's ``unset`` ones), the card's
    params, the preset's values, then ``--param`` overrides."""
    defaults = adapter_defaults(card)
    dropped = {entry.removeprefix("params.") for entry in card.unset if entry.startswith("params.")}
    if dropped - set(defaults):
        name = sorted(dropped - set(defaults))[0]
        raise BenchError(f"model '{card.name}': " + unknown("parameter to unset", name, defaults, "fix 'unset'"))
    params = {name: value for name, value in defaults.items() if name not in dropped}
    params.update(card.params)
    if check_preset(card, preset) != DEFAULT_PRESET:
        params.update(card.presets[preset])
    for text in overrides:
        key, value = parse_override(text)
        params[key] = value
    return params


def requirements_file(card: ModelCard) -> Path | None:
    """The pinned requirements file of a card with its own environment (beside the card, else in the
    catalog's ``environments/``); None for a card that runs in bench's environment."""
    if not card.environment:
        return None
    places = [card.path.parent] if card.path is not None else []
    for folder in [*places, paths.requirements_dir()]:
        if (folder / card.environment).is_file():
            return folder / card.environment
    raise BenchError(f"model '{card.name}': its environment file '{card.environment}' is neither beside "
                     f"{card.path or 'the card'} nor in {paths.requirements_dir()}; fix 'environment'")


def card_hash(card: ModelCard) -> str:
    """sha256 of what the card runs: its adapter and the adapter's defaults, every preset's complete
    parameters, the search space, ``counts`` and its environment's requirements (not its prose or comments)."""
    requirements = requirements_file(card)
    content = {"adapter": card.adapter, "counts": card.counts, "defaults": adapter_defaults(card),
               "presets": {name: resolve_params(card, name) for name in card.preset_names},
               "search_space": card.search_space}
    if requirements is not None:
        content["environment"] = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def build(card: ModelCard, params: dict):
    """Construct the adapter; unknown parameters are an error that names the allowed ones."""
    params = dict(params)
    cls = adapter_class(card)
    signature = inspect.signature(cls)
    allowed = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    extra = sorted(set(params) - set(allowed))
    if extra:
        names = ", ".join(allowed) if allowed else "none"
        raise BenchError(f"model '{card.name}' has no parameter '{extra[0]}'; allowed: {names}")
    for name, value in params.items():
        default = signature.parameters[name].default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            params[name] = float(value)
        elif default is not inspect.Parameter.empty and default is not None and type(value) is not type(default):
            raise BenchError(
                f"model '{card.name}': parameter '{name}' must be {type(default).__name__}, got {value!r}"
            )
    try:
        model = cls(**params)
    except (TypeError, ValueError) as exc:
        raise BenchError(f"model '{card.name}': invalid parameters ({exc})") from None
    requirements = requirements_file(card)
    if requirements is not None:
        model.requirements = requirements  # kit.environment_adapter.EnvironmentAdapter runs the model there
    return model
