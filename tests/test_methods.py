"""sample.py method=difflm | vae | finetune on one run (issue 7), with model=tiny."""

import pandas as pd
import pytest
import torch

import sample as sample_cli
from difflm.config import compose
from difflm.modules.prior import StandardNormalPrior
from difflm.pipeline import train
from difflm.run_dir import RunDir
from difflm.sampling import load_generator


@pytest.fixture(scope="module")
def with_finetune(trained, tmp_path_factory):
    """A run that takes data, VAE, prior and decoder from `trained` and fine-tunes its own no-latent decoder."""
    run, _, _ = trained
    root = tmp_path_factory.mktemp("methods") / "run"
    upstream_decoder = run.last("decoder").read_bytes()
    result = train(compose([f"run={root}", f"upstream={run.root}", "stage=finetune", "decoder.max_steps=3",
                            "logger=none", "trainer.enable_progress_bar=false"]))
    assert run.last("decoder").read_bytes() == upstream_decoder  # the upstream's decoder untouched
    return RunDir(root), result


def test_finetune_trains_the_decoder_with_no_latent_and_the_decoders_budget(with_finetune):
    run, result = with_finetune
    checkpoint = torch.load(run.last("finetune"), weights_only=False)
    assert checkpoint["global_step"] == 3 and checkpoint["hyper_parameters"]["train"]["use_latent"] is False
    assert set(result["seconds"]) == {"finetune"} and (run.stage("finetune") / "metrics.json").is_file()
    _, prior, decoder = load_generator(run, "cpu", "finetune")
    assert isinstance(prior, StandardNormalPrior) and not decoder.hparams.train["use_latent"]
    z = torch.randn(2, prior.latent_dim)
    assert torch.equal(decoder.read(z), torch.zeros_like(z))  # whatever latent comes, the decoder reads zeros


@pytest.mark.parametrize("method", ["difflm", "vae", "finetune"])
def test_every_method_samples_valid_rows(with_finetune, tmp_path, capsys, method):
    run, _ = with_finetune
    out = tmp_path / f"{method}.csv"
    sample_cli.main([f"run={run.root}", "n=12", f"out={out}", f"method={method}", "seed=3"])
    rows = pd.read_csv(out)
    assert len(rows) == 12 and "validity 100.0%" in capsys.readouterr().out


def test_vae_method_draws_other_latents_than_the_prior(with_finetune, tmp_path):
    run, _ = with_finetune
    frames = {}
    for method in ("difflm", "vae"):
        out = tmp_path / f"{method}.csv"
        sample_cli.main([f"run={run.root}", "n=16", f"out={out}", f"method={method}", "seed=0",
                         "sample.save_latents=true"])
        frames[method] = torch.load(f"{out}.latents.pt")
    assert frames["difflm"].shape == frames["vae"].shape and not torch.allclose(frames["difflm"], frames["vae"])


@pytest.mark.parametrize("args, expected", [
    (["method=gan"], "method='gan' is not one of difflm, vae, finetune"),
    (["method=finetune", "condition.sex=Female", "sample.condition_mode=guided"], "does not read"),
])
def test_method_errors_are_one_line(with_finetune, tmp_path, capsys, args, expected):
    run, _ = with_finetune
    with pytest.raises(SystemExit) as exit_:
        sample_cli.main([f"run={run.root}", "n=4", f"out={tmp_path}/s.csv", *args])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_finetune_method_without_its_stage_says_how_to_train_it(trained, tmp_path, capsys):
    run, _, _ = trained
    with pytest.raises(SystemExit):
        sample_cli.main([f"run={run.root}", "n=4", f"out={tmp_path}/s.csv", "method=finetune"])
    assert f"no trained finetune stage in {run.root}: run `python train.py stage=finetune" in capsys.readouterr().err
