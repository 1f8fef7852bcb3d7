"""A causal LM's loss on a record's tokens, with the vocabulary head only where a token carries a label.

A causal LM's forward computes logits at every position, each as wide as the vocabulary (49,152 for SmolLM2, a fifth
of its weights). A soft prompt's virtual tokens, the padding and, with decoder.loss_on=free, the tokens the record
grammar forces carry no label: their logits are work thrown away. Here the backbone reads every position and the
head runs only where the next token has a label; the loss is the mean cross-entropy over those tokens, the value
Hugging Face's `.loss` gives."""

import torch.nn.functional as F
from peft import PeftModel

from difflm.modules.projectors import IGNORE_INDEX

# model types whose logits are the head's output as is (no soft-capping or scaling after the head): the others
# take the model's own forward and loss
PLAIN_HEAD_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def causal_lm_loss(llm, inputs):
    """Mean next-token cross-entropy of `inputs` (the LLM's forward arguments with `labels`, IGNORE_INDEX where a
    token carries no loss); `llm` may be LoRA-wrapped (peft)."""
    model = llm.get_base_model() if isinstance(llm, PeftModel) else llm
    if model.config.model_type not in PLAIN_HEAD_MODEL_TYPES:
        return llm(**inputs).loss
    body = {key: value for key, value in inputs.items() if key != "labels"}
    hidden = model.base_model(**body).last_hidden_state
    targets = inputs["labels"][:, 1:]
    labelled = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][labelled])
    return F.cross_entropy(logits.float(), targets[labelled])
