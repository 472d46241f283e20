"""Part IV - Where flossing meets the curse of memory (ours; chapter 12).

Modules (each public name is also importable from this package)::

    curvature     the top Hessian eigenvalue of per-member losses by Lanczos
    self_teacher  GF networks as their own teacher: sharpness and Adam's effective learning rates
    controls      matched-gain, J-only and matched-memory controls of flossed networks, paired by seed
    trade_off     networks flossed to several targets, then trained on a memory task: success and sharpness
    diagonal_task diagonal recurrences trained on a memory task in each version: accuracy and sharpness
    diagonal      complex diagonal recurrences flossed, in each parametrization and normalization
"""

from .curvature import (
    lanczos_top_eigenvalue, hvp_operator, sharpness, flatten, unflatten, LANCZOS,
)
from .self_teacher import (
    gf_self_teacher_loss, gf_readout_variance, gain, with_gain, with_memory, adam_self_teacher_run, AdamSelfTeacherRun,
    task_bits, Shrink, paired_shrink, paired_shrink_in_table, shrink_weaker, arrival_misses, KeptRunShrink, kept_run_shrink, read_kept_run,
    SHARP_BITS, ADAM_BITS, ADAM_PERTURB,
    ADAM_NOISE,
)
from .controls import (
    SelfTeacherControls, self_teacher_controls, control_comparisons, CONTROLS, FRESH_KEY,
)
from .trade_off import TradeOff, PairedSuccess, memory_trade_off
from .diagonal import (
    DiagonalPopulation, init_diagonal_population, diagonal_block_matrix, diagonal_exponents,
    floss_diagonal, diagonal_self_teacher_loss, white_noise_hessian_1d, white_noise, DIAG_INIT,
    DIAG_FLOSS, DIAG_INPUT, PARAMETRIZATIONS,
)
from .diagonal_task import (
    DiagonalTaskRun, ChosenRate, train_diagonal_on_task, diagonal_task_loss, learning_rate_grid, choose_learning_rate,
    paired_sharpness,
)

__all__ = [
    "lanczos_top_eigenvalue", "hvp_operator", "sharpness", "flatten", "unflatten", "LANCZOS",
    "gf_self_teacher_loss", "gf_readout_variance", "gain", "with_gain", "with_memory", "adam_self_teacher_run",
    "AdamSelfTeacherRun", "task_bits", "Shrink", "paired_shrink", "paired_shrink_in_table", "shrink_weaker", "arrival_misses", "KeptRunShrink", "kept_run_shrink", "read_kept_run", "SHARP_BITS", "ADAM_BITS", "ADAM_PERTURB", "ADAM_NOISE",
    "SelfTeacherControls", "self_teacher_controls", "control_comparisons", "CONTROLS", "FRESH_KEY",
    "TradeOff", "PairedSuccess", "memory_trade_off",
    "DiagonalPopulation", "init_diagonal_population", "diagonal_block_matrix",
    "diagonal_exponents", "floss_diagonal", "diagonal_self_teacher_loss",
    "white_noise_hessian_1d", "white_noise", "DIAG_INIT", "DIAG_FLOSS", "DIAG_INPUT", "PARAMETRIZATIONS",
    "DiagonalTaskRun", "ChosenRate", "train_diagonal_on_task", "diagonal_task_loss", "learning_rate_grid",
    "choose_learning_rate", "paired_sharpness",
]
