"""sample.py method=prompt: the run's instruct LLM with no training, the field's common practice (Long et al., 2024):
a task specification, `sample.prompt.examples` in-context examples drawn from the training records, and
`sample.prompt.conditions` condition-value pairs drawn from the real marginals (conditional prompting, for
diversity), decoded under the record grammar, so every row is valid. With `sample.prompt.steer` the condition values
are drawn towards those the rows so far under-cover (dataset-wise decomposition); with `sample.prompt.by_column` a
table row is written one column per chat turn (sample-wise decomposition, difflm.column_dialogue).

Each row's prompt follows from one seed (which examples, which columns, which values): PromptSource.sample draws the
seeds, in the place of the prior's latents, and PromptDecoder.generate reads them, in the place of the decoder, so
the sampler, its chunks, seeds and rejection serve this method unchanged."""

from collections import Counter

import numpy as np
import torch
from omegaconf import OmegaConf

from difflm import seeded
from difflm.column_dialogue import ColumnDialogue
from difflm.column_temperature import decoding_temperature
from difflm.constraint import record_constraint
from difflm.datamodules.records import decoding_setup, load_run_data, record_texts, start_token_id
from difflm.datamodules.schema import VALUES_ONLY, InvalidRecord
from difflm.errors import UserError
from difflm.modules.generate import generate_texts
from difflm.modules.llm import load_llm, load_tokenizer, native_dtype
from difflm.modules.projectors import NoLatent

LISTED_CATEGORIES = 12  # a categorical column's values are listed in the task when it has at most this many


def column_description(column):
    if column.kind == "categorical":
        values = column.categories
        listed = ", ".join(values) if len(values) <= LISTED_CATEGORIES else f"{len(values)} values, e.g. {values[0]}"
        return f"{column.name} (one of: {listed})"
    if column.kind == "boolean":
        return f"{column.name} (true or false)"
    return f"{column.name} ({column.kind}, {column.minimum:.10g} to {column.maximum:.10g})"


def task_specification(schema, name):
    """What to write, in words: the record type, its format and, for tables, every column."""
    if schema.record_type == "code":
        return ("You write Python. Write one new top-level Python function in the style of the examples: complete, "
                "syntactically valid code. Answer with the code only.")
    if schema.record_type == "tool":
        return ("You write API definitions. Write one new API operation definition, different from the examples, as "
                'JSON with "name", "description" and "parameters" (a JSON schema object with "type", "properties" '
                'and "required"). Answer with the JSON only.')
    layout = "a JSON array of the values in this column order" if schema.text_format in VALUES_ONLY else "a JSON object"
    columns = "; ".join(column_description(c) for c in schema.columns)
    return (f"You generate realistic synthetic data. Write one new row of the table '{name}', as {layout}: "
            f"{columns}. Missing values are null. Answer with the row only.")


class PromptSource:
    """The prompts' seeds, drawn like latents; the prompt of a seed; and, with `steer`, the condition values the
    rows so far under-cover."""

    def __init__(self, schema, train, tokenizer, name, examples, conditions, steer, device, by_column=False):
        self.schema, self.tokenizer, self.device = schema, tokenizer, torch.device(device)
        if by_column and schema.record_type != "table":
            raise UserError(f"sample.prompt.by_column writes table rows, not {schema.record_type} records: "
                            "set sample.prompt.by_column=false")
        self.dialogue = ColumnDialogue(schema, tokenizer) if by_column else None
        self.texts = record_texts(schema, train)
        self.task = task_specification(schema, name)
        self.examples, self.steer = min(examples, len(self.texts)), steer
        columns = [c for c in getattr(schema, "columns", ()) if c.kind in ("categorical", "boolean")]
        self.conditions = min(conditions, len(columns))
        # each condition column's real marginal (missing values left out) and the counts of the rows so far
        self.marginals = {c.name: train[c.name].dropna().astype(object).value_counts(normalize=True)
                          for c in columns}
        self.generated = {name: Counter() for name in self.marginals}

    def sample(self, n, generator=None):
        """n prompt seeds, (n, 1) int64: the rows' 'latents'."""
        return seeded.randint(2 ** 62, (n, 1), generator, self.device)

    def condition_values(self, rng):
        """{column: value}: `self.conditions` columns at random, each value drawn from the real marginal or, when
        steering, from the real share's surplus over the share generated so far."""
        names = list(self.marginals)
        chosen = rng.choice(len(names), size=self.conditions, replace=False) if self.conditions else []
        values = {}
        for name in (names[i] for i in sorted(chosen)):
            shares = self.marginals[name]
            weights = shares.to_numpy(dtype=float)
            total = sum(self.generated[name].values())
            if self.steer and total:
                seen = np.array([self.generated[name][value] / total for value in shares.index])
                surplus = np.clip(weights - seen, 0, None)
                weights = surplus if surplus.sum() > 0 else weights
            values[name] = shares.index[rng.choice(len(shares), p=weights / weights.sum())]
        return values

    def messages(self, seed):
        """The chat of one prompt seed: the task, then the examples and conditions."""
        rng = np.random.default_rng(int(seed))
        picks = rng.choice(len(self.texts), size=self.examples, replace=False)
        parts = ["Examples:", *(self.texts[i] for i in picks)]
        values = self.condition_values(rng)
        if values:
            parts.append("The new row has " + ", ".join(f"{k} = {_plain(v)}" for k, v in values.items()) + ".")
        parts.append(self.dialogue.instruction() if self.dialogue else "Write one new record.")
        return [{"role": "system", "content": self.task}, {"role": "user", "content": "\n".join(parts)}]

    def prompt_ids(self, seed):
        """The prompt's tokens, ending where the record begins (the assistant's turn)."""
        messages = self.messages(seed)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # a model with no chat template (model=tiny): the two parts as plain text
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def observe(self, texts):
        """Count the condition columns' values of the valid records among `texts` (for steering)."""
        for text in texts:
            try:
                record = self.schema.parse(text)
            except InvalidRecord:
                continue
            for name, counts in self.generated.items():
                if record[name] is not None:
                    counts[record[name]] += 1


