"""VAE stage: reconstruction accuracy on validation records, the share of fields that come back exactly when
a record is encoded to its posterior mean and decoded greedily by the VAE's frozen LLM."""

from difflm.callbacks.periodic import PeriodicEvaluation
from difflm.metrics.reconstruction import field_accuracy


class ReconstructionAccuracy(PeriodicEvaluation):
    """Logs val/recon_accuracy (fields) and val/recon_row_accuracy (whole records)."""

    prefix = "val"

    def __init__(self, schema, records, collate, max_new_tokens, prompt_ids=None, every_n_steps=0, batch_size=16):
        super().__init__(every_n_steps)
        self.schema, self.records, self.collate = schema, records, collate
        self.max_new_tokens, self.prompt_ids, self.batch_size = max_new_tokens, prompt_ids, batch_size

    def compute(self, trainer, pl_module):
        if not self.records:
            return None
        texts = []
        for start in range(0, len(self.records), self.batch_size):
            chunk = self.records[start:start + self.batch_size]
            batch = self.collate([{"text": self.schema.to_text(r)} for r in chunk])
            texts.extend(pl_module.reconstruct(batch, self.max_new_tokens, self.prompt_ids))
        accuracy = field_accuracy(self.schema, self.records, texts)
        return {"recon_accuracy": accuracy["field_accuracy"], "recon_row_accuracy": accuracy["row_accuracy"]}
