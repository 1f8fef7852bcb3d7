"""Decoder-stage training speed (rows per second) by text format, weights, precision, LoRA targets, which tokens carry
the loss (decoder.loss_on) and where the vocabulary head runs (at labelled positions, or at every position as the
model's own loss does), on real Adult rows.

python bench/decoder_speed.py [--batch 8] [--steps 7] [--out bench/results/decoder_speed-<machine>.json]
                              [--emulated-bf16] [--only 'array none bf16']
-> bench/results/decoder_speed.json: for each setting, the median seconds of a training step (forward, backward,
   AdamW; the first two steps are warm-up) and of collating its batch (the grammar walk of loss_on=free/constrained
   happens there, in the data loader, outside the step), the tokens and labelled tokens in a batch and rows per
   second; and the machine (whether its CPU computes bfloat16 natively decides what autocast costs). The first
   setting is measured once untimed before the rest: on an AVX2 EPYC, measured first in a fresh process, a setting
   ran 1.1 to 1.4 times slower than after another. Where the CPU does not compute bfloat16 natively, the bfloat16
   settings are left out unless --emulated-bf16 asks for them: on the AVX2 machine measured, a step of the object
   setting took 270 to 290 s against 10.5 s in float32.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bitsandbytes as bnb  # noqa: E402
import torch  # noqa: E402

from difflm.config import compose, plain  # noqa: E402
from difflm.datamodules.records import RecordCollator, record_texts  # noqa: E402
from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.modules import decoder as decoder_module  # noqa: E402
from difflm.modules.decoder import DecoderModule  # noqa: E402
from difflm.modules.projectors import IGNORE_INDEX  # noqa: E402
from difflm.pipeline import label_choices  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "decoder_speed.json"
RANK16_ALL = ("model.lora.r=16", "model.lora.alpha=32",
              "model.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]")
SETTING = dict(text_format="array", quantization="none", bf16=False, lora=(), loss_on="all", head="labelled")
SETTINGS = [dict(SETTING, **changes) for changes in (
    dict(text_format="object", quantization="nf4"), dict(text_format="object"), dict(text_format="object", bf16=True),
    dict(bf16=True), dict(),
    # budget=cpu60's adapters; with the vocabulary head at every position (the model's own loss, as before lm_loss),
    # at labelled positions, with no loss on the tokens the grammar forces, and with the drawn tokens' softmax over
    # the tokens the grammar allows only
    *[dict(bf16=bf16, lora=RANK16_ALL, head=head, loss_on=loss_on) for bf16 in (True, False)
      for head, loss_on in (("every position", "all"), ("labelled", "all"), ("labelled", "free"),
                            ("labelled", "constrained"))],
    # the values without spaces: a fifth fewer tokens a row
    *[dict(text_format="compact", bf16=bf16, lora=RANK16_ALL) for bf16 in (True, False)])]


def setting_name(setting):
    return " ".join([setting["text_format"], setting["quantization"], "bf16" if setting["bf16"] else "fp32",
                     "lora=r16 all" if setting["lora"] == RANK16_ALL else "lora=r8 attention",
                     f"loss_on={setting['loss_on']}", f"head={setting['head']}"])


def cpu_name():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def model_loss(llm, inputs, *allowed):
    return llm(**inputs).loss  # the vocabulary head at every position


def measure(setting, batch, steps):
    cfg = compose([f"model.quantization={setting['quantization']}", *setting["lora"]])
    frame = read_adult("train").head(batch * steps)
    schema = infer_schema(frame, text_format=setting["text_format"])
    module = DecoderModule(plain(cfg.model), plain(cfg.decoder), schema.to_dict(), 64).train()
    collate = RecordCollator(module.tokenizer, cfg.model.max_length, **label_choices(setting["loss_on"], module))
    texts = record_texts(schema, frame)
    optimizer = torch.optim.AdamW(module.param_groups())
    seconds, collate_seconds = [], []
    every_position = mock.patch.object(decoder_module, "causal_lm_loss", model_loss)
    with every_position if setting["head"] == "every position" else contextlib.nullcontext():
        for step in range(steps):
            started = time.perf_counter()
            batch_ = collate([{"text": t} for t in texts[step * batch:(step + 1) * batch]])
            collate_seconds.append(time.perf_counter() - started)
            batch_.update(mu=torch.randn(batch, cfg.model.latent_dim),
                          logvar=torch.full((batch, cfg.model.latent_dim), -4.0))
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting["bf16"]):
                loss = module.shared_step(batch_, "train")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds[2:])
    return {"setting": setting_name(setting), "text_format": setting["text_format"],
            "quantization": setting["quantization"], "precision": "bf16 autocast" if setting["bf16"] else "fp32",
            "lora": {"r": cfg.model.lora.r, "target_modules": list(cfg.model.lora.target_modules)},
            "loss_on": setting["loss_on"], "head": setting["head"],
            "tokens_per_batch": int(batch_["attention_mask"].sum()),
            "labelled_tokens_per_batch": int((batch_["labels"][:, 1:] != IGNORE_INDEX).sum()),
            "seconds_per_step": round(median, 3), "rows_per_second": round(batch / median, 2),
            "collate_seconds_per_batch": round(statistics.median(collate_seconds[2:]), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--emulated-bf16", action="store_true", help="measure bfloat16 autocast on a CPU without it")
    parser.add_argument("--only", default="", help="the settings whose name holds this text, e.g. 'array none bf16'")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count()))
    native_bf16 = bool(bnb.functional.has_avx512bf16())
    chosen = [setting for setting in SETTINGS if args.only in setting_name(setting)
              and (native_bf16 or args.emulated_bf16 or not setting["bf16"])]
    if chosen:
        measure(chosen[0], args.batch, 4)  # warms the process up
    results = []
    for setting in chosen:
        results.append(measure(setting, args.batch, args.steps))
        print(json.dumps(results[-1]), flush=True)
    machine = {"cpu": cpu_name(), "avx512_bf16": native_bf16, "arch": platform.machine()}
    atomic_write_text(args.out, json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                            "torch": torch.__version__, "machine": machine, "results": results},
                                           indent=2))


if __name__ == "__main__":
    main()
