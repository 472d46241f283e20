"""Part II - The curse of memory (Zucchet & Orvieto 2024; chapters 3-7).

Modules (each public name is also importable from this package)::

    theory              closed forms for one linear recurrent unit: moments, cross moment and its mixed
                        derivative, the 1-D teacher-student loss and parametrization Hessians
    inputs              AR(1), i.i.d. and paper-fitted-autocorrelation input sequences
    scans               diagonal linear recurrences, all steps at once: chunked and Toeplitz scans, with
                        their reference loops
    signal_propagation  Monte Carlo of linear recurrences and their sensitivities
    teacher_student_1d  the 1-D teacher-student problem: parametrizations of lambda, Hessians by
                        autograd, learning the angle with Adam
    students            member-batched students: dense / block-diagonal linear RNN, complex diagonal
                        RNN, LRU, diagonal S4 (S4D)
    dense_recurrence    the dense students' time-domain recurrence with a hand-written backward (BPTT)
    teacher             the multi-dimensional teacher linear RNN from an explicit seed
    student_training    ensemble training as one tensor program (per-member learning rates, schedules,
                        divergence), exact quadratic-form loss
    student_grids       grids of teacher-student runs (configurations x learning rates x seeds), best
                        learning rate
    landscape           Hessians at the optimum, eigenvector concentration, Adam's effective learning
                        rates
    adam_record         reading a record of effective learning rates: failed and converged runs, best
                        rates, the contrast per learning rate
    deep_stacks         deep recurrent stacks at initialization (complex diagonal, LRU, chrono GRU;
                        no/layer/batch norm)
    zo_comparison       records set beside ZO's published values and ZO's code's procedures: agreement
                        factor, grids, both seed averagings, spread over teachers, seed rank test
"""

from .theory import (
    cross_moment, cross_moment_mixed_derivative, mixed_derivative_fd, zo_notebook_mixed_derivative,
    hidden_second_moment,
    sensitivity_second_moment, memory_sensitivity_gain, complex_moments, normalized_second_moment,
    reparametrized_sensitivity, teacher_student_loss, teacher_student_hessian_at_optimum,
    parametrization_hessian_closed_form, MAGNITUDE_PARAMETRIZATIONS, ANGLE_PARAMETRIZATIONS,
)
from .inputs import (
    ar1_inputs, iid_inputs, fitted_autocorrelation_inputs, fitted_autocorrelation, structured_embedding_inputs, StructuredInputs,
    FITTED_WHITE_VARIANCE, FITTED_AR1_VARIANCE, FITTED_AR1_COEFFICIENT,
)
from .scans import (
    diagonal_scan, diagonal_recurrence, linear_scan, linear_scan_loop, lower_toeplitz,
)
from .signal_propagation import (
    MomentEstimate, simulate_moments, simulate_teacher_student_loss,
)
from .teacher_student_1d import (
    PARAMETRIZATION_KINDS, magnitude, magnitude_inverse, angle, angle_inverse, opt_angle_scale,
    parametrized_lambda, parametrization_hessian, AngleTraining, learn_angle,
    loss_curvature_at_optimum,
)
from .students import (
    MAGNITUDES, ANGLES, Student, DenseRNN, ComplexDiagonalRNN, LRU, S4D, causal_convolution,
    ring_init, lambda_from_params, params_from_lambda, shaped_recurrent_matrix,
    shape_eigenvalues, REAL_EIGENVALUE_RULES,
)
from .dense_recurrence import (
    Workspace, augmented_matrix, dense_scan, reference_scan, fast_path_applies,
)
from .teacher import (
    Teacher, make_teacher, teacher_data,
)
from .student_training import (
    EnsembleResult, train_ensemble, lagged_gram, quadratic_loss, fft_loss, expected_loss,
    kernel_error, cosine_lr, best_learning_rates,
)
from .student_grids import (
    ARCHITECTURES, ZO_FIG10_GRIDS, CONFIG_KEYS, RunConfig, FigureConfigs, figure_configs, run_grid, run_grid_per_teacher, rows_of, best_run, off_grid, beyond_edge, at_learning_rates, runs_at_best, bracket,
    best_at_grid_edge, missing_learning_rates, merge_runs,
)
from .landscape import (
    FlatLayout, flat_parameters, loss_hessian, residual_jacobian, gauss_newton, hessian_eigen, numerical_rank,
    participation_ratio, eigenvector_concentration, top_mass, group_mass,
    make_landscape_teacher, student_at_teacher, MemoryControl, memory_control, mse_loss_fn, AdamRun, train_keep_adam_state,
    effective_learning_rates, adam_ceiling, effective_lr_contrast, eigenvalue_condition_numbers,
)
from .adam_record import (
    classify_runs, converged, best_rates, slowest_reported, best_rate_table, contrast_by_rate, PairedSettingContrast,
    paired_setting_contrast,
)
from .deep_stacks import (
    LAYERS, NORMS, memory_ring, chrono_bias, DeepRecurrentStack, next_input_loss, last_step_loss, LOSSES, INPUTS, DeepStats,
    deep_signal_propagation, memory_means, group_gradient, stats_table, growth_with_memory, fig5_directions, variant_growth, ZO_FIG5_GROWTH,
    ZO_FIG5_FACTOR, published_growth_table, zo_fig5_published, outside_text,
)
from .zo_comparison import (
    within_factor, on_learning_rates, restrict_to_protocol, both_averagings, teacher_spread, seed_rank_test, rank_among,
    runs_array, teacher_separation, separation_test, same_member_factors, log_spread_test, best_over_rates,
    teacher_record_summary, teachers_against_seeds, ordinal,
)

