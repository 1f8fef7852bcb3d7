import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from difflm.config import compose  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Built-in-code models (the tiny Llama) are written to a cache folder once per test session."""
    os.environ["DIFFLM_CACHE"] = str(tmp_path_factory.mktemp("difflm-cache"))


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


SLICE = ("data.max_rows=240",)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A run with all three stages of model=tiny trained on a slice of Adult: (RunDir, base overrides, timings)."""
    from difflm.pipeline import train
    from difflm.run_dir import RunDir

    run = tmp_path_factory.mktemp("e2e") / "run"
    base = [f"run={run}", "model=tiny", "logger=csv", "trainer.enable_progress_bar=false", *SLICE]
    timings = {}
    for stage in ("vae", "prior", "decoder"):
        timings.update(train(compose([*base, f"stage={stage}"]))["seconds"])
    return RunDir(run), base, timings


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides, run=None):
        run = run or tmp_path / "run"
        return compose([f"run={run}", "model=tiny", "logger=none", "trainer.enable_progress_bar=false",
                        *overrides])
    return make


@pytest.fixture
def small_table():
    """A table with every kind of column and missing values."""
    return pd.DataFrame({
        "age": [25, 38, None, 52, 41, 33],
        "score": [0.5, 1.25, 3.75, 2.0, 0.125, 1.5],
        "city": ["Paris", "Lyon", "Paris", None, "Nice", "Lyon"],
        "member": [True, False, True, True, False, False],
        "label": ["yes", "no", "no", "yes", "no", "yes"],
    })