def _plain(value):
    return str(value).lower() if isinstance(value, (bool, np.bool_)) else value


class PromptDecoder:
    """The instruct LLM as it ships (no adapters, no projector), with DecoderModule.generate's interface."""

    def __init__(self, source, llm_source, max_length, device):
        self.source, self.device, self.tokenizer = source, torch.device(device), source.tokenizer
        self.llm_source, self._llm, self._constraints = llm_source, None, {}
        self.max_new_tokens, self.prompt_ids = decoding_setup(self.tokenizer, source.texts, max_length)

    def llm(self, weights):
        dtype = torch.float32 if weights in ("as_trained", "float32") else (
            native_dtype(self.device) if weights == "auto" else getattr(torch, weights))
        if self._llm is None or self._llm[0] != dtype:
            self._llm = (dtype, load_llm(self.llm_source, "none", "float32").to(self.device, dtype).eval())
        return self._llm[1]

    def constraint(self, conditions):
        if conditions not in self._constraints:
            dialogue = self.source.dialogue
            self._constraints[conditions] = (dialogue.constraint(conditions) if dialogue else
                                             record_constraint(self.source.schema, self.tokenizer, conditions))
        return self._constraints[conditions]

    @torch.no_grad()
    def generate(self, z, generator=None, stats=None, temperature=1.0, max_new_tokens=None, constrained=False,
                 weights="auto", conditions=(), column_temperature=None):
        prompts = [self.source.prompt_ids(seed) for seed in z[:, 0].tolist()]
        max_new_tokens, prompt_ids = max_new_tokens or self.max_new_tokens, self.prompt_ids
        dialogue = self.source.dialogue
        if dialogue:  # its grammar asks the questions, so it is always constrained; the answers start at once
            if column_temperature:
                raise UserError("sample.column_temperature does not apply to sample.prompt.by_column=true (its text "
                                "is a dialogue, not a record): leave it empty ({})")
            constraint, prompt_ids = self.constraint(tuple(conditions)), [start_token_id(self.tokenizer)]
            max_new_tokens += dialogue.separator_tokens
        else:
            constraint = self.constraint(tuple(conditions)) if constrained else None
            temperature = decoding_temperature(self.source.schema, self.tokenizer, temperature, column_temperature)
        texts = generate_texts(self.llm(weights), NoLatent(), self.tokenizer, z, max_new_tokens, temperature,
                               generator, prompt_ids, constraint, stats, prompts=prompts)
        if dialogue:
            texts = [dialogue.record_text(text) for text in texts]
        if self.source.steer:
            self.source.observe(texts)
        return texts


def prompt_generator(run, device, settings):
    """(schema, PromptSource, PromptDecoder) for a run: its data, its model.llm, sample.prompt's settings."""
    saved = OmegaConf.load(run.config)
    schema, frames = load_run_data(run)
    tokenizer = load_tokenizer(saved.model.llm.source)
    source = PromptSource(schema, frames["train"], tokenizer, saved.data.name, settings["examples"],
                          settings["conditions"], settings["steer"], device, settings["by_column"])
    return schema, source, PromptDecoder(source, saved.model.llm.source, saved.model.max_length, device)
