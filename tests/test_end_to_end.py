"""All three stages and sampling with model=tiny on a small slice of Adult, on CPU."""

import json
import shutil

import pytest
import torch

import sample as sample_cli
from difflm.datamodules.records import load_run_data
from difflm.latents import cached_latents
from difflm.pipeline import train
from difflm.errors import UserError
from difflm.run_dir import RunDir
from difflm.sampling import SamplingError, load_generator, sample_records

from conftest import SLICE


def test_run_directory_describes_itself(trained):
    run, _, _ = trained
    for path in ("config.yaml", "schema.json", "latents.pt", "data/train.parquet", "data/test.parquet",
                 "vae/best.ckpt", "vae/last.ckpt", "prior/best.ckpt", "decoder/best.ckpt", "logs/vae/metrics.csv"):
        assert (run.root / path).is_file(), path
    header = (run.root / "logs/vae/metrics.csv").read_text().splitlines()[0]
    for metric in ("train/recon", "train/kl", "train/beta", "val/recon", "val/kl", "val/loss"):
        assert metric in header
    # the vae stage ends with its reconstruction accuracy on validation records, which every stage's
    # metrics.json keeps with the last value of everything else it logged
    assert "val/recon_accuracy" in header
    vae_metrics = json.loads((run.root / "vae/metrics.json").read_text())
    assert 0 <= vae_metrics["val/recon_accuracy"] <= 1 and vae_metrics["val/recon"] > 0
    assert vae_metrics["seconds"] > 0  # the stage's wall time, which a later stage's training_minutes subtracts
    # the decoder stage ends with a downstream evaluation through the whole pipeline (prior trained before it)
    decoder_log = (run.root / "logs/decoder/metrics.csv").read_text()
    assert "eval/validity" in decoder_log.splitlines()[0]
    assert "eval/validity" in json.loads((run.root / "decoder/metrics.json").read_text())


def test_downstream_evaluation_logs_fast_metrics_when_rows_are_valid(trained):
    from difflm.callbacks.evaluation import DownstreamEvaluation
    from difflm.datamodules.records import load_run_data

    run, _, _ = trained
    schema, frames = load_run_data(run)
    real_rows = [schema.to_text(r) for r in frames["train"].to_dict("records")][:12]

    class RealRowsDecoder:  # a decoder that writes real rows: every metric must be computed
        def generate(self, z, generator=None, stats=None, **options):
            return real_rows[: len(z)]

    class Trainer:
        global_step, logger, sanity_checking, callback_metrics = 7, None, False, {}

    _, prior, _ = load_generator(run)
    callback = DownstreamEvaluation(run, lambda module: (prior, RealRowsDecoder()), rows=12,
                                    target="income")
    metrics = callback.evaluate(Trainer(), prior)
    assert metrics["validity"] == 1.0 and {"mle_auc", "shape_error", "trend_error", "dcr_share", "c2st_auc",
                                           "alpha_precision", "beta_recall"} <= set(metrics)
    assert callback.history[-1]["step"] == 7 and float(Trainer.callback_metrics["eval/c2st_auc"]) == pytest.approx(
        metrics["c2st_auc"])


def test_checkpoints_hold_only_what_trained(trained):
    run, _, _ = trained
    decoder = torch.load(run.best("decoder"), weights_only=False)
    assert decoder["state_dict"] and all("lora_" in k or k.startswith("projector.") for k in decoder["state_dict"])
    assert decoder["hyper_parameters"]["schema"]["columns"][0]["name"] == "age"
    vae = torch.load(run.best("vae"), weights_only=False)
    assert not any(k.startswith("llm.") for k in vae["state_dict"])
    assert any(k.startswith("posterior.backbone.") for k in vae["state_dict"])
    prior = torch.load(run.best("prior"), weights_only=False)
    assert {"mean", "std"} <= set(prior["state_dict"]) and any(k.startswith("ema.") for k in prior["state_dict"])


def test_sampling_is_reproducible_and_refuses_to_return_fewer_rows(trained):
    run, _, _ = trained
    schema, prior, decoder = load_generator(run)
    z = prior.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(z, prior.sample(4, torch.Generator().manual_seed(0)))
    first = decoder.generate(z, torch.Generator().manual_seed(1), max_new_tokens=40)
    assert first == decoder.generate(z, torch.Generator().manual_seed(1), max_new_tokens=40)
    # an untrained tiny decoder writes no valid JSON: the sampler says so instead of returning fewer rows
    with pytest.raises(SamplingError, match=r"only 0 of 3 rows were valid after 1 rounds"):
        sample_records(schema, prior, decoder, n=3, max_rounds=1, max_new_tokens=40, progress=False)


