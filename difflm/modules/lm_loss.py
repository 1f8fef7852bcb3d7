"""A causal LM's loss on a record's tokens, with the vocabulary head only where a token carries a label.

A causal LM's forward computes logits at every position, each as wide as the vocabulary (49,152 for SmolLM2, a fifth
of its weights). A soft prompt's virtual tokens, the padding and, with decoder.loss_on=free, the tokens the record
grammar forces carry no label: their logits are work thrown away. Here the backbone reads every position and the
head runs only where the next token has a label; the loss is the mean cross-entropy over those tokens, the value
Hugging Face's `.loss` gives. With decoder.loss_on=constrained it runs only for the tokens the grammar allows there."""

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn

from difflm.modules.projectors import IGNORE_INDEX

# model types whose logits are the head's output as is (no soft-capping or scaling after the head): the others
# take the model's own forward and loss
PLAIN_HEAD_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def causal_lm_loss(llm, inputs, allowed_columns=None, allowed_mask=None, weights=None):
    """Mean next-token cross-entropy of `inputs` (the LLM's forward arguments with `labels`, IGNORE_INDEX where a
    token carries no loss); `llm` may be LoRA-wrapped (peft). With `allowed_columns` and `allowed_mask` (see
    RecordCollator) each labelled token's softmax runs over the tokens it was chosen from only: the loss is then
    the negative log-likelihood of constrained decoding at temperature 1, and the head computes only those columns.
    With `weights` (a weight per token of the record, as RecordCollator's `label_weights`) the mean is weighted."""
    model = llm.get_base_model() if isinstance(llm, PeftModel) else llm
    targets = inputs["labels"][:, 1:]
    labelled = targets != IGNORE_INDEX
    body = {key: value for key, value in inputs.items() if key != "labels"}
    if model.config.model_type not in PLAIN_HEAD_MODEL_TYPES:
        if allowed_columns is None and weights is None:
            return llm(**inputs).loss
        logits = llm(**body).logits[:, :-1][labelled]
        logits = logits if allowed_columns is None else logits[:, allowed_columns]
    else:
        hidden = model.base_model(**body).last_hidden_state[:, :-1][labelled]
        logits = head_logits(model.get_output_embeddings(), hidden, allowed_columns)
    targets = targets[labelled]
    if allowed_columns is not None:
        logits = logits.float().masked_fill(~allowed_mask, float("-inf"))
        targets = torch.searchsorted(allowed_columns, targets)
    if weights is None:
        return F.cross_entropy(logits.float(), targets)
    prepended = inputs["labels"].shape[1] - weights.shape[1]  # a soft prompt's virtual tokens, never labelled
    weights = F.pad(weights, (prepended, 0), value=1.0)[:, 1:][labelled].to(logits.device)
    return (F.cross_entropy(logits.float(), targets, reduction="none") * weights).sum() / weights.sum()


def head_logits(head, hidden, columns=None):
    """The vocabulary head's logits of `columns` (token ids; None: all), computing only those where the head is a
    plain linear layer."""
    if columns is None:
        return head(hidden)
    if type(head) is not nn.Linear:
        return head(hidden)[..., columns]
    bias = None if head.bias is None else head.bias[columns]
    return F.linear(hidden, head.weight[columns], bias)
