"""sample.py method=difflm | vae | finetune | prompt on one run (issue 7), with model=tiny."""

import numpy as np
import pandas as pd
import pytest
import torch

import sample as sample_cli
from difflm.config import compose
from difflm.datamodules.records import load_run_data, record_texts
from difflm.modules.generate import generate_texts
from difflm.modules.llm import load_llm, load_tokenizer
from difflm.modules.prior import StandardNormalPrior
from difflm.modules.projectors import NoLatent
from difflm.pipeline import train
from difflm.prompting import PromptSource
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


@pytest.mark.parametrize("method", ["difflm", "vae", "finetune", "prompt", "prompt+by_column"])
def test_every_method_samples_valid_rows(with_finetune, tmp_path, capsys, method):
    run, _ = with_finetune
    out = tmp_path / f"{method}.csv"
    options = ["sample.prompt.by_column=true"] if method.endswith("+by_column") else []
    sample_cli.main([f"run={run.root}", "n=12", f"out={out}", f"method={method.split('+')[0]}", "seed=3", *options])
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
    (["method=gan"], "method='gan' is not one of difflm, vae, finetune, prompt"),
    (["method=prompt", "condition.sex=Female", "sample.condition_mode=guided"], "method=prompt does not read"),
    (["method=finetune", "condition.sex=Female", "sample.condition_mode=guided"], "does not read"),
    (["sample.column_temperature.town=1.1"], "sample.column_temperature: 'town' is neither a column ("),
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


@pytest.fixture(scope="module")
def prompt_source(trained):
    run, _, _ = trained
    schema, frames = load_run_data(run)
    return PromptSource(schema, frames["train"], load_tokenizer("tiny"), "adult", examples=3, conditions=2,
                        steer=True, device="cpu"), schema, frames


def test_a_prompt_holds_the_task_examples_and_conditions_of_its_seed(prompt_source):
    source, schema, frames = prompt_source
    system, user = (m["content"] for m in source.messages(7))
    assert all(column.name in system for column in schema.columns) and "JSON" in system
    lines = user.splitlines()
    assert lines[0] == "Examples:" and set(lines[1:4]) <= set(record_texts(schema, frames["train"]))
    assert lines[4].startswith("The new row has ") and lines[4].count(" = ") == 2
    assert source.messages(7) == source.messages(7) != source.messages(8)  # a seed is one prompt
    assert source.tokenizer.decode(source.prompt_ids(7)).endswith("Write one new record.\n\n")


def test_steering_draws_the_values_the_rows_so_far_under_cover(prompt_source):
    source, _, _ = prompt_source
    source.conditions, before = 1, source.conditions
    try:
        column = next(name for name, shares in source.marginals.items() if len(shares) == 2)
        common = source.marginals[column].index[0]
        source.generated = {name: type(counts)() for name, counts in source.generated.items()}
        source.generated[column][common] = 100  # every row so far took the commonest value
        rng = np.random.default_rng(0)
        drawn = [source.condition_values(rng) for _ in range(200)]
        picked = [values[column] for values in drawn if column in values]
        assert picked and common not in picked  # only the under-covered value is asked for
    finally:
        source.conditions = before


def test_rows_with_prompts_of_different_lengths_decode_as_they_would_alone():
    llm, tokenizer = load_llm("tiny"), load_tokenizer("tiny")
    prompts = [tokenizer("a short prompt", add_special_tokens=False).input_ids,
               tokenizer("a much longer prompt, with more words in it", add_special_tokens=False).input_ids]
    z = torch.zeros(2, 1, dtype=torch.long)
    together = generate_texts(llm, NoLatent(), tokenizer, z, 12, temperature=0, prompts=prompts)
    alone = [generate_texts(llm, NoLatent(), tokenizer, z[:1], 12, temperature=0, prompts=[p])[0] for p in prompts]
    assert together == alone and all(text for text in together)


def test_compare_keeps_each_prompt_variants_tables_under_its_own_settings():
    from bench.compare import method_settings
    prompt = {"examples": 4, "conditions": 2, "steer": False, "by_column": False}
    assert method_settings("difflm", prompt) == ("difflm", prompt, "difflm")
    assert method_settings("vae", prompt)[2] == "no_prior"  # bench/fidelity.py's tables of the same sampler
    method, settings, folder = method_settings("prompt+by_column", prompt)
    assert method == "prompt" and settings == {**prompt, "by_column": True}
    assert folder == "prompt+by_column-4examples-2conditions"
    assert method_settings("prompt", {**prompt, "examples": 8})[2] == "prompt-8examples-2conditions"
    for name in ("vae+steer", "prompt+columns", "gan"):
        with pytest.raises(SystemExit, match=f"'{name.replace('+', '[+]')}' is none of"):
            method_settings(name, prompt)
