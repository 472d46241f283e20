"""Part III - Gradient flossing (Engelken 2023; chapters 8-11 and 13).

Modules (each public name is also importable from this package)::

    tanh_network  GF's tanh network, batched over members
    gated_cells   GRU and LSTM networks, exponents from the cells' Jacobians written out
    flosser       the flossing loss and step: exponents toward per-member targets by backpropagating
                  through the QR estimate
    tasks         GF's memory tasks: delayed copy, hierarchical XOR
    trainer       task training with flossing schedules, as one ensemble
    summaries     tidy summaries of schedule runs: success rates, epochs to success
    gradient_control  chapter 9's flossed ensemble and held-out drive; intervals and sign tests across seeds
    gated_fair_test   a fair test of flossing on GRU and LSTM cells: design, gradient-flow probes,
                  paired training at a chosen learning rate (chapter 11)
    torch_modules flossing for anyone's PyTorch model: exponents of torch.nn.RNN/GRU/LSTM (and
                  cells, or any step function) along their own trajectories, ModuleFlosser for
                  an ordinary training loop
"""

from .tanh_network import (
    GFNetwork, init_gf_networks,
)
from .gated_cells import (
    CellNetwork, init_cell_networks, CELL_KINDS, GATE_NAMES, cell_step, cell_tangent, gate_values,
    FoldedCellMap, ClosedFormCellMap, TANGENT_METHODS,
)
from .flosser import (
    FlossingConfig, flossing_transient, flossing_loss, floss_step, FlossStep, network_exponents,
    Flosser, FLOSS_BITS, FLOSS_BASIS, evaluate_exponents, FlossingComparison,
    compare_before_after_flossing,
)
from .tasks import (
    Task, copy_task, xor_task, tasks_with_lag, targets, score_mask, sample_bits, TaskBatch,
    sample_batch, accuracy, bce_loss, TRAIN, HELD_OUT, FLOSS,
)
from .trainer import (
    Schedule, SCHEDULES, schedule, Member, grid, TrainConfig, TrainResult, train, task_loss, first_flossing_twins,
)
from .summaries import (
    member_table, success_summary, longest_bridged, schedule_contrasts, ScheduleClaims, schedule_claims, paired_speedup, horizon_contrast, exponents_needed, needed_contrast, ComplexityClaims, complexity_claims, accuracy_curves,
    exponent_contrast, Arrival, arrival, lowered_by_network, claims_table, CLAIM_LABELS, describe_claims,
)
from .gradient_control import flossed_ensemble, held_out_drive, seed_interval, sign_test, sign_test_decidable, sign_tests_holm
from .gated_fair_test import (
    CARRY_GATE, fair_flossing, freezing_flossing, GatedProbe, delay_gradients, gated_probe, GatedDesign,
    GatedTestRun, GatedClaims, run_gated_test, gated_claims_frame, QUESTIONS, gated_verdicts,
    chosen_curves, side_by_side, describe_comparison, flossing_effect, VALIDATION, PROBE_BITS,
    VERDICT_WORDS, claim_text, QUESTION_CLAIMS, question_text,
)
from .torch_modules import (
    SUPPORTED_MODULES, state_size, pack_state, unpack_state, RecurrentModuleMap, module_exponents,
    ModuleFlosser, lstm_gate_means,
)

__all__ = [
    "flossed_ensemble", "held_out_drive", "seed_interval", "sign_test", "sign_test_decidable", "sign_tests_holm",
    "CARRY_GATE", "fair_flossing", "freezing_flossing", "GatedProbe", "delay_gradients", "gated_probe",
    "GatedDesign", "GatedTestRun", "GatedClaims", "run_gated_test", "gated_claims_frame", "QUESTIONS", "gated_verdicts", "chosen_curves", "side_by_side", "describe_comparison", "flossing_effect", "VALIDATION", "PROBE_BITS", "VERDICT_WORDS", "claim_text", "QUESTION_CLAIMS", "question_text",
    "GFNetwork", "init_gf_networks", "CellNetwork", "init_cell_networks", "CELL_KINDS",
    "GATE_NAMES", "cell_step", "cell_tangent", "gate_values", "FoldedCellMap", "ClosedFormCellMap", "TANGENT_METHODS", "FlossingConfig",
    "flossing_transient", "flossing_loss", "floss_step", "FlossStep", "network_exponents",
    "Flosser", "FLOSS_BITS", "FLOSS_BASIS", "evaluate_exponents", "FlossingComparison",
    "compare_before_after_flossing", "Task", "copy_task", "xor_task", "tasks_with_lag",
    "targets", "score_mask", "sample_bits", "TaskBatch", "sample_batch", "accuracy", "bce_loss", "TRAIN",
    "HELD_OUT", "FLOSS", "Schedule", "SCHEDULES", "schedule", "Member", "grid", "TrainConfig",
    "TrainResult", "train", "task_loss", "first_flossing_twins", "member_table", "success_summary", "longest_bridged", "schedule_contrasts", "ScheduleClaims", "schedule_claims", "paired_speedup", "horizon_contrast",
    "exponents_needed", "needed_contrast", "ComplexityClaims", "complexity_claims", "accuracy_curves", "exponent_contrast", "Arrival", "arrival", "lowered_by_network", "claims_table", "CLAIM_LABELS", "describe_claims", "SUPPORTED_MODULES", "state_size", "pack_state",
    "unpack_state", "RecurrentModuleMap", "module_exponents", "ModuleFlosser", "lstm_gate_means",
]
