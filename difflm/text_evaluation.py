"""Evaluate synthetic code or tool records against the run's real ones: the record type's measures
(difflm.metrics.code / tools) for the synthetic sample and, as the ceiling, for as many real held-out records
(the test split, never trained on), with plots of their structural features."""

import json
import time
from pathlib import Path

from difflm.datamodules.schema import Column, Schema
from difflm.metrics.code import code_features, code_report
from difflm.metrics.plots import plot_columns
from difflm.metrics.tools import tool_features, tool_report
from difflm.run_dir import atomic_write_text

MEASURES = {"code": (code_report, code_features), "tool": (tool_report, tool_features)}
# the measures format_text_report prints, with their format, per record type
HEADLINES = {
    "code": [("parse_rate", "{:.1%}"), ("structure_error", "{:.2f}%"), ("exact_copy_rate", "{:.2%}"),
             ("near_copy_rate", "{:.2%}"), ("distinct_2", "{:.3f}"), ("pairwise_similarity", "{:.3f}")],
    "tool": [("json_validity", "{:.1%}"), ("schema_validity", "{:.1%}"), ("field_coverage", "{:.3f}"),
             ("parameter_count_error", "{:.2f}%"), ("parameter_type_error", "{:.2f}%"), ("name_novelty", "{:.1%}"),
             ("exact_copy_rate", "{:.2%}"), ("near_copy_rate", "{:.2%}"), ("description_distinct_2", "{:.3f}")],
}


def evaluate_texts(schema, synthetic, frames, seed=0, sampling=None, references=True):
    """The record type's measures of the synthetic texts against the training texts; with `references`, the same
    for as many real held-out texts."""
    measure, _ = MEASURES[schema.record_type]
    train = frames["train"]["text"].tolist()
    report = {"record_type": schema.record_type, "rows": len(synthetic), "seed": seed}
    if sampling is not None:
        report["validity"] = {k: sampling[k] for k in ("validity", "generated", "failures", "constrained", "decoding")
                              if k in sampling}
    started = time.perf_counter()
    report["measures"] = measure(synthetic["text"].tolist(), train)
    report["seconds"] = {"measures": round(time.perf_counter() - started, 3)}
    if references:
        test = frames["test"]
        real = test.sample(n=min(len(synthetic), len(test)), random_state=seed)["text"].tolist()
        report["real_holdout_reference"] = measure(real, train)
    return report


def feature_schema(features):
    """A table schema over numeric features (for plot_columns): integer columns over the features' range (at
    least one wide, so a constant feature still has a histogram)."""
    return Schema([Column(name, "integer", minimum=int(features[name].min()),
                          maximum=max(int(features[name].max()), int(features[name].min()) + 1))
                   for name in features.columns])


def write_text_report(schema, report, synthetic, real_train, folder):
    """report.json and features.png (the structural features, real vs synthetic) in `folder`."""
    folder = Path(folder)
    _, features = MEASURES[schema.record_type]
    paths = {"report": folder / "report.json"}
    real, fake = features(real_train["text"].tolist()), features(synthetic["text"].tolist())
    if len(real) and len(fake):
        paths["features"] = folder / "features.png"
        plot_columns(feature_schema(real), real, fake, paths["features"])
    atomic_write_text(paths["report"], json.dumps(report, indent=2))
    return paths


def format_text_report(report):
    """A short table for the terminal: the headline measures, synthetic and real held-out."""
    reference = report.get("real_holdout_reference", {})
    lines = [f"{'':24}{'synthetic':>12}{'real held-out':>16}"]
    if "validity" in report:
        lines.append(f"{'validity':24}{report['validity']['validity']:>12.1%}")
    for key, fmt in HEADLINES[report["record_type"]]:
        cells = [report["measures"].get(key), reference.get(key)]
        lines.append(f"{key:24}" + "".join(f"{'—' if v is None else fmt.format(v):>{w}}" for v, w in zip(cells, (12, 16))))
    return "\n".join(lines)
