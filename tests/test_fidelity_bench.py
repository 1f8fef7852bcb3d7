"""bench/fidelity.py: the comparison with a baseline seed by seed, the reuse of an earlier result's tables (only
with the settings they were sampled with), and a SIGTERM that stops the stage it trains."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.fidelity import (baseline_table, column_summary, fingerprint, markdown_columns, markdown_paired,
                            paired_differences, previous_tables, sample_table, sampling_options, summarise,
                            table_folder)
from difflm.config import compose, plain
from difflm.run_dir import RunDir


def table(mle, shape, trend):
    return {"mle_auc": mle, "shape_error": shape, "trend_error_all_pairs": trend}


def test_paired_differences_count_the_seeds_where_each_metric_is_better():
    ours = [table(0.85, 3.0, 7.0), table(0.86, 4.0, 6.0), table(0.84, 3.0, 9.0)]
    theirs = [table(0.84, 12.0, 6.0), table(0.87, 12.0, 6.0), table(0.83, 12.0, 14.0)]
    paired = paired_differences(ours, theirs)
    assert paired["mle_auc"]["values"] == pytest.approx([0.01, -0.01, 0.01])
    assert paired["mle_auc"]["ahead"] == 2  # a higher AUC is better
    assert paired["shape_error"]["mean"] == pytest.approx(-26 / 3) and paired["shape_error"]["ahead"] == 3
    assert paired["trend_error_all_pairs"]["ahead"] == 1  # a lower error is better; a tie is not ahead
    assert paired["mle_auc"]["sem"] == pytest.approx(paired["mle_auc"]["std"] / 3 ** 0.5)


def test_paired_differences_pair_only_the_seeds_both_have():
    paired = paired_differences([table(0.9, 1.0, 1.0)] * 3, [table(0.8, 2.0, 2.0)])
    assert paired["mle_auc"]["values"] == pytest.approx([0.1]) and paired["mle_auc"]["std"] == 0.0


def test_markdown_paired_reads_as_one_line_per_baseline():
    paired = {"SDV tvae": paired_differences([table(0.85, 3.0, 7.0)] * 2, [table(0.84, 12.0, 14.0)] * 2)}
    assert markdown_paired(paired) == [
        "DiffLM - SDV tvae, paired by seed (mean ± standard error): MLE AUC +0.010 ± 0.000 (ahead on 2 of 2); "
        "shape err % -9.00 ± 0.00 (ahead on 2 of 2); trend err % (all pairs) -7.00 ± 0.00 (ahead on 2 of 2)."]


def with_columns(scores, race_share, race_error, age_error):
    return {**scores, "columns": {"race": {"shape_error": race_error, "mode_share": race_share},
                                  "age": {"shape_error": age_error}}}


def test_per_column_scores_are_averaged_apart_from_the_metrics_and_tabled():
    ours = [with_columns(table(0.85, 3.0, 7.0), 0.88, 4.0, 1.0), with_columns(table(0.86, 4.0, 6.0), 0.90, 6.0, 2.0),
            table(0.84, 3.0, 9.0)]  # from a result written before per-column scores: left out of their means
    assert set(summarise(ours)) == {"mle_auc", "shape_error", "trend_error_all_pairs"}
    assert column_summary(ours) == {"race": {"shape_error": 5.0, "mode_share": pytest.approx(0.89)},
                                    "age": {"shape_error": 1.5}}
    columns = {"real_modes": {"race": ["White", 0.85]},
               "rows": {"DiffLM": column_summary(ours), "old": column_summary([table(0.8, 5.0, 9.0)]),
                        "SDV tvae": column_summary([with_columns(table(0.84, 12.0, 14.0), 0.80, 9.0, 3.0)])}}
    assert markdown_columns(columns) == [
        "Shape error % by column (mean over tables):", "", "| column | DiffLM | SDV tvae |", "|---|---|---|",
        "| race | 5.00 | 9.00 |", "| age | 1.50 | 3.00 |", "",
        "Share of each categorical column's most common real value (mean over tables):", "",
        "| column | real | DiffLM | SDV tvae |", "|---|---|---|---|", "| race = White | 85.0% | 89.0% | 80.0% |"]
    assert markdown_columns({"real_modes": {}, "rows": {"old": {}}}) == []


def test_a_missing_baseline_table_says_which_command_writes_it(tmp_path):
    with pytest.raises(SystemExit, match="table-0-100rows.parquet is missing: .*--rows 100 --models tvae first"):
        baseline_table(schema=None, run=RunDir(tmp_path), variant="sdv_tvae", seed=0, rows=100)


def save_stage(run, stage, state):
    run.stage(stage).mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 3}, run.stage(stage) / "best.ckpt")


def test_fingerprint_tells_the_same_weights_from_different_ones(tmp_path):
    weights = {"projector.weight": torch.arange(6.0).reshape(2, 3), "step": torch.tensor(7)}
    first, same, other = RunDir(tmp_path / "a"), RunDir(tmp_path / "b"), RunDir(tmp_path / "c")
    save_stage(first, "prior", weights)
    save_stage(same, "prior", {k: v.clone() for k, v in weights.items()})
    save_stage(other, "prior", {**weights, "projector.weight": weights["projector.weight"].to(torch.bfloat16)})
    assert fingerprint(first, ["prior"]) == fingerprint(same, ["prior"])
    assert fingerprint(first, ["prior"]) != fingerprint(other, ["prior"])  # the same values in another dtype


def test_previous_tables_are_reused_only_for_the_same_models_and_sampling(tmp_path):
    result, cfg = tmp_path / "fidelity-old.json", compose([])
    options = sampling_options(cfg)
    result.write_text(json.dumps({"per_table": {"difflm": [{"mle_auc": 0.88}]}, "real_per_table": [{"mle_auc": 0.92}],
                                  "fingerprint": {"vae": "ab12"}, "rows_per_table": 500, "config": plain(cfg)}))
    assert previous_tables(str(result), {"vae": "ab12"}, 500, options) == (
        {"difflm": [{"mle_auc": 0.88}]}, [{"mle_auc": 0.92}])
    assert previous_tables(None, {"vae": "ab12"}, 500, options) == ({}, [])
    with pytest.raises(SystemExit, match="scored other models"):
        previous_tables(str(result), {"vae": "cd34"}, 500, options)
    with pytest.raises(SystemExit, match="has tables of 500 rows, not 1000: give --rows 500"):
        previous_tables(str(result), {"vae": "ab12"}, 1000, options)
    with pytest.raises(SystemExit, match="sampled with .*'temperature': 1.0.*, not .*'temperature': 1.2.*: give the "
                                         "same sample.. overrides"):
        previous_tables(str(result), {"vae": "ab12"}, 500, {**options, "temperature": 1.2})
    before = plain(cfg)
    del before["sample"]["column_temperature"]  # a result from before the setting existed: sampled without it
    result.write_text(json.dumps({"per_table": {"difflm": []}, "real_per_table": [], "fingerprint": {"vae": "ab12"},
                                  "rows_per_table": 500, "config": before}))
    assert previous_tables(str(result), {"vae": "ab12"}, 500, options) == ({"difflm": []}, [])
    result.write_text(json.dumps({"rows": {}}))
    with pytest.raises(SystemExit, match="no per-table scores"):
        previous_tables(str(result), {"vae": "ab12"}, 500, options)


def test_tables_sampled_otherwise_live_apart_and_are_never_read_back_as_another_settings(tmp_path):
    assert table_folder("difflm", []) == "difflm"
    assert table_folder("no_prior", ["sample.temperature=1.1", "sample.batch_size=8"]) == (
        "no_prior@sample.batch_size=8@sample.temperature=1.1")
    run, cfg, hotter = RunDir(tmp_path), compose([]), compose(["sample.temperature=1.2"])
    table, stats = run.fidelity_table("difflm", 0, 2)
    table.parent.mkdir(parents=True)
    pd.DataFrame({"age": [30, 40]}).to_parquet(table)
    stats.write_text(json.dumps({"seconds": 1.0}))  # written before tables recorded their settings: read as today's
    frame, read = sample_table(cfg, run, None, None, None, "difflm", 0, 2)  # no models: nothing is sampled
    assert frame["age"].tolist() == [30, 40] and read["options"] == sampling_options(cfg)
    before = {key: value for key, value in sampling_options(cfg).items() if key != "column_temperature"}
    stats.write_text(json.dumps({"seconds": 1.0, "options": before}))  # before column temperatures: sampled without
    assert sample_table(cfg, run, None, None, None, "difflm", 0, 2)[1]["options"] == sampling_options(cfg)
    with pytest.raises(SystemExit, match=r"was sampled with .*'column_temperature': \{\}.*, not .*'income': 0.8"):
        sample_table(compose(["sample.column_temperature.income=0.8"]), run, None, None, None, "difflm", 0, 2)
    stats.write_text(json.dumps({"seconds": 1.0, "options": sampling_options(cfg)}))
    with pytest.raises(SystemExit, match="table-0-2rows.parquet was sampled with .*'temperature': 1.0.*, not .*"
                                         "'temperature': 1.2"):
        sample_table(hotter, run, None, None, None, "difflm", 0, 2)


def test_a_sigterm_to_the_benchmark_stops_the_stage_it_waits_on(tmp_path):
    pid_file = tmp_path / "child.pid"
    stage = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    benchmark = subprocess.Popen([sys.executable, "-c", "import sys; from bench.fidelity import run_child; "
                                  f"run_child([sys.executable, '-c', {stage!r}])"],
                                 cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    benchmark.send_signal(signal.SIGTERM)
    assert benchmark.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # the stage is gone with it (and reaped)
        os.kill(int(pid_file.read_text()), 0)
