"""bench/fidelity.py's comparison with a baseline, seed by seed."""

import pytest

from bench.fidelity import baseline_table, markdown_paired, paired_differences
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


@pytest.mark.parametrize("variant, command", [("sdv_tvae", "--models tvae first"),
                                              ("sdv_tvae-refit", "--models tvae --refit first")])
def test_a_missing_baseline_table_says_which_command_writes_it(tmp_path, variant, command):
    with pytest.raises(SystemExit, match=f"table-0-100rows.parquet is missing: .*--rows 100 {command}"):
        baseline_table(schema=None, run=RunDir(tmp_path), variant=variant, seed=0, rows=100)
