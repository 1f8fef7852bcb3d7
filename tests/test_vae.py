import pytest
import torch
from omegaconf import OmegaConf

from difflm.modules.vae import VAEModule, active_units, load_vae_parts


def build(cfg):
    return VAEModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.vae), {"columns": []})


def test_active_units_count_the_dimensions_that_vary_across_records():
    collapsed = torch.full((16, 8), 0.3) + 1e-4 * torch.randn(16, 8)  # what a collapsed encoder gives
    assert active_units(collapsed) == 0
    half = torch.cat([torch.randn(16, 4), torch.zeros(16, 4)], dim=1)
    assert active_units(half) == pytest.approx(0.5)


def test_the_encoder_trains_at_its_own_learning_rate(tiny_cfg):
    module = build(tiny_cfg("vae.lr=1e-3", "vae.encoder_lr=2e-5"))
    head, backbone = module.configure_optimizers()["optimizer"].param_groups
    assert head["lr"] == 1e-3 and backbone["lr"] == 2e-5
    # every encoder weight but the BERT pooler, which mean pooling never reads (no gradient: ddp would refuse it)
    pooler = {id(p) for p in module.posterior.backbone.pooler.parameters()}
    assert pooler and module.posterior.pooling == "mean"
    assert {id(p) for p in backbone["params"]} == {id(p) for p in module.posterior.backbone.parameters()} - pooler
    assert not any(p.requires_grad for p in module.posterior.backbone.pooler.parameters())
    head_ids = {id(p) for p in head["params"]}
    assert id(module.posterior.to_moments.weight) in head_ids and id(module.projector.proj.weight) in head_ids
    assert not any(id(p) in head_ids for p in module.llm.parameters())


def test_a_frozen_encoder_is_left_out_of_the_checkpoint_and_loads_as_pretrained(tiny_cfg, tmp_path):
    module = build(tiny_cfg("vae.encoder_lr=0"))
    (group,) = module.configure_optimizers()["optimizer"].param_groups
    assert not any(p.requires_grad for p in module.posterior.backbone.parameters())
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert "posterior.to_moments.weight" in checkpoint["state_dict"]
    assert not any(k.startswith("posterior.backbone.") for k in checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "vae.ckpt")
    _, posterior, _, projector = load_vae_parts(tmp_path / "vae.ckpt")
    assert torch.equal(posterior.to_moments.weight, module.posterior.to_moments.weight)
    ids = torch.randint(3, 300, (2, 6))
    mask = torch.ones_like(ids)
    assert torch.allclose(posterior(ids, mask)[0], module.posterior.eval()(ids, mask)[0])


def test_validation_logs_active_units(tiny_cfg):
    module = build(tiny_cfg())
    logged = {}
    module.log_split = lambda split, metrics, batch_size: logged.update({f"{split}/{k}": v for k, v in metrics.items()})
    texts = torch.randint(3, 300, (4, 6))
    batch = dict(encoder_input_ids=texts, encoder_attention_mask=torch.ones_like(texts), input_ids=texts,
                 attention_mask=torch.ones_like(texts), labels=texts.clone())
    module.shared_step(batch, "val")
    module.shared_step(batch, "train")
    assert 0 <= float(logged["val/active_units"]) <= 1 and "train/active_units" not in logged


def test_encoding_in_batches_of_similar_length_keeps_the_texts_order_and_their_means():
    from difflm.latents import encode_texts
    from difflm.modules.encoder import PosteriorEncoder, load_encoder

    backbone, tokenizer = load_encoder("tiny")
    posterior = PosteriorEncoder(backbone, "mean", 4).eval()
    texts = [f'[{age}, "{"x" * (age % 7)}", {age * 31}]' for age in range(17, 40)]
    mu, logvar = encode_texts(posterior, tokenizer, texts, batch_size=5, max_length=64)
    assert mu.shape == logvar.shape == (len(texts), 4)
    for i in (0, 6, 22):
        enc = tokenizer([texts[i]], return_tensors="pt")
        with torch.no_grad():
            alone = posterior(enc.input_ids, enc.attention_mask)
        torch.testing.assert_close(mu[i], alone[0][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(logvar[i], alone[1][0], atol=1e-5, rtol=1e-4)
