"""Stage decoder: the LLM (4-bit nf4 by default) with LoRA adapters and the projector (initialised from the
VAE's), trained on (z from the frozen encoder, text). Its checkpoint holds only the adapters and projector."""

import torch
from peft import LoraConfig, get_peft_model

from difflm.column_temperature import decoding_temperature
from difflm.constraint import record_constraint
from difflm.datamodules.record_types import schema_from_dict
from difflm.modules.base import StageModule
from difflm.modules.encoder import reparameterize
from difflm.modules.generate import generate_texts
from difflm.modules.lm_loss import causal_lm_loss
from difflm.modules.llm import load_llm, load_tokenizer, native_dtype, plain_copy
from difflm.modules.projectors import build_projector


def add_lora(llm, lora):
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    return get_peft_model(llm, config)


class DecoderModule(StageModule):
    stage = "decoder"
    saves_trainable_only = True

    def __init__(self, model: dict, train: dict, schema: dict, max_new_tokens: int, prompt_ids: list | None = None):
        super().__init__()
        self.save_hyperparameters()
        llm = load_llm(model["llm"]["source"], model["quantization"], model["compute_dtype"])
        self.llm = add_lora(llm, model["lora"])
        self.projector = build_projector(model["injection"], model["latent_dim"], llm.config, model["prefix_tokens"])
        self.tokenizer = load_tokenizer(model["llm"]["source"])
        self.schema = schema_from_dict(schema)  # read once: every decoding call needs it
        self._plain, self._constraints = None, {}  # the decoding copy; the record grammar per conditions

    def shared_step(self, batch, split):
        noise = self.hparams.train.get("latent_noise", 1.0) if split == "train" else 0.0
        z = self.read(reparameterize(batch["mu"], batch["logvar"], scale=noise))
        inputs = self.projector.llm_inputs(self.llm, z, batch["input_ids"], batch["attention_mask"], batch["labels"])
        # decoder.target_loss_weight weighs the training loss; validation's stays every token's plain mean
        weights = batch.get("label_weights") if split == "train" else None
        loss = causal_lm_loss(self.llm, inputs, batch.get("allowed_columns"), batch.get("allowed_mask"), weights)
        self.log_split(split, dict(loss=loss), batch["input_ids"].shape[0])
        return loss

    def generate(self, z, generator=None, stats=None, temperature=0.5, max_new_tokens=None, constrained=False,
                 weights="as_trained", conditions=(), column_temperature=None):
        """One text per latent row. `constrained`: only texts that parse into valid records of the schema and
        meet the `conditions` (difflm.conditions.Condition). `weights`: the trained modules as they are
        ("as_trained") or a plain copy (see decoding_llm). `column_temperature`: {column or kind: temperature}
        over `temperature` (difflm.column_temperature). `stats` (a dict) accumulates forward passes, drawn and
        forced tokens."""
        self.eval()
        constraint = self.constraint(tuple(conditions)) if constrained else None
        temperature = decoding_temperature(self.schema, self.tokenizer, temperature, column_temperature)
        return generate_texts(self.decoding_llm(weights), self.projector, self.tokenizer, self.read(z.to(self.device)),
                              max_new_tokens or self.hparams.max_new_tokens, temperature, generator,
                              self.hparams.prompt_ids, constraint, stats)

    def read(self, z):
        """The latent the LLM reads: z, or zeros where decoder.use_latent=false (the fine-tune-only ablation: the
        projector's bias is then a learned soft prompt, the same for every record)."""
        return z if self.hparams.train.get("use_latent", True) else torch.zeros_like(z)

    def decoding_llm(self, weights):
        """The LLM to decode with. "as_trained": the (4-bit) base with its LoRA adapters beside it. "float32",
        "bfloat16", "auto" (bfloat16 where the device computes it natively, else float32): a plain copy with the
        4-bit weights dequantized and the adapters merged in (see plain_copy), kept until the next training step."""
        if weights == "as_trained":
            return self.llm
        dtype = native_dtype(self.device) if weights == "auto" else getattr(torch, weights)
        if self._plain is None or self._plain[0] != dtype:
            self._plain = (dtype, plain_copy(self.llm, dtype).to(self.device))  # a tuple: not a registered submodule
        return self._plain[1]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._plain = None  # the adapters changed

    def constraint(self, conditions=()):
        """The record grammar for these conditions, built once each (constraint.record_constraint)."""
        if conditions not in self._constraints:
            self._constraints[conditions] = record_constraint(self.schema, self.tokenizer, conditions)
        return self._constraints[conditions]
