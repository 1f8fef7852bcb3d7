"""Decoder-stage training speed (rows per second) by text format, weights and precision, on real Adult rows.

python bench/decoder_speed.py [--batch 8] [--steps 7]
-> bench/results/decoder_speed.json: for each setting, the median seconds of a training step (forward, backward,
   AdamW; the first two steps are warm-up), the tokens in a batch and rows per second.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.config import compose, plain  # noqa: E402
from difflm.datamodules.records import RecordCollator, record_texts  # noqa: E402
from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.modules.decoder import DecoderModule  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "decoder_speed.json"
SETTINGS = [("object", "nf4", False), ("object", "none", False), ("object", "none", True), ("array", "none", True)]


def measure(text_format, quantization, bf16, batch, steps):
    cfg = compose([f"model.quantization={quantization}"])
    frame = read_adult("train").head(batch * steps)
    schema = infer_schema(frame, text_format=text_format)
    module = DecoderModule(plain(cfg.model), plain(cfg.decoder), schema.to_dict(), 64).train()
    collate = RecordCollator(module.tokenizer, cfg.model.max_length)
    texts = record_texts(schema, frame)
    optimizer = torch.optim.AdamW(module.param_groups())
    seconds = []
    for step in range(steps):
        batch_ = collate([{"text": t} for t in texts[step * batch:(step + 1) * batch]])
        batch_.update(mu=torch.randn(batch, cfg.model.latent_dim), logvar=torch.full((batch, cfg.model.latent_dim), -4.0))
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.shared_step(batch_, "train")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds[2:])
    return {"text_format": text_format, "quantization": quantization, "precision": "bf16 autocast" if bf16 else "fp32",
            "tokens_per_batch": int(batch_["attention_mask"].sum()), "seconds_per_step": round(median, 3),
            "rows_per_second": round(batch / median, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count()))
    results = []
    for setting in SETTINGS:
        results.append(measure(*setting, args.batch, args.steps))
        print(json.dumps(results[-1]), flush=True)
    atomic_write_text(RESULT, json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                          "torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
