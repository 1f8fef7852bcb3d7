"""Sampling through Lightning's predict loop: several processes, one file, resumable."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import sample as sample_cli
from difflm import predict

ROOT = Path(__file__).resolve().parent.parent
SMALL = ("sample.batch_size=4", "sample.save_latents=true", "trainer.enable_progress_bar=false")


def run_script(script, *args):
    """A script of the repository run as a user runs it, in its own process(es); it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def sample_in_subprocess(run, out, devices):
    done = run_script("sample.py", f"run={run.root}", "n=10", f"out={out}", "seed=3", *SMALL, "trainer.accelerator=cpu",
                      f"trainer.devices={devices}", f"trainer.strategy={'ddp' if devices > 1 else 'auto'}")
    assert f"{devices} processes)" in done.stdout
    return pd.read_csv(out), torch.load(predict.latents_path(Path(out)))


def test_two_processes_write_one_file_with_the_rows_and_latents_of_one(trained, tmp_path):
    run, _, _ = trained
    one_rows, one_latents = sample_in_subprocess(run, tmp_path / "one.csv", 1)
    two_rows, two_latents = sample_in_subprocess(run, tmp_path / "two.csv", 2)
    assert len(two_rows) == 10 and two_latents.shape[0] == 10
    # chunk k is seeded by (seed, k), whichever process makes it; one process uses 2 threads, each of two uses 1
    assert torch.allclose(one_latents, two_latents, atol=1e-5)
    pd.testing.assert_frame_equal(one_rows, two_rows)
    assert not predict.parts_dir(tmp_path / "two.csv").exists()


def test_an_interrupted_run_keeps_its_finished_chunks_and_resume_completes_it(trained, tmp_path, monkeypatch,
                                                                             capsys):
    run, _, _ = trained
    out = tmp_path / "rows.jsonl"
    args = [f"run={run.root}", "n=10", f"out={out}", *SMALL]
    sample_cli.main([*args, "seed=5"])
    expected = out.read_text()
    out.unlink()

    calls, make_chunk = [], predict.sample_chunk

    def crash_on_the_third_chunk(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return make_chunk(*a, **kw)

    monkeypatch.setattr(predict, "sample_chunk", crash_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="power cut"):
        sample_cli.main([*args, "seed=5"])
    assert not out.exists()  # nothing half-written
    assert predict.finished_chunks(predict.parts_dir(out)) == {0, 1}

    with pytest.raises(SystemExit) as exit_info:  # other settings cannot continue these chunks
        sample_cli.main([*args, "seed=6", "resume=true"])
    assert exit_info.value.code == 2 and "sampled with seed=5, not 6" in capsys.readouterr().err

    calls.clear()
    sample_cli.main([*args, "seed=5", "resume=true"])
    assert len(calls) == 1  # only the missing chunk (10 rows in chunks of 4, 4, 2)
    assert out.read_text() == expected and not predict.parts_dir(out).exists()
    assert len(torch.load(predict.latents_path(out))) == 10


def test_stage_all_trains_and_samples_in_two_ddp_processes(tmp_path):
    """trainer.devices=2 trainer.strategy=ddp on the CPU: every stage trains in two processes (a trainable
    parameter without a gradient, e.g. a BERT pooler that mean pooling does not read, would stop ddp), and the
    first process writes the samples while the second returns."""
    run, out = tmp_path / "run", tmp_path / "rows.csv"
    done = run_script("train.py", "stage=all", f"run={run}", "model=tiny", "logger=none", "data.max_rows=120",
                      "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.devices=2",
                      "trainer.strategy=ddp", "vae.max_steps=6", "prior.max_steps=20", "decoder.max_steps=8",
                      "decoder.max_minutes=5", "sample.n=10", "sample.batch_size=4", f"sample.out={out}")
    assert "Starting with 2 processes" in done.stderr and "wrote 10 rows" in done.stdout
    assert len(pd.read_csv(out)) == 10 and not predict.parts_dir(out).exists()
    for stage in ("vae", "prior", "decoder"):
        assert (run / stage / "best.ckpt").is_file()
