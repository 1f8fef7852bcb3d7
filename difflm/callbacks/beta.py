"""Beta backtracking (TabSyn, used by DiffLM): start at beta_max; whenever the validation reconstruction loss
has not improved for `patience` evaluations, multiply beta by `decay`, never going below beta_min."""

from dataclasses import asdict, dataclass

import lightning as L


@dataclass
class BetaState:
    beta: float
    best: float = float("inf")
    bad_evals: int = 0


def next_beta(state, val_loss, decay, patience, beta_min):
    """The schedule as a pure function: the state after one evaluation with loss `val_loss`."""
    if val_loss < state.best:
        return BetaState(state.beta, val_loss, 0)
    bad = state.bad_evals + 1
    if bad >= patience:
        return BetaState(max(state.beta * decay, beta_min), state.best, 0)
    return BetaState(state.beta, state.best, bad)


class BetaBacktracking(L.Callback):
    def __init__(self, beta_max, beta_min, decay, patience, monitor="val/recon"):
        self.state = BetaState(beta_max)
        self.beta_min, self.decay, self.patience, self.monitor = beta_min, decay, patience, monitor

    def on_fit_start(self, trainer, pl_module):
        pl_module.beta = self.state.beta

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[self.monitor])
        self.state = next_beta(self.state, loss, self.decay, self.patience, self.beta_min)
        pl_module.beta = self.state.beta

    def state_dict(self):
        return asdict(self.state)

    def load_state_dict(self, state_dict):
        self.state = BetaState(**state_dict)
