"""Could decoding on a CPU without native bfloat16 use int8 matrix products instead of float32? PyTorch's dynamic int8
quantization (weights int8, activations quantized per pass; fbgemm kernels) of SmolLM2's linear layers, on Adult rows:

- speed: median milliseconds of one of SmolLM2's linear layers (576 -> 576, 576 -> 1536, 1536 -> 576) on M tokens,
  float32 against int8 (per-tensor weights), 2 threads;
- fidelity: the next-token distributions of the quantized model against float32's on real Adult rows (values-only,
  compact text): KL(float32 || int8) per token (mean, 99th percentile) and how often the most likely token agrees,
  with per-tensor and per-channel weight scales, the vocabulary head quantized or left in float32.

python bench/int8_decoding.py [--rows 32] [--out bench/results/int8_decoding.json]
"""

import argparse
import copy
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic  # noqa: E402

from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.modules.llm import load_llm, load_tokenizer  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "int8_decoding.json"
SCALES = {"per-tensor": default_dynamic_qconfig, "per-channel": per_channel_dynamic_qconfig}


def median_ms(function, repeats=20):
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 3)


@torch.no_grad()
def matmul_speed():
    rows = []
    for tokens in (32, 128, 512):
        for features in ((576, 576), (576, 1536), (1536, 576)):
            linear = nn.Sequential(nn.Linear(*features, bias=False)).eval()
            quantized = quantize_dynamic(linear, {nn.Linear}, dtype=torch.qint8)
            x = torch.randn(tokens, features[0])
            fp32, int8 = median_ms(lambda: linear(x)), median_ms(lambda: quantized(x))
            rows.append({"tokens": tokens, "features": list(features), "float32_ms": fp32, "int8_ms": int8,
                         "speedup": round(fp32 / int8, 2)})
            print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def distribution_shift(rows):
    tokenizer, llm = load_tokenizer("smollm2"), load_llm("smollm2").eval()
    frame = read_adult("train").head(rows)
    schema = infer_schema(frame, text_format="compact")
    texts = [schema.to_text(row) for _, row in frame.iterrows()]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()
    reference = llm(**batch).logits.float()[real].log_softmax(-1)
    result = []
    for head in ("quantized", "float32"):
        for scale, qconfig in SCALES.items():
            model = copy.deepcopy(llm)
            if head == "quantized":
                model = quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8)
            else:
                model.model = quantize_dynamic(model.model, {nn.Linear: qconfig}, dtype=torch.qint8)
            logp = model(**batch).logits.float()[real].log_softmax(-1)
            kl = (reference.exp() * (reference - logp)).sum(-1)
            agreement = (reference.argmax(-1) == logp.argmax(-1)).float().mean().item()
            result.append({"weights": scale, "vocabulary_head": head, "tokens": int(real.sum()),
                           "kl_mean": round(kl.mean().item(), 4), "kl_p99": round(kl.quantile(0.99).item(), 4),
                           "argmax_agreement": round(agreement, 4)})
            print(result[-1], flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")  # quantize_dynamic notes at length that it moves to torchao
    result = {"machine": {"processor": platform.processor() or platform.machine(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "torch": torch.__version__, "matmul_speed": matmul_speed(),
              "distribution_shift": distribution_shift(args.rows)}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
