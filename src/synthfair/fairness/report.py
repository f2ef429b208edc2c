"""The study report: self-contained HTML with each metric plotted against the bias, per group.

x axis: the study's grid knob (with several knobs: the cell number); one line per group; biased subsets solid,
matched baselines dashed; bars are 95% bootstrap intervals (first seed).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from synthfair import reportkit as kit  # noqa: E402

GROUP_METRICS = ("selection_rate", "tpr", "fpr", "auroc", "accuracy", "f1", "underdiagnosis_rate")
AGGREGATES = (
    "worst_group_auroc",
    "auroc_gap",
    "equalized_odds_difference",
    "demographic_parity_difference",
    "worst_group_accuracy",
    "accuracy_gap",
)


def write_study_report(
    path: Path, spec, results: list[dict[str, Any]], fidelity: dict[str, Any] | None = None
) -> None:
    """``path`` (report.html) and each plot as ``plots/<metric>.png`` beside it; with ``fidelity`` (the
    study compared with the same study on the exact release) a section on it."""
    plots = path.parent / "plots"
    plots.mkdir(exist_ok=True)
    knob = next(iter(spec.grid)) if len(spec.grid) == 1 else None  # several knobs: x is the cell number
    x_label = knob or "cell (see the table at the end)"
    parts = [
        "<h1>SynthFair fairness study</h1>",
        f"<p>{len(results)} classifiers: cells of {html.escape(', '.join(spec.grid) or 'no grid')}, "
        f"{'biased subsets and their matched baselines' if spec.baseline else 'biased subsets'}, seeds "
        f"{list(spec.seeds)}; groups {' x '.join(spec.groups)}; the test split is balanced and scored "
        "against true labels. Every number is in <code>results.json</code>.</p>",
    ]
    groups = _group_frame(results, knob)
    if not groups.empty:
        parts.append("<h2>Per group, against the bias</h2>")
        for metric in [m for m in GROUP_METRICS if m in groups.columns]:
            parts.append(_plot(groups, metric, x_label, by="group", save=plots))
    aggregates = _aggregate_frame(results, knob)
    if not aggregates.empty:
        parts.append("<h2>Fairness gaps, against the bias</h2>")
        for metric in [m for m in AGGREGATES if m in aggregates["metric"].unique()]:
            frame = aggregates[aggregates["metric"] == metric].rename(columns={"value": metric})
            parts.append(_plot(frame, metric, x_label, by=None, save=plots))
    flips = _flip_frame(results, knob)
    if not flips.empty:
        attribute = html.escape(str(spec.counterfactual))
        intro = (
            f"On factual-counterfactual pairs differing only in {attribute}: the share whose decision "
            "flips, and the mean change of the score (counterfactual minus factual)."
        )
        parts += [
            "<h2>Counterfactual fairness</h2>",
            f"<p>{intro}</p>",
            _plot(flips, "flip_rate", x_label, by=None, save=plots),
            _plot(flips, "mean_change", x_label, by=None, save=plots),
        ]
    causal = _causal_frame(results, knob)
    if not causal.empty:
        parts += [
            "<h2>Causal decomposition of the disparity in predictions</h2>",
            "<p>TV = Ctf-DE − Ctf-IE − Ctf-SE (Plecko & Bareinboim): direct, indirect (through "
            "mediators) and spurious (through confounders) parts.</p>",
            kit.table(causal),
        ]
    rebalanced = _rebalance_frame(results, knob)
    if not rebalanced.empty:
        parts += [
            "<h2>Rebalancing the under-represented group (same budget)</h2>",
            "<p>none = the biased training split as drawn; reweight = loss weights; oversample = "
            "repeated members; generate = the causal model's counterfactual members of the group "
            "(MCRAGE idea); exact = the phantom's exact counterfactual members. Every method trains "
            "on the same number of samples per epoch, and generated members carry the group's label "
            "noise. Test split: per group, 95% bootstrap intervals.</p>",
            kit.table(rebalanced),
        ]
    if fidelity is not None:
        parts += _fidelity(fidelity)
    parts += ["<h2>All cells</h2>", kit.table(_overview(results))]
    kit.write_page(path, "SynthFair study", parts)


def _x(result: dict[str, Any], knob: str | None) -> Any:
    return result["cell"].get(knob) if knob else result["cell_index"]


def _group_frame(results, knob) -> pd.DataFrame:
    rows = []
    for r in results:
        if r["seed"] != results[0]["seed"]:
            continue
        for g in r["groups"]["by_group"]:
            rows.append({"x": _x(r, knob), "variant": r["variant"], **g})
    return pd.DataFrame(rows)


def _aggregate_frame(results, knob) -> pd.DataFrame:
    rows = []
    for r in results:
        if r["seed"] != results[0]["seed"]:
            continue
        for name, value in r["groups"]["aggregates"].items():
            v = value if isinstance(value, dict) else {"value": value}
            rows.append(
                {
                    "x": _x(r, knob),
                    "variant": r["variant"],
                    "metric": name,
                    "value": v.get("value"),
                    "value_lo": v.get("lo"),
                    "value_hi": v.get("hi"),
                }
            )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.rename(columns={"value_lo": "lo", "value_hi": "hi"})
    return frame


def _flip_frame(results, knob) -> pd.DataFrame:
    rows = []
    for r in results:
        overall = (r.get("counterfactual") or {}).get("overall")
        if overall and r["seed"] == results[0]["seed"]:
            row = {"x": _x(r, knob), "variant": r["variant"]}
            for stat in ("flip_rate", "mean_change"):
                row |= {
                    stat: overall.get(stat),
                    f"{stat}_lo": overall.get(f"{stat}_lo"),
                    f"{stat}_hi": overall.get(f"{stat}_hi"),
                }
            rows.append(row)
    return pd.DataFrame(rows)


def _causal_frame(results, knob) -> pd.DataFrame:
    rows = []
    for r in results:
        causal = r.get("causal") or {}
        for what in ("predictions", "training_labels"):
            block = causal.get(what) or {}
            if "tv" in block:
                parts = {k: _fmt(block.get(k)) for k in ("tv", "ctf_de", "ctf_ie", "ctf_se")}
                rows.append(
                    {"x": _x(r, knob), "variant": r["variant"], "seed": r["seed"], "of": what, **parts}
                )
    return pd.DataFrame(rows)


def _fidelity(fidelity: dict[str, Any]) -> list[str]:
    """Study fidelity: the same study on the model's release against the phantom's exact one."""
    summary = pd.DataFrame([{"metric": k, **v} for k, v in fidelity["summary"].items()])
    rows = []
    for r in fidelity["by_cell"]:
        for name, d in r["metrics"].items():
            interval = {
                k: (v if v == v else None) for k, v in (("lo", d["lo"]), ("hi", d["hi"]))
            }  # NaN: none
            difference = _fmt({"value": d["difference"], **interval})
            where = {
                "cell": json.dumps(r["cell"]),
                "variant": r["variant"],
                "seed": r["seed"],
                "metric": name,
            }
            rows.append({**where, "truth": d["truth"], "model": d["model"], "difference": difference})
    return [
        "<h2>Study fidelity: the model's counterfactuals against the exact ones</h2>",
        "<p>The same study on the phantom's exact counterfactuals (the truth) and on the model's, on the "
        "same samples. Difference = model − truth, with a 95% interval (conservative: the two runs' "
        "bootstrap intervals taken as independent). Differences near 0 mean a study on the model's release "
        "reaches the conclusions it would reach on the truth.</p>",
        kit.table(summary),
        kit.table(pd.DataFrame(rows)),
    ]


def _rebalance_frame(results, knob) -> pd.DataFrame:
    rows = []
    for r in results:
        if not r["variant"].startswith("rebalance:"):
            continue
        method = r["variant"].removeprefix("rebalance:")
        for g in r["groups"]["by_group"]:
            rows.append(
                {
                    "x": _x(r, knob),
                    "seed": r["seed"],
                    "method": method,
                    "group": g["group"],
                    "count": g.get("count"),
                    **{
                        m: _fmt({"value": g.get(m), "lo": g.get(f"{m}_lo"), "hi": g.get(f"{m}_hi")})
                        for m in ("accuracy", "f1", "auroc")
                    },
                }
            )
    return pd.DataFrame(rows)


def _overview(results) -> pd.DataFrame:
    rows = []
    for r in results:
        row = {
            "cell": r["cell_index"],
            **r["cell"],
            "variant": r["variant"],
            "seed": r["seed"],
            "threshold": r["threshold"],
        }
        row.update({k: _fmt(v) for k, v in r["groups"]["overall"].items()})
        for name in AGGREGATES:
            if name in r["groups"]["aggregates"]:
                row[name] = _fmt(r["groups"]["aggregates"][name])
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: Any) -> Any:
    if isinstance(value, dict):
        v, lo, hi = value.get("value"), value.get("lo"), value.get("hi")
        if v is None:
            return ""
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{v:.3f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return value


def _plot(frame: pd.DataFrame, metric: str, x_label: str, by: str | None, save: Path | None = None) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
    keys = sorted(frame[by].dropna().unique()) if by else [None]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, key in enumerate(keys):
        part = frame if key is None else frame[frame[by] == key]
        for variant, style in (("biased", "-"), ("baseline", "--")):
            line = part[part["variant"] == variant].sort_values("x")
            if line.empty or line[metric].isna().all():
                continue
            y = line[metric].astype(float)
            lo = line.get(f"{metric}_lo", line.get("lo"))
            hi = line.get(f"{metric}_hi", line.get("hi"))
            err = None
            if lo is not None and hi is not None:
                err = [
                    (y - lo.astype(float)).clip(lower=0).fillna(0),
                    (hi.astype(float) - y).clip(lower=0).fillna(0),
                ]
            label = f"{key} ({variant})" if key is not None else variant
            xs = line["x"].astype(float) if _numeric(line["x"]) else line["x"].astype(str)
            color, alpha = colors[i % len(colors)], 1.0 if variant == "biased" else 0.6
            ax.errorbar(xs, y, yerr=err, fmt=style + "o", color=color, capsize=3, label=label, alpha=alpha)
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    if save is not None:
        (save / f"{metric}.png").write_bytes(buffer.getvalue())
    plt.close(fig)
    return kit.image(buffer.getvalue(), metric)


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values)
