"""The closing table of ``bench run`` and ``bench score``, laid out to the console's width (80 columns in a log
file) without cutting a name or a number: a line per model (rank, name with preset, seeds), a line per test
subgroup with mean ± sd over seeds of each shown metric, and under the headline metric the difference to the
reference baseline with its CI. Metric columns that do not fit beside each other go into further blocks of the
same layout, so a label or an interval is never shortened."""

from __future__ import annotations

import textwrap

from rich.text import Text

INDENT = 3  # the subgroup lines sit under the model's name, after its rank
GAP = 2


NO_BASELINE = "no baseline was run: add one (e.g. --model additive,...) to see each model's difference to it"


def closing_table(results, shown: list[str], baselines: set[str] = frozenset(), width: int = 80,
                  no_baseline: str = NO_BASELINE) -> list[Text]:
    """The lines of the table for ``results`` (``RunResult``), ranked by ``all/<shown[0]>``, each model compared
    with the best baseline among ``baselines`` run on the most seeds (as the leaderboard chooses it); without
    one, the caption is ``no_baseline``, which says how to get one."""
    from bench.evaluation.metric_catalog import METRICS
    from bench.evaluation.stats import over_seeds
    from bench.reporting.leaderboard import best_baseline

    by_model: dict[str, list] = {}
    for result in results:
        by_model.setdefault(_label(result), []).append(result)
    headline = shown[0]
    means = {label: over_seeds([r.metrics.get(f"all/{headline}", float("nan")) for r in runs if r.ok]).mean
             for label, runs in by_model.items()}
    seeds = {label: sum(r.ok for r in runs) for label, runs in by_model.items()}
    candidates = {label: mean for label, mean in means.items() if by_model[label][0].model in baselines}
    reference = best_baseline(candidates, headline, seeds)

    def rank_key(label: str) -> float:
        return -METRICS[headline].sign * means[label] if means[label] == means[label] else float("inf")

    ranked = sorted(by_model, key=rank_key)
    cells = {label: _cells(by_model[label], shown) for label in ranked}
    subgroup_width = max([len("subgroup"), *(len(s) for label in ranked for s in cells[label])])
    widths = {m: max([len(m), *(len(row[m]) for label in ranked for row in cells[label].values())]) for m in shown}
    lines = [Text(f"test metrics (mean ± sd over seeds), ranked by all/{headline}", style="bold")]
    for block in _blocks(shown, widths, INDENT + subgroup_width, width):
        lines.append(Text(" " * INDENT + _row("subgroup", subgroup_width, block, widths,
                                               {m: m for m in block}), style="bold"))
        for rank, label in enumerate(ranked, start=1):
            lines += _model_lines(rank, label, by_model[label], reference, width)
            for subgroup, row in cells[label].items():
                lines.append(Text(" " * INDENT + _row(subgroup, subgroup_width, block, widths, row)))
                if reference and label != reference and headline in block:
                    difference = _difference(by_model[label], by_model[reference], subgroup, headline)
                    if difference:
                        lines.append(Text(" " * (INDENT + subgroup_width + GAP) + f"Δ {difference}"))
    caption = (f"Δ: {headline} minus that of {reference} (of the baselines run on the most seeds, the best), mean "
               "over test perturbations paired by seed, with its paired bootstrap 95% CI; * where the CI excludes 0"
               if reference else no_baseline)
    return lines + [Text(line, style="dim") for line in textwrap.wrap(caption, width)]


def _label(result) -> str:
    """``model [preset]`` of a run, as its progress lines and the leaderboard name it."""
    from bench.core.registry import DEFAULT_PRESET, preset_label

    return preset_label(result.model, result.preset or DEFAULT_PRESET)


def _cells(runs: list, shown: list[str]) -> dict[str, dict[str, str]]:
    """Per tested subgroup (``all`` first, then by name), each shown metric's ``mean ± sd`` over the runs that
    finished."""
    from bench.evaluation import metric_catalog
    from bench.evaluation.stats import over_seeds

    done = [r for r in runs if r.ok]
    tested = {key.split("/")[0] for r in done for key in r.metrics if metric_catalog.is_test_metric(key)}
    return {subgroup: {m: str(over_seeds([r.metrics.get(f"{subgroup}/{m}", float("nan")) for r in done]))
                       for m in shown}
            for subgroup in sorted(tested, key=lambda s: (s != "all", s))}


def _blocks(shown: list[str], widths: dict[str, int], start: int, width: int) -> list[list[str]]:
    """The shown metrics in order, as few consecutive groups as fit ``width`` beside the subgroup column (one
    metric per group at least, whatever its width)."""
    blocks: list[list[str]] = [[]]
    used = start
    for metric in shown:
        if blocks[-1] and used + GAP + widths[metric] > width:
            blocks.append([])
            used = start
        blocks[-1].append(metric)
        used += GAP + widths[metric]
    return blocks


def _row(first: str, first_width: int, block: list[str], widths: dict[str, int], values: dict[str, str]) -> str:
    return (first.ljust(first_width) + "".join(" " * GAP + values[m].ljust(widths[m]) for m in block)).rstrip()


def _model_lines(rank: int, label: str, runs: list, reference: str | None, width: int) -> list[Text]:
    """``1  model [preset] (reference) · 5 seeds``, then a line per failed run with its error, wrapped."""
    done = sum(r.ok for r in runs)
    failed = [r for r in runs if not r.ok]
    heading = (f"{str(rank).ljust(INDENT - 1)} {label}" + (" (reference)" if label == reference else "")
               + f" · {done} seed{'s' if done != 1 else ''}" + (f" ({len(failed)} failed)" if failed else ""))
    lines = [Text(line, style="bold") for line in textwrap.wrap(heading, width, subsequent_indent=" " * INDENT)]
    for run in failed:
        text = f"{run.status} seed {run.seed}: {run.error or ''}".rstrip(": ")
        wrapped = textwrap.wrap(text, width, initial_indent=" " * INDENT, subsequent_indent=" " * (INDENT + 2),
                                break_long_words=False, break_on_hyphens=False)
        lines += [Text(line, style="red") for line in wrapped]
    return lines


def _difference(runs: list, reference: list, subgroup: str, metric: str) -> str:
    """``+0.012 [-0.004, +0.030]*`` of a model's runs against the reference's, paired by seed."""
    from bench.reporting.leaderboard import paired_over_seeds

    theirs = {r.seed: r.per_perturbation for r in reference if r.ok}
    diff = paired_over_seeds([(r.per_perturbation, theirs[r.seed]) for r in runs if r.ok and r.seed in theirs],
                             subgroup, metric)
    if not diff.n:
        return ""
    if diff.n < 2:
        return f"{diff.mean:+.3f} (one perturbation: no CI)"
    return f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]" + ("*" if diff.significant else "")
