"""floss_utils: the small, tested library behind the book on gradient stability in RNNs.

Modules, by part of the book (each chapter's code is one jump away):

Part I — Lyapunov spectra
    dynamics            batched recurrent maps (tanh RNNs, linear maps, rate networks, any cell)
    lyapunov            Lyapunov spectra by the QR method (batched, differentiable), D_KY, entropy rate
    theory              closed forms: mean-field largest exponent, Newman's spectrum (and Part II below)
    spectra             ready-made spectrum experiments on random tanh networks, sum rule
    jacobians           long-term Jacobian, gradient norms by backpropagation, growth rates

Part II — The curse of memory
    theory              moments of a linear recurrent unit, cross moment and its mixed derivative,
                        1-D teacher-student loss and parametrization Hessians
    inputs              AR(1), i.i.d. and paper-fitted-autocorrelation input sequences
    signal_propagation  Monte Carlo of linear recurrences and their sensitivities
    teacher_student_1d  parametrizations of lambda, Hessians by autograd, learning the angle with Adam
    models              member-batched students: dense / block-diagonal RNN, complex diagonal, LRU
    dense_scan          the dense students' time-domain recurrence with a hand-written backward (BPTT)
    scans               diagonal linear recurrences, all steps at once: chunked and Toeplitz scans
    teacher             the teacher linear RNN from an explicit seed
    training            batched ensemble training (per-member Adam, schedules, divergence detection)
    teacher_student     grids of teacher-student runs (one program per architecture)
    landscape           Hessians at the optimum, eigenvector concentration, Adam's effective learning rates
    deep                deep recurrent stacks at initialization (cRNN, LRU, chrono GRU; no/layer/batch norm)

Part III — Gradient flossing
    networks, tasks     GF networks (member-batched); delayed copy and hierarchical XOR tasks
    flossing            the flossing loss and step
    flossing_training   ensemble trainer with flossing schedules
    batched_adam        per-member Adam with per-member gradient clipping
    cells               GRU and LSTM networks, exponents by forward-mode JVPs
    flossing_summary    tidy summaries of schedule runs

Part IV — Synthesis
    synthesis           sharpness by Lanczos, flossing diagonal recurrences, self-teacher losses

The book itself
    chapters, registry  chapter parameters: registry, validation, scale presets, results.json
    runner, cli         the ``floss`` command: list, params, run, sweep (local or Dask), build
    student             the student edition (solutions removed)
    plotting            the shared figure theme
    reproducibility     the machine stamp of executed notebooks; number masks for nbval elsewhere
"""

__version__ = "0.1.0"
