"""The run directory: where each stage finds what the previous one left (never through a hard-coded path).

runs/<name>/config.yaml   resolved configuration (with upstream=<run>, data and earlier stages are links to that run)
            schema.json   the table's schema
            data/         train / val / test splits (Parquet) as the stages saw them
            latents.pt    encoder means and log-variances of the train/val records (cached for prior and decoder)
            vae/ prior/ decoder/   best.ckpt, last.ckpt, logs
            fidelity/<variant>/table-<seed>-<rows>rows.parquet (+ .json)   benchmark tables (bench/), kept to reuse
"""

import os
import tempfile
from pathlib import Path

from difflm.errors import UserError

STAGES = ("vae", "prior", "decoder")  # stage=all trains these, in this order
BASELINE_STAGES = ("finetune",)  # trained only when asked: the decoder with no latent (sample.py method=finetune)


def atomic_write(path, write):
    """Call write(tmp_path), then move the file into place: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class RunDir:
    def __init__(self, root):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    schema = property(lambda self: self.root / "schema.json")
    data = property(lambda self: self.root / "data")
    latents = property(lambda self: self.root / "latents.pt")

    def split(self, name):
        return self.data / f"{name}.parquet"

    def stage(self, name):
        return self.root / name

    def last(self, stage):
        return self.stage(stage) / "last.ckpt"

    def has(self, stage):
        return (self.stage(stage) / "best.ckpt").is_file() or self.last(stage).is_file()

    def fidelity_table(self, variant, seed, rows):
        """(table, statistics) paths of a benchmark's synthetic table: a variant's table `seed` of `rows` rows."""
        stem = self.root / "fidelity" / variant / f"table-{seed}-{rows}rows"
        return stem.with_suffix(".parquet"), stem.with_suffix(".json")

    def best(self, stage):
        """The stage's best checkpoint; a clear error if the stage has not been trained in this run."""
        for path in (self.stage(stage) / "best.ckpt", self.last(stage)):
            if path.is_file():
                return path
        raise UserError(f"no trained {stage} stage in {self.root}: run "
                        f"`python train.py stage={stage} run={self.root}` first")


def link_upstream(run, upstream, trained_stages):
    """Symlink into `run` what it takes from the run directory `upstream`: the schema, the data splits, the cached
    latents, and every stage it does not train itself (e.g. a prior sweep trial reuses one VAE and decoder)."""
    upstream = RunDir(upstream)
    if not upstream.config.is_file():
        raise UserError(f"upstream={upstream.root} is not a run directory (no config.yaml): train one first, "
                        f"e.g. `python train.py run={upstream.root}`")
    if upstream.root.resolve() == run.root.resolve():
        raise UserError(f"upstream={upstream.root} is the run itself: give this run its own run=")
    run.root.mkdir(parents=True, exist_ok=True)
    sources = [upstream.schema, upstream.data, upstream.latents,
               *(upstream.stage(s) for s in (*STAGES, *BASELINE_STAGES) if s not in trained_stages)]
    for source in sources:
        target = run.root / source.name
        if source.exists() and not target.exists() and not target.is_symlink():
            target.symlink_to(source.resolve(), target_is_directory=source.is_dir())


def unlink_borrowed(run, stages):
    """A stage trained in `run` lives in `run`: drop the link an earlier call made to an upstream's stage (e.g.
    stage=prior linked the decoder, now stage=decoder trains its own), so training never resumes from or writes
    into the upstream's checkpoints."""
    for stage in stages:
        if run.stage(stage).is_symlink():
            run.stage(stage).unlink()