def test_constrained_decoding_makes_even_the_untrained_decoder_write_valid_rows(trained):
    run, _, _ = trained
    schema, prior, decoder = load_generator(run)
    kwargs = dict(n=6, seed=0, max_rounds=0, progress=False, constrained=True)
    records, stats = sample_records(schema, prior, decoder, **kwargs)
    assert len(records) == 6 and stats["validity"] == 1.0 and stats["generated"] == 6
    assert sample_records(schema, prior, decoder, **kwargs)[0] == records


def test_forced_tokens_fed_together_decode_the_same_text_in_fewer_passes(trained):
    from difflm.constraint import RecordConstraint
    from difflm.datamodules.schema import Schema
    from difflm.modules.generate import generate_texts

    run, _, _ = trained
    _, prior, decoder = load_generator(run)
    z = prior.sample(5, torch.Generator().manual_seed(3))
    texts, stats = {}, {}
    for fast_forward in (False, True):  # greedy: a forced token is the only one the mask leaves
        constraint = RecordConstraint(Schema.from_dict(decoder.hparams.schema), decoder.tokenizer, fast_forward)
        stats[fast_forward] = {}
        texts[fast_forward] = generate_texts(decoder.llm, decoder.projector, decoder.tokenizer, z, 600, 0,
                                             prompt_ids=decoder.hparams.prompt_ids, constraint=constraint,
                                             stats=stats[fast_forward])
    assert texts[True] == texts[False]
    assert stats[True]["forced_tokens"] > stats[True]["drawn_tokens"]  # keys and punctuation: most of a row
    assert stats[True]["forward_passes"] < stats[False]["forward_passes"] / 2


def test_sample_cli_exits_2_and_writes_nothing_when_rows_are_invalid(trained, tmp_path, capsys):
    run, _, _ = trained
    out = tmp_path / "synthetic.csv"
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main([f"run={run.root}", "n=2", f"out={out}", "sample.max_rounds=0", "sample.constrained=false",
                         "trainer.enable_progress_bar=false"])
    assert exit_info.value.code == 2 and "rows were valid" in capsys.readouterr().err
    assert not out.exists()
    # constrained decoding is the default: the same untrained decoder's rows all parse
    sample_cli.main([f"run={run.root}", "n=3", f"out={out}", "trainer.enable_progress_bar=false"])
    assert "wrote 3 rows" in capsys.readouterr().out and len(out.read_text().splitlines()) == 4


def test_resume_continues_from_the_last_checkpoint(trained):
    from difflm.config import compose

    run, base, _ = trained
    before = torch.load(run.last("vae"), weights_only=False)["global_step"]
    seconds_before = json.loads((run.stage("vae") / "metrics.json").read_text())["seconds"]
    result = train(compose([*base, "stage=vae", f"vae.max_steps={before + 10}"]))
    assert torch.load(run.last("vae"), weights_only=False)["global_step"] == before + 10
    # its recorded wall time adds this session's to the earlier ones (what training_minutes subtracts)
    seconds = json.loads((run.stage("vae") / "metrics.json").read_text())["seconds"]
    assert seconds == pytest.approx(seconds_before + result["seconds"]["vae"], abs=0.11)


def test_ddpm_prior_trains_and_samples_from_the_same_vae(trained, tmp_path):
    from difflm.config import compose

    run, base, _ = trained
    copy = tmp_path / "ddpm"
    shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("prior", "logs"))
    train(compose([*[a for a in base if not a.startswith("run=")], f"run={copy}", "stage=prior", "prior.kind=ddpm"]))
    schema, prior, _ = load_generator(RunDir(copy))
    assert prior.hparams.train["kind"] == "ddpm"
    assert prior.sample(3, torch.Generator().manual_seed(0)).shape == (3, 16)


