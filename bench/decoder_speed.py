"""Decoder-stage training speed (rows per second) by text format, weights, precision and LoRA targets, on real
Adult rows.

python bench/decoder_speed.py [--batch 8] [--steps 7] [--out bench/results/decoder_speed-<machine>.json]
                              [--emulated-bf16]
-> bench/results/decoder_speed.json: for each setting, the median seconds of a training step (forward, backward,
   AdamW; the first two steps are warm-up), the tokens in a batch and rows per second; and the machine (whether its
   CPU computes bfloat16 natively decides what autocast costs). Where it does not, the bfloat16 settings are left
   out unless --emulated-bf16 asks for them: on the AVX2 machine measured, a step of the object setting took 270 to
   290 s against 10.5 s in float32.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bitsandbytes as bnb  # noqa: E402
import torch  # noqa: E402

from difflm.config import compose, plain  # noqa: E402
from difflm.datamodules.records import RecordCollator, record_texts  # noqa: E402
from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.modules.decoder import DecoderModule  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "decoder_speed.json"
ALL_PROJECTIONS = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
# (text format, quantization, bfloat16 autocast, LoRA overrides)
SETTINGS = [("object", "nf4", False, ()), ("object", "none", False, ()), ("object", "none", True, ()),
            ("array", "none", True, ()), ("array", "none", False, ()),
            ("array", "none", False, ("model.lora.r=16", f"model.lora.target_modules={ALL_PROJECTIONS}"))]


def cpu_name():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def measure(text_format, quantization, bf16, lora, batch, steps):
    cfg = compose([f"model.quantization={quantization}", *lora])
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
            "lora": {"r": cfg.model.lora.r, "target_modules": list(cfg.model.lora.target_modules)},
            "tokens_per_batch": int(batch_["attention_mask"].sum()), "seconds_per_step": round(median, 3),
            "rows_per_second": round(batch / median, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--emulated-bf16", action="store_true", help="measure bfloat16 autocast on a CPU without it")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count()))
    native_bf16 = bool(bnb.functional.has_avx512bf16())
    results = []
    for setting in SETTINGS:
        if setting[2] and not (native_bf16 or args.emulated_bf16):
            continue
        results.append(measure(*setting, args.batch, args.steps))
        print(json.dumps(results[-1]), flush=True)
    machine = {"cpu": cpu_name(), "avx512_bf16": native_bf16, "arch": platform.machine()}
    atomic_write_text(args.out, json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                            "torch": torch.__version__, "machine": machine, "results": results},
                                           indent=2))


if __name__ == "__main__":
    main()