__all__ = [
    "cross_moment", "cross_moment_mixed_derivative", "mixed_derivative_fd", "zo_notebook_mixed_derivative",
    "hidden_second_moment",
    "sensitivity_second_moment", "memory_sensitivity_gain", "complex_moments", "normalized_second_moment",
    "reparametrized_sensitivity", "teacher_student_loss", "teacher_student_hessian_at_optimum",
    "parametrization_hessian_closed_form", "MAGNITUDE_PARAMETRIZATIONS",
    "ANGLE_PARAMETRIZATIONS", "ar1_inputs", "iid_inputs", "fitted_autocorrelation_inputs", "structured_embedding_inputs", "StructuredInputs",
    "fitted_autocorrelation", "FITTED_WHITE_VARIANCE", "FITTED_AR1_VARIANCE",
    "FITTED_AR1_COEFFICIENT", "diagonal_scan", "diagonal_recurrence", "linear_scan", "lower_toeplitz",
    "linear_scan_loop", "MomentEstimate", "simulate_moments", "simulate_teacher_student_loss",
    "PARAMETRIZATION_KINDS", "magnitude", "magnitude_inverse", "angle", "angle_inverse",
    "opt_angle_scale", "parametrized_lambda", "parametrization_hessian", "AngleTraining",
    "learn_angle", "loss_curvature_at_optimum", "MAGNITUDES", "ANGLES", "Student", "DenseRNN",
    "ComplexDiagonalRNN", "LRU", "S4D", "causal_convolution", "ring_init", "lambda_from_params",
    "params_from_lambda", "shaped_recurrent_matrix", "shape_eigenvalues", "REAL_EIGENVALUE_RULES", "Workspace",
    "augmented_matrix", "dense_scan", "reference_scan", "fast_path_applies", "Teacher",
    "make_teacher", "teacher_data", "EnsembleResult", "train_ensemble", "lagged_gram",
    "quadratic_loss", "fft_loss", "expected_loss", "kernel_error", "cosine_lr",
    "best_learning_rates", "ARCHITECTURES", "ZO_FIG10_GRIDS", "CONFIG_KEYS", "RunConfig", "FigureConfigs",
    "figure_configs", "run_grid", "run_grid_per_teacher", "rows_of", "best_run", "off_grid", "beyond_edge", "at_learning_rates", "runs_at_best", "bracket", "best_at_grid_edge", "missing_learning_rates", "merge_runs", "FlatLayout",
    "flat_parameters", "loss_hessian", "residual_jacobian", "gauss_newton", "hessian_eigen", "numerical_rank",
    "participation_ratio", "eigenvector_concentration", "top_mass", "group_mass",
    "make_landscape_teacher", "student_at_teacher", "MemoryControl", "memory_control", "mse_loss_fn", "AdamRun",
    "train_keep_adam_state", "effective_learning_rates", "adam_ceiling", "effective_lr_contrast", "eigenvalue_condition_numbers",
    "classify_runs", "converged", "best_rates", "slowest_reported", "best_rate_table", "contrast_by_rate", "PairedSettingContrast",
    "paired_setting_contrast", "LAYERS", "NORMS",
    "memory_ring", "chrono_bias", "DeepRecurrentStack", "next_input_loss", "last_step_loss", "LOSSES", "INPUTS", "DeepStats",
    "deep_signal_propagation", "memory_means", "group_gradient", "stats_table",
    "growth_with_memory", "fig5_directions", "variant_growth", "ZO_FIG5_GROWTH", "ZO_FIG5_FACTOR", "published_growth_table", "zo_fig5_published", "outside_text",
    "within_factor", "on_learning_rates", "restrict_to_protocol", "both_averagings", "teacher_spread", "seed_rank_test",
    "rank_among", "runs_array", "teacher_separation", "separation_test", "same_member_factors", "log_spread_test",
    "best_over_rates", "teacher_record_summary", "teachers_against_seeds", "ordinal",
]
