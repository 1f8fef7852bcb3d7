import pytest
import torch
from omegaconf import OmegaConf

from difflm.modules.decoder import DecoderModule


def build(cfg):
    return DecoderModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.decoder),
                         {"columns": []}, max_new_tokens=8)


def trainable(module):
    return {name for name, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_only_lora_adapters_and_projector_train_and_are_saved(tiny_cfg, quantization):
    module = build(tiny_cfg(f"model.quantization={quantization}"))
    names = trainable(module)
    assert names and all("lora_" in n or n.startswith("projector.") for n in names)
    assert any(n.startswith("projector.") for n in names) and any("lora_A" in n for n in names)
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert any("embed_tokens" in n for n in frozen)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == names and checkpoint["difflm"]["stage"] == "decoder"


def test_nf4_loads_the_llm_in_4bit_on_cpu(tiny_cfg):
    import bitsandbytes as bnb

    module = build(tiny_cfg("model.quantization=nf4"))
    layers = [m for m in module.llm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and layers[0].weight.quant_type == "nf4"
    batch = dict(input_ids=torch.randint(3, 300, (2, 10)), attention_mask=torch.ones(2, 10, dtype=torch.long),
                 mu=torch.randn(2, 16), logvar=torch.zeros(2, 16))
    batch["labels"] = batch["input_ids"].clone()
    module.shared_step(batch, "val").backward()
    assert module.projector.proj.weight.grad.abs().sum() > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nf4_decoder_step_on_cuda_in_bf16(tiny_cfg):
    module = build(tiny_cfg("model.quantization=nf4", "model.compute_dtype=bfloat16")).cuda()
    ids = torch.randint(3, 300, (2, 10), device="cuda")
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids.clone(),
                 mu=torch.randn(2, 16, device="cuda"), logvar=torch.zeros(2, 16, device="cuda"))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = module.shared_step(batch, "val")
    loss.backward()
    assert torch.isfinite(loss)
    texts = module.generate(torch.randn(3, 16, device="cuda"), generator=torch.Generator("cuda").manual_seed(0))
    assert len(texts) == 3


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_plain_copy_computes_what_the_trained_modules_compute(tiny_cfg, quantization):
    from difflm.modules.llm import plain_copy

    module = build(tiny_cfg(f"model.quantization={quantization}")).eval()
    with torch.no_grad():  # adapters that do something: LoRA's B starts at zero
        for name, p in module.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    ids = torch.randint(3, 300, (2, 12))
    with torch.no_grad():
        trained = module.llm(input_ids=ids).logits  # a no-grad eval forward, as decoding does
        plain = plain_copy(module.llm, torch.float32)
        assert not any("lora" in name for name, _ in plain.named_parameters())
        assert torch.allclose(plain(input_ids=ids).logits, trained, atol=1e-4)
        assert plain.lm_head.weight.data_ptr() == plain.get_input_embeddings().weight.data_ptr()  # still tied
        bf16_copy = plain_copy(module.llm, torch.bfloat16)
        bf16 = bf16_copy(input_ids=ids).logits.float()
    assert (bf16.argmax(-1) == trained.argmax(-1)).float().mean() > 0.9
    assert bf16_copy.lm_head.weight.dtype == torch.bfloat16
    assert {b.dtype for b in bf16_copy.buffers()} == {torch.float32}  # rotary frequencies keep their precision


def test_decoding_copy_is_rebuilt_after_a_training_step(tiny_cfg):
    module = build(tiny_cfg())
    first = module.decoding_llm("float32")
    assert module.decoding_llm("float32") is first and module.decoding_llm("as_trained") is module.llm
    assert "_plain" not in dict(module.named_modules())  # the copy is not part of the checkpoint
    module.on_train_batch_end(None, None, 0)
    assert module.decoding_llm("float32") is not first


@pytest.mark.parametrize("use_latent", [True, False])
def test_the_no_latent_ablation_reads_zero_whatever_the_latent(tiny_cfg, use_latent):
    module = build(tiny_cfg("model.quantization=none", f"decoder.use_latent={str(use_latent).lower()}"))
    torch.nn.init.normal_(module.projector.proj.weight, std=1.0)  # a projector that reads z strongly
    batch = dict(input_ids=torch.randint(3, 300, (2, 10)), attention_mask=torch.ones(2, 10, dtype=torch.long))
    batch["labels"] = batch["input_ids"].clone()
    losses = [module.shared_step({**batch, "mu": torch.full((2, 16), value), "logvar": torch.zeros(2, 16)}, "val")
              for value in (-1.0, 1.0)]
    assert torch.isclose(losses[0], losses[1]) != use_latent
    module.shared_step({**batch, "mu": torch.randn(2, 16), "logvar": torch.zeros(2, 16)}, "val").backward()
    assert (module.projector.proj.weight.grad.abs().sum() > 0) == use_latent  # z = 0: only the bias learns


@pytest.mark.parametrize("latent_noise", [0.0, 1.0])
def test_training_reads_the_posterior_mean_or_a_sample_of_it(tiny_cfg, latent_noise):
    module = build(tiny_cfg("model.quantization=none", f"decoder.latent_noise={latent_noise}")).eval()
    torch.nn.init.normal_(module.projector.proj.weight, std=1.0)
    batch = dict(input_ids=torch.randint(3, 300, (2, 10)), attention_mask=torch.ones(2, 10, dtype=torch.long),
                 mu=torch.randn(2, 16), logvar=torch.full((2, 16), 2.0))
    batch["labels"] = batch["input_ids"].clone()
    train_loss, val_loss = module.shared_step(batch, "train"), module.shared_step(batch, "val")
    assert torch.isclose(train_loss, val_loss) == (latent_noise == 0.0)  # validation always reads the mean
