"""Records as text and tokens: the run's data splits, the collator, and the DataModule every stage uses."""

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader

from difflm.datamodules.record_types import load_records, load_schema
from difflm.datamodules.schema import TEXT_FORMATS, Schema, infer_schema
from difflm.datamodules.text_schema import TextSchema
from difflm.errors import UserError
from difflm.modules.projectors import IGNORE_INDEX
from difflm.run_dir import atomic_write

# holdout: rows of the training table never trained on (data.holdout_fraction; empty if 0), for privacy (DCR)
SPLITS = ("train", "val", "test", "holdout")


def prepare_run_data(data_cfg, run, seed):
    """Write the schema and the train/val/test splits into the run directory (once), and return them.

    A run that already holds them keeps them, so a resumed or later stage sees exactly the same records.
    """
    if run.schema.is_file() and all(run.split(s).is_file() for s in SPLITS[:3]):
        return load_run_data(run)
    record_type, train, test = load_records(data_cfg, seed)
    holdout = train.sample(frac=data_cfg.holdout_fraction, random_state=seed)
    train = train.drop(holdout.index)
    if data_cfg.max_rows is not None and len(train) > data_cfg.max_rows:
        train = train.sample(n=data_cfg.max_rows, random_state=seed)
    val = train.sample(frac=data_cfg.val_fraction, random_state=seed) if len(train) > 1 else train.iloc[:0]
    train = train.drop(val.index)
    if len(val) == 0:
        raise UserError(f"data.source {data_cfg.source} has {len(train)} rows: too few for a validation split")
    schema = table_schema(data_cfg, train) if record_type == "table" else text_schema(data_cfg, record_type, train)
    run.data.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(SPLITS, (train, val, test, holdout)):
        frame = schema.records_to_frame(frame[schema.names].to_dict("records"))
        atomic_write(run.split(name), lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    schema.save(run.schema)
    return load_run_data(run)


def table_schema(data_cfg, train):
    """The schema of a table: data.schema's file, or inferred from the training rows."""
    source = data_cfg.source
    if data_cfg.text_format not in TEXT_FORMATS:
        raise UserError(f"data.text_format={data_cfg.text_format} is not one of {', '.join(TEXT_FORMATS)}")
    schema = Schema.load(data_cfg.schema) if data_cfg.schema else infer_schema(
        train, max_categories=data_cfg.max_categories, source=source)
    schema.text_format = data_cfg.text_format
    absent = [name for name in schema.names if name not in train.columns]
    if absent:
        raise UserError(f"data.schema {data_cfg.schema} names columns that {source} lacks: {absent}")
    if data_cfg.target is not None and data_cfg.target not in schema.names:
        raise UserError(f"data.target '{data_cfg.target}' is not a column of {source}: one of {schema.names}")
    return schema


def text_schema(data_cfg, record_type, train):
    if data_cfg.target is not None:
        raise UserError(f"data.target={data_cfg.target}: {record_type} records have no columns to predict; "
                        "set data.target=null")
    return TextSchema.for_records(record_type, train["text"].tolist())


def load_run_data(run):
    """(schema, {split: DataFrame}) as saved in the run directory."""
    if not run.schema.is_file():
        raise UserError(f"{run.root} has no schema.json: run `python train.py stage=vae run={run.root}` first")
    schema = load_schema(run.schema)
    frames = {name: pd.read_parquet(run.split(name)) for name in SPLITS if run.split(name).is_file()}
    frames.setdefault("holdout", frames["train"].iloc[:0])  # runs made before the holdout split
    return schema, frames


def record_texts(schema, frame):
    return [schema.to_text(row) for row in frame.to_dict("records")]


def start_token_id(tokenizer):
    """The token every record starts from (BOS, or pad for tokenizers without one, e.g. byte-level ByT5)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id


def llm_token_ids(tokenizer, text, max_length):
    ids = tokenizer(text, add_special_tokens=False).input_ids[: max_length - 2]
    return [start_token_id(tokenizer), *ids, tokenizer.eos_token_id]


def decoding_setup(tokenizer, texts, max_length, max_new_tokens=None, length_factor=1.5):
    """(max_new_tokens, prompt_ids) for decoding records like `texts`: max_new_tokens or length_factor x the longest
    record in tokens, and the tokens every record starts with."""
    token_ids = [llm_token_ids(tokenizer, t, max_length) for t in texts]
    longest = max(map(len, token_ids))
    return max_new_tokens or int(longest * length_factor) + 8, common_prefix(token_ids)


def common_prefix(sequences):
    """The longest token prefix every sequence shares, always one token shorter than the shortest sequence
    (so the end of a record is never part of it). Sampling feeds it as the prompt instead of drawing it."""
    length = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        length += 1
    return list(sequences[0][: min(length, min(map(len, sequences)) - 1)])


class RecordCollator:
    """Items {text, [mu, logvar]} -> LLM tokens with labels (+ encoder tokens, + latent moments). `walk` (records'
    token ids after the start token -> (forced flags per token, choices or None), e.g. RecordConstraint.walk): the
    forced tokens carry no label. With choices, the start token carries no label either, and the batch says which
    tokens each labelled one was chosen from (`allowed_columns`: the token ids any of them may be; `allowed_mask`:
    (labelled tokens in row-major order, len(allowed_columns))). `weigh` (the same token ids -> a loss weight per
    token, e.g. difflm.columns.ColumnWeights): the batch's `label_weights`, beside `labels`."""

    def __init__(self, llm_tokenizer, max_length, encoder_tokenizer=None, encoder_max_length=256, walk=None,
                 weigh=None):
        self.llm_tokenizer, self.max_length = llm_tokenizer, max_length
        self.encoder_tokenizer, self.encoder_max_length = encoder_tokenizer, encoder_max_length
        self.walk, self.weigh = walk, weigh

    def __call__(self, items):
        texts = [item["text"] for item in items]
        ids = [llm_token_ids(self.llm_tokenizer, t, self.max_length) for t in texts]
        width = max(map(len, ids))
        pad = self.llm_tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention_mask[row, : len(seq)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        batch = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        if self.walk is not None:
            forced, choices = self.walk([seq[1:] for seq in ids])
            for row, (seq, flags) in enumerate(zip(ids, forced)):
                labels[row, 1: len(seq)][torch.tensor(flags, dtype=torch.bool)] = IGNORE_INDEX
            if choices is not None:
                labels[:, 0] = IGNORE_INDEX  # read as the prompt, never drawn
                batch.update(allowed_columns=choices[0], allowed_mask=choices[1])
        if self.weigh is not None:
            batch["label_weights"] = torch.ones((len(ids), width))
            for row, (seq, weights) in enumerate(zip(ids, self.weigh([seq[1:] for seq in ids]))):
                batch["label_weights"][row, 1: len(seq)] = torch.tensor(weights)
        if self.encoder_tokenizer is not None:
            enc = self.encoder_tokenizer(texts, padding=True, truncation=True, max_length=self.encoder_max_length,
                                         return_tensors="pt")
            batch.update(encoder_input_ids=enc.input_ids, encoder_attention_mask=enc.attention_mask)
        for key in ("mu", "logvar"):
            if key in items[0]:
                batch[key] = torch.stack([item[key] for item in items])
        return batch


class RecordDataModule(L.LightningDataModule):
    """Train/val items (dicts) batched by a collator; shuffling is seeded so a run is reproducible."""

    def __init__(self, train_items, val_items, collate, batch_size, seed=0):
        super().__init__()
        self.train_items, self.val_items = train_items, val_items
        self.collate, self.batch_size, self.seed = collate, batch_size, seed

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_items, batch_size=self.batch_size, shuffle=True, drop_last=False,
                          collate_fn=self.collate, generator=generator)

    def val_dataloader(self):
        return DataLoader(self.val_items, batch_size=self.batch_size, collate_fn=self.collate)
