"""Evaluate a synthetic table against the run's real splits: every metric, its time, the versions and the
seed, written as report.json with PNG plots beside the samples."""

import json
import platform
import time
from importlib.metadata import version
from pathlib import Path

from difflm import __version__
from difflm.metrics.coverage import alpha_precision_beta_recall
from difflm.metrics.density import density_errors
from difflm.metrics.detection import c2st_auc
from difflm.metrics.plots import plot_columns, plot_pair_trends
from difflm.metrics.privacy import dcr_share, exact_copy_rate
from difflm.metrics.utility import TargetModel, label_agreement, mle
from difflm.run_dir import atomic_write_text
from difflm.text_evaluation import evaluate_texts, format_text_report, write_text_report


def privacy_splits(frames, seed):
    """Equal-size real sets for DCR: the training rows and the holdout rows (the run's holdout split, rows of
    the training table never trained on; without one, half of the test split), and real rows neither saw as a
    'synthetic' reference (its DCR share is the ideal's noise level): the test split (or its other half)."""
    train, test, holdout = frames["train"], frames["test"], frames.get("holdout")
    if holdout is None or holdout.empty:
        holdout = test.sample(frac=0.5, random_state=seed)
        test = test.drop(holdout.index)
    size = min(len(holdout), len(train))
    sample = lambda frame: frame.sample(n=min(size, len(frame)), random_state=seed)  # noqa: E731
    return sample(train), sample(holdout), sample(test)


def evaluate(schema, synthetic, frames, target=None, seed=0, grid=False, sampling=None, references=True):
    """All metrics of `synthetic` against the run's real train/test splits, with the seconds each took.
    `references`: also score real rows (the training table's MLE, a real holdout's DCR, copies and coverage)
    as the yardstick; the training-time callback leaves them out. Code and tool records: evaluate_texts."""
    if schema.record_type != "table":
        return evaluate_texts(schema, synthetic, frames, seed, sampling, references)
    train, test = frames["train"], frames["test"]
    seconds, report = {}, {"rows": len(synthetic), "seed": seed}

    def timed(name, compute):
        started = time.perf_counter()
        value = compute()
        seconds[name] = round(time.perf_counter() - started, 3)
        return value

    if sampling is not None:
        report["validity"] = {k: sampling[k] for k in ("validity", "generated", "failures", "constrained", "decoding")
                             if k in sampling}
    if target is not None:
        def fit_real_and_agree():  # one fit on the real training table serves label agreement and the reference
            model = TargetModel(schema, train, target, grid, seed)
            return model, label_agreement(model, synthetic)

        real_model, agreement = timed("label_agreement", fit_real_and_agree)
        report["mle"] = {"synthetic": timed("mle", lambda: mle(schema, synthetic, test, target, grid, seed)),
                         "target": target, "grid": grid, "label_agreement": agreement}
        if references:  # the real test rows' label agreement: the real table's MLE
            report["mle"]["real_train"] = timed("mle_real", lambda: real_model.score(test))
    pair_scores = []
    report["density"] = timed("density", lambda: density_errors(schema, train, synthetic, pair_scores))
    train_part, holdout, real_holdout = privacy_splits(frames, seed)
    report["privacy"] = {
        "dcr_share": timed("dcr", lambda: dcr_share(schema, synthetic, train_part, holdout)),
        "exact_copy_rate": timed("exact_copies", lambda: exact_copy_rate(synthetic, train)),
    }
    report["detection"] = {"c2st_auc": timed("c2st", lambda: c2st_auc(schema, train, synthetic, seed))}
    precision, recall = timed("coverage", lambda: alpha_precision_beta_recall(schema, train, synthetic, seed))
    report["coverage"] = {"alpha_precision": precision, "beta_recall": recall}
    if references:
        report["privacy"]["real_holdout_reference"] = {
            "dcr_share": dcr_share(schema, real_holdout, train_part, holdout),
            "exact_copy_rate": exact_copy_rate(real_holdout, train)}
        real_precision, real_recall = alpha_precision_beta_recall(schema, train_part, real_holdout, seed)
        report["coverage"]["real_holdout_reference"] = {"alpha_precision": real_precision,
                                                        "beta_recall": real_recall}
    report["seconds"] = seconds
    report["versions"] = {"difflm": __version__, "python": platform.python_version(),
                          **{p: version(p) for p in ("torch", "transformers", "sdmetrics", "xgboost-cpu", "scikit-learn")}}
    report["_pair_scores"] = pair_scores[0]
    return report


def write_report(schema, report, synthetic, real_train, folder):
    """report.json, columns.png and pair_trends.png in `folder`; returns their paths."""
    if schema.record_type != "table":
        return write_text_report(schema, report, synthetic, real_train, folder)
    folder = Path(folder)
    pair_scores = report.pop("_pair_scores")
    paths = {"report": folder / "report.json", "columns": folder / "columns.png",
             "pair_trends": folder / "pair_trends.png"}
    plot_columns(schema, real_train, synthetic, paths["columns"])
    plot_pair_trends(schema, pair_scores, paths["pair_trends"])
    atomic_write_text(paths["report"], json.dumps(report, indent=2))
    return paths


def format_report(report):
    """A short table for the terminal."""
    if "record_type" in report:
        return format_text_report(report)
    lines = []
    if "validity" in report:
        lines.append(f"validity              {report['validity']['validity']:.1%}")
    if "mle" in report:
        m = report["mle"]
        lines.append(f"MLE {m['synthetic']['metric']} ({m['target']})  {m['synthetic']['score']:.4f}  "
                     f"(real train: {m['real_train']['score']:.4f})")
        if m["label_agreement"]["score"] is not None:
            lines.append(f"label agreement       {m['label_agreement']['score']:.4f}  (real model on these rows' "
                         f"labels; on real test rows: {m['real_train']['score']:.4f})")
    d, p = report["density"], report["privacy"]
    lines.append(f"shape error           {d['shape_error']:.2f}%")
    lines.append(f"trend error           {d['trend_error_all_pairs']:.2f}% all pairs, {d['trend_error']:.2f}% sdmetrics")
    lines.append(f"DCR share             {p['dcr_share']:.1%}  (real holdout: {p['real_holdout_reference']['dcr_share']:.1%})")
    lines.append(f"exact copies          {p['exact_copy_rate']:.3%}  "
                 f"(real holdout: {p['real_holdout_reference']['exact_copy_rate']:.3%})")
    c = report["coverage"]
    lines.append(f"alpha-precision       {c['alpha_precision']:.3f}  "
                 f"(real holdout: {c['real_holdout_reference']['alpha_precision']:.3f})")
    lines.append(f"beta-recall           {c['beta_recall']:.3f}  "
                 f"(real holdout: {c['real_holdout_reference']['beta_recall']:.3f})")
    lines.append(f"C2ST AUC              {report['detection']['c2st_auc']:.3f}  (0.5 = indistinguishable)")
    return "\n".join(lines)
