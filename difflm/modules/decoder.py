"""Stage decoder: the LLM (4-bit nf4 by default) with LoRA adapters and the projector (initialised from the
VAE's), trained on (z from the frozen encoder, text). Its checkpoint holds only the adapters and projector."""

from peft import LoraConfig, get_peft_model

from difflm.constraint import RecordConstraint
from difflm.datamodules.schema import Schema
from difflm.modules.base import StageModule
from difflm.modules.encoder import reparameterize
from difflm.modules.generate import generate_texts
from difflm.modules.llm import load_llm, load_tokenizer
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

    def shared_step(self, batch, split):
        z = reparameterize(batch["mu"], batch["logvar"]) if split == "train" else batch["mu"]
        inputs = self.projector.llm_inputs(self.llm, z, batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = self.llm(**inputs).loss
        self.log_split(split, dict(loss=loss), batch["input_ids"].shape[0])
        return loss

    def generate(self, z, temperature=0.5, generator=None, max_new_tokens=None, constrained=False, stats=None):
        """One text per latent row; `constrained`: only texts that parse into valid records of the schema;
        `stats` (a dict) accumulates forward passes, drawn and forced tokens."""
        self.eval()
        return generate_texts(self.llm, self.projector, self.tokenizer, z.to(self.device),
                              max_new_tokens or self.hparams.max_new_tokens, temperature, generator,
                              self.hparams.prompt_ids, self.constraint() if constrained else None, stats)

    def constraint(self):
        if getattr(self, "_constraint", None) is None:
            self._constraint = RecordConstraint(Schema.from_dict(self.hparams.schema), self.tokenizer)
        return self._constraint
