from difflm.callbacks.beta import BetaState, next_beta


def run_schedule(losses, beta_max=0.1, decay=0.7, patience=2, beta_min=1e-3):
    state, betas = BetaState(beta_max), []
    for loss in losses:
        state = next_beta(state, loss, decay, patience, beta_min)
        betas.append(round(state.beta, 6))
    return betas


def test_beta_decays_after_patience_evaluations_without_improvement():
    assert run_schedule([5, 4, 4.5, 4.2, 3, 3.1, 3.2]) == [0.1, 0.1, 0.1, 0.07, 0.07, 0.07, 0.049]


def test_beta_never_goes_below_its_floor():
    assert run_schedule([1.0] * 60)[-1] == 1e-3


def test_improvement_resets_the_count():
    assert run_schedule([5, 6, 4, 6, 3, 6]) == [0.1] * 6
