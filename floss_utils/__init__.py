"""floss_utils: the small, tested library behind the book on gradient stability in RNNs.

Its folders mirror the book's parts; a reader of chapter N opens the folder of its part and
finds the code behind each figure in one jump. Every public name of a part is importable from
the part's package (``from floss_utils.lyapunov import lyapunov_spectrum``).

lyapunov/           Part I - Lyapunov exponents (chapters 1-2)
    maps                batched recurrent maps (tanh RNNs, linear maps, rate networks, any cell)
    estimator           Lyapunov spectra by the QR method (batched, differentiable), D_KY, entropy rate
    lapack_engine       the estimator's loop for tanh networks, one after another, as direct BLAS/LAPACK
                        calls on a CPU, with its hand-written adjoint
    theory              closed forms: mean-field largest exponent, Newman's spectrum
    random_networks     ready-made spectrum experiments on random tanh networks, sum rule
    jacobians           long-term Jacobian, gradient norms by backpropagation, growth rates

curse_of_memory/    Part II - The curse of memory (chapters 3-7)
    theory              moments of a linear recurrent unit, cross moment and its mixed derivative,
                        1-D teacher-student loss and parametrization Hessians
    inputs              AR(1), i.i.d. and paper-fitted-autocorrelation input sequences
    scans               diagonal linear recurrences, all steps at once: chunked and Toeplitz scans
    signal_propagation  Monte Carlo of linear recurrences and their sensitivities
    teacher_student_1d  parametrizations of lambda, Hessians by autograd, learning the angle with Adam
    students            member-batched students: dense / block-diagonal RNN, complex diagonal, LRU
    dense_recurrence    the dense students' time-domain recurrence with a hand-written backward (BPTT)
    teacher             the teacher linear RNN from an explicit seed
    student_training    batched ensemble training (per-member Adam, schedules, divergence detection)
    student_grids       grids of teacher-student runs (one program per architecture)
    landscape           Hessians at the optimum, eigenvector concentration, Adam's effective learning rates
    adam_record         reading an effective-learning-rate record: failed/converged runs, best rates, contrasts
    deep_stacks         deep recurrent stacks at initialization (cRNN, LRU, chrono GRU; no/layer/batch norm)
    zo_comparison       records beside ZO's published values and ZO's code's procedures (Fig. 10's account)

flossing/           Part III - Gradient flossing (chapters 8-11, 13)
    tanh_network        GF's tanh network (member-batched)
    gated_cells         GRU and LSTM networks, exponents from the cells' Jacobians written out
    flosser             the flossing loss and step
    tasks               delayed copy and hierarchical XOR tasks
    trainer             ensemble trainer with flossing schedules
    summaries           tidy summaries of schedule runs
    gradient_control    chapter 9's flossed ensemble and held-out drive; intervals and sign tests across seeds
    gated_fair_test     a fair test of flossing on GRU and LSTM cells, with gradient-flow probes (chapter 11)
    torch_modules       flossing for anyone's PyTorch model: torch.nn.RNN/GRU/LSTM, cells, any step

synthesis/          Part IV - Where the two papers meet (chapter 12)
    curvature           top Hessian eigenvalue by Lanczos, for whole populations
    self_teacher        GF networks as their own teacher: sharpness, Adam's effective learning rates
    controls            matched-gain, J-only and matched-memory controls, paired by seed
    trade_off           flossed to several targets, then trained on a memory task: success and sharpness
    diagonal            complex diagonal recurrences flossed, self-teacher losses per parametrization
    diagonal_task       diagonal recurrences trained on a memory task in each version: accuracy, sharpness

book/               The book's machinery
    registry            the chapters and their parameters (types, bounds, presets, constraints)
    parameters          the one validator of chapter parameters; -p and --grid parsing
    chapters            what a chapter calls: configure, check, glue_number, write_results, write_table
    runs, sweeps        one run into a directory with its record; sweeps (local or Dask)
    kernel_watch        a run's kernel: stderr logged, peak memory sampled, a death explained
    records             long runs (the sources' configurations) committed with provenance
    cli                 the ``floss`` command: list, params, run, sweep, build
    plotting            the shared figure theme
    reproducibility     the machine stamp of executed notebooks; number masks for nbval elsewhere
    student             the student edition (solutions removed)

Shared by every part (they import nothing else of the package):
    common              device/dtype resolution, seeded random streams, the member-batched base,
                        statistics of rates and means (Wilson, Fisher, bootstrap)
    optim               the one Adam update, batched over members (per-member lr and clipping)
    progress            how far a long loop is, for a stopped run to be extrapolated (no torch)

Imports flow one way: common, optim, progress -> lyapunov -> curse_of_memory -> flossing ->
synthesis, and book imports only common, progress and its own modules.
"""

import os

# MKL's AVX2 code branch, before any torch computation: why, in floss_utils.book.reproducibility
os.environ.setdefault("MKL_CBWR", "AVX2")

__version__ = "0.1.0"