def test_a_users_csv_and_schema_override(tmp_path):
    import json

    import pandas as pd

    from difflm.config import compose

    rows = [{"height": 150 + i % 40, "colour": ["red", "blue", "green"][i % 3], "ok": i % 2 == 0} for i in range(60)]
    pd.DataFrame(rows).to_csv(tmp_path / "people.csv", index=False)
    base = [f"data={tmp_path}/people.csv", "model=tiny", "logger=none", "trainer.enable_progress_bar=false",
            "stage=vae", "vae.max_steps=2", "vae.val_every_n_steps=2"]
    train(compose([f"run={tmp_path}/inferred", *base]))
    inferred = json.loads((tmp_path / "inferred/schema.json").read_text())
    assert [(c["name"], c["kind"]) for c in inferred["columns"]] == [
        ("height", "integer"), ("colour", "categorical"), ("ok", "boolean")]
    assert len(pd.read_parquet(tmp_path / "inferred/data/test.parquet")) == 12  # data.test_fraction=0.2

    inferred["columns"][0].update(minimum=100, maximum=250)
    (tmp_path / "schema.json").write_text(json.dumps(inferred))
    train(compose([f"run={tmp_path}/given", *base, f"data.schema={tmp_path}/schema.json"]))
    given = json.loads((tmp_path / "given/schema.json").read_text())
    assert (given["columns"][0]["minimum"], given["columns"][0]["maximum"]) == (100, 250)

    # the evaluation protocol's split: half the training rows held out (never trained on), values-only texts
    train(compose([f"run={tmp_path}/held", *base, "data.holdout_fraction=0.5", "data.text_format=array"]))
    splits = {s: pd.read_parquet(tmp_path / f"held/data/{s}.parquet") for s in ("train", "val", "holdout")}
    assert len(splits["holdout"]) == 24 and len(splits["train"]) + len(splits["val"]) == 24  # 48 after the test split
    assert json.loads((tmp_path / "held/schema.json").read_text())["text_format"] == "array"
    with pytest.raises(UserError, match="data.text_format=csv is not one of object, array"):
        train(compose([f"run={tmp_path}/bad", *base, "data.text_format=csv"]))
    assert not (tmp_path / "bad").exists()


def test_stage_all_samples_as_many_rows_as_the_training_split_when_sample_n_is_null(tmp_path):
    import pandas as pd

    from difflm.config import compose

    rows = [{"height": 150 + i % 40, "colour": ["red", "blue", "green"][i % 3]} for i in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "people.csv", index=False)
    base = [f"data={tmp_path}/people.csv", "model=tiny", "logger=none", "trainer.enable_progress_bar=false",
            "evaluation.rows=0", "stage=all", "vae.max_steps=2", "prior.max_steps=3", "decoder.max_steps=2"]
    with pytest.raises(UserError, match=r"sample.n=0 must be a positive integer, or null for as many rows as the "
                                        r"training split"):
        train(compose([f"run={tmp_path}/bad", *base, "sample.n=0"]))
    assert not (tmp_path / "bad").exists()
    train(compose([f"run={tmp_path}/run", *base, "sample.n=null", "sample.batch_size=16"]))
    training_rows = len(pd.read_parquet(tmp_path / "run/data/train.parquet"))
    assert 20 < training_rows < 40 and len(pd.read_csv(tmp_path / "run/samples.csv")) == training_rows


def test_upstream_run_lends_its_data_and_other_stages(trained, tmp_path):
    """A sweep trial: only the prior trains; data, VAE and decoder are the upstream run's, and so is the config."""
    from difflm.config import compose

    run, _, _ = trained
    trial = tmp_path / "trial"
    # an earlier test resumed the upstream's VAE: bring its latent cache up to date, as its own prior stage would
    # (a trial finding it stale encodes its own latents.pt instead of linking the upstream's)
    cached_latents(run, *load_run_data(run), batch_size=64)
    train(compose([f"run={trial}", f"upstream={run.root}", "stage=prior", "prior.max_steps=3", "logger=none"]))
    for name in ("vae", "decoder", "data", "schema.json", "latents.pt"):
        assert (trial / name).is_symlink() and (trial / name).resolve() == (run.root / name).resolve()
    assert not (trial / "prior").is_symlink() and (trial / "prior/metrics.json").is_file()
    assert compose([f"run={trial}"]).model.name == "tiny"  # the upstream's presets, not the defaults
    assert torch.load(run.last("prior"), weights_only=False)["global_step"] > 3  # the upstream's prior untouched
    # the trial now trains its own decoder too: in its own folder, not resumed from or written into the upstream's
    upstream_decoder = run.last("decoder").read_bytes()
    train(compose([f"run={trial}", "stage=decoder", "decoder.max_steps=2", "logger=none"]))
    assert not (trial / "decoder").is_symlink() and (trial / "vae").is_symlink()
    assert torch.load(RunDir(trial).last("decoder"), weights_only=False)["global_step"] == 2
    assert run.last("decoder").read_bytes() == upstream_decoder
    with pytest.raises(UserError, match="is not a run directory"):
        train(compose([f"run={tmp_path}/other", f"upstream={tmp_path}/nowhere", "stage=prior"]))
