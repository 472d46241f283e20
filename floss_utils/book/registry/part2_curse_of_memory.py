"""Parameters of the chapters of Part II, The curse of memory (Zucchet & Orvieto 2024).

See ``registry.base`` for the format. Chapters 3-4 (one linear recurrent unit) come first;
the multi-dimensional chapters 5-7 follow in reading order.
"""

from .base import Chapter, Constraint, Param, at_most, chapter

CHAPTERS: list[Chapter] = [
    chapter(
        "03_signal_propagation",
        "Signal propagation in a linear recurrence",
        "Zucchet & Orvieto (2024) Fig. 1A and Fig. 2A-B: E[h^2] and E[(dh/dlambda)^2] vs lambda and rho, "
        "complex lambda, normalization and reparametrization; closed forms vs Monte Carlo",
        {"smoke": 0.2, "book": 0.5, "paper": 5.0},
        lambdas=Param("list[float]", "recurrence values lambda simulated by Monte Carlo (markers)",
                      {"smoke": [0.5, 0.9, 0.99], "book": [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99],
                       "paper": [0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]}, bounds="(-1, 1)"),
        rhos=Param("list[float]", "input autocorrelations rho in [0, 1): R_x(Delta) is rho^|Delta|",
                   {"smoke": [0.0, 0.9], "book": [0.0, 0.5, 0.9, 0.99], "paper": [0.0, 0.5, 0.9, 0.99]}, bounds="[0, 1)"),
        complex_nu=Param("float", "modulus nu of the complex recurrence lambda, nu e^{i theta}",
                         {"smoke": 0.99, "book": 0.99, "paper": 0.99}, bounds="(0, 1)"),
        complex_thetas=Param("list[float]", "angles theta (rad) of the complex recurrence simulated by Monte Carlo",
                             {"smoke": [0.01, 0.3, 1.5], "book": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
                              "paper": [0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.6, 1.0, 2.0, 3.0]}, bounds="[0, 3.1416]"),
        n_samples=Param("int", "independent input sequences per (lambda, rho)",
                        {"smoke": 400, "book": 2000, "paper": 20000}, bounds="[2, inf)"),
        burn_in=Param("int", "steps discarded before averaging (the transient of d_lambda h)",
                      {"smoke": 1500, "book": 1500, "paper": 4000}, bounds="[0, inf)"),
        window=Param("int", "steps averaged per sequence after the burn-in",
                     {"smoke": 100, "book": 400, "paper": 2000}, bounds="[1, inf)"),
    ),
    chapter(
        "04_teacher_student_1d",
        "One-dimensional teacher-student",
        "Zucchet & Orvieto (2024) Fig. 1B-C (loss landscapes as lambda* -> 1), Fig. 6 (Hessians of the "
        "parametrizations) and Fig. 7 (learning the angle with Adam, done right)",
        {"smoke": 0.2, "book": 1.6, "paper": 1.6},
        gaps=Param("list[float]", "teacher gaps 1 - lambda* of the loss landscapes",
                   {"smoke": [0.01, 0.16, 0.64], "book": [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64],
                    "paper": [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64]}, bounds="(0, 1)"),
        grid_points=Param("int", "points of each loss-landscape curve", {"smoke": 300, "book": 10000, "paper": 10000}, bounds="[2, inf)"),
        mc_samples=Param("int", "sequences of the direct teacher-student simulation checking the loss",
                         {"smoke": 2000, "book": 50000, "paper": 50000}, bounds="[2, inf)"),
        hessian_points=Param("int", "values of nu* at which each parametrization's Hessian is computed",
                             {"smoke": 8, "book": 200, "paper": 200}, bounds="[2, inf)"),
        theta_star=Param("float", "teacher angle theta* (rad) of the Hessians and of the angle learning",
                         {"smoke": 0.0314159, "book": 0.0314159, "paper": 0.0314159}, bounds="(0, 3.1416]"),
        adam_steps=Param("int", "Adam steps when learning the angle (Fig. 7)",
                         {"smoke": 1000, "book": 50000, "paper": 50000}, bounds="[1, inf)"),
        adam_lr=Param("float", "Adam learning rate when learning the angle", {"smoke": 1e-3, "book": 1e-3, "paper": 1e-3}, bounds="(0, inf)"),
    ),
    chapter(
        "05_linear_rnn_vs_lru",
        "Linear RNN vs LRU",
        "Zucchet & Orvieto (2024) Fig. 3A (loss vs teacher memory nu0), Fig. 3B (ablation at nu0 = 0.99), "
        "Fig. 10 (angle range) and Fig. 11 (number of heads): multi-dimensional teacher-student",
        {"smoke": 0.2, "book": 2.6, "paper": 60.0},
        constraints=[
            Constraint("every number of heads divides hidden", ("heads", "hidden"),
                       lambda v: all(v["hidden"] % h == 0 for h in v["heads"])),
            Constraint("hidden is even (the ablation splits it into 2x2 blocks)", ("hidden",),
                       lambda v: v["hidden"] % 2 == 0),
            Constraint("nu0s includes 0.99 (the memory of the ablation, angle and heads figures and of the checks)",
                       ("nu0s",), lambda v: 0.99 in v["nu0s"]),
            at_most("final_window", "steps"),
        ],
        teacher_seed=Param("int", "seed of the 10-unit teachers (one fixed seed for every run, as in ZO)", default=0, bounds="[0, inf)"),
        hidden=Param("int", "student hidden units n", {"smoke": 16, "book": 32, "paper": 64}, bounds="[2, inf)"),
        # book: T 300 (ZO's), 2000 steps, 3 seeds and grids that bracket every best rate since 2026-12-05 (issue 14 item 2).
        # Trials on 2 cores (run_grid alone): T 100, 1000 steps, 2 seeds: 25 s, 12 of 20 best rates on a grid edge, the
        # dense RNN at nu0 0.99 undertrained (0.82); T 100, 3000 steps, 4 seeds: 129 s, the dense RNN learns (2e-3, only
        # 27x the LRU; at theta0 0.03 below the complex diagonal RNN): with sequences no longer than the teacher's memory
        # (1 / (1 - 0.99) = 100 steps) the batch loss hides the slow mode. T 300, 2000 steps, 3 seeds: 132 s, the
        # published ordering of Figs. 3A, 3B, 10 and 11, three dense best rates on the grid's lower edge (1e-4 added)
        seq_len=Param("int", "sequence length T", {"smoke": 60, "book": 300, "paper": 300}, bounds="[1, inf)"),
        batch_size=Param("int", "sequences per Adam step", {"smoke": 32, "book": 64, "paper": 128}, bounds="[1, inf)"),
        steps=Param("int", "Adam steps (cosine decay from the peak learning rate to 1e-7)",
                    {"smoke": 300, "book": 2000, "paper": 10000}, bounds="[1, inf)"),
        final_window=Param("int", "last steps averaged into the final training loss",
                           {"smoke": 20, "book": 100, "paper": 100}, bounds="[1, inf)"),
        n_seeds=Param("int", "seeds per configuration and learning rate (student init and input stream)",
                      {"smoke": 1, "book": 3, "paper": 10}, bounds="[1, inf)"),
        nu0s=Param("list[float]", "teacher memories nu0 (smallest eigenvalue modulus) of Fig. 3A",
                   {"smoke": [0.36, 0.99], "book": [0.36, 0.84, 0.96, 0.99],
                    "paper": [0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99]}, bounds="[0, 1)"),
        max_phases=Param("list[float]", "angle ranges theta0 (rad) of teacher and student, Fig. 10 (first: the default)",
                         {"smoke": [3.14], "book": [3.14, 0.314, 0.0314],
                          "paper": [3.14, 0.993, 0.314, 0.0993, 0.0314]}, bounds="(0, 3.1416]"),
        heads=Param("list[int]", "numbers of diagonal blocks of the dense RNN, Fig. 11 (must divide hidden)",
                    {"smoke": [1, 8], "book": [1, 2, 8, 16], "paper": [1, 2, 4, 8, 16, 32]}, bounds="[1, inf)"),
        lrs_rnn=Param("list[float]", "learning-rate grid of the dense and block-diagonal RNNs",
                      {"smoke": [1e-2, 3.2e-3], "book": [3.2e-2, 1e-2, 3.2e-3, 1e-3, 3.2e-4, 1e-4],
                       "paper": [1e-2, 3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5]}, bounds="(0, inf)"),
        lrs_lru=Param("list[float]", "learning-rate grid of the LRU",
                      {"smoke": [0.1, 0.032], "book": [1.0, 0.32, 0.1, 0.032, 0.01],
                       "paper": [0.32, 0.1, 0.032, 0.01, 0.0032]}, bounds="(0, inf)"),
        lrs_complex=Param("list[float]", "learning-rate grid of the complex diagonal RNNs (with and without gamma)",
                          {"smoke": [0.032, 0.01], "book": [0.032, 0.01, 0.0032, 0.001],
                           "paper": [0.1, 0.032, 0.01, 0.0032, 0.001, 3.2e-4, 1e-4]}, bounds="(0, inf)"),
        min_ratio=Param("float", "claim threshold: dense RNN / LRU and dense RNN / each structured variant at nu0 0.99, "
                        "dense growth over nu0, dense growth / LRU growth (Figs. 3A, 3B); 100 (two decades): the weakest "
                        "reading of the ~1e4 of ZO Fig. 3B; smoke: direction only",
                        {"smoke": 5.0, "book": 100.0, "paper": 100.0}, bounds="[1, inf)"),
        min_gap=Param("float", "claim threshold: dense RNN / each diagonal student at every angle range and single head / "
                      "smallest heads (Figs. 10, 11, the appendix figures); 10 (one decade): the weakest reading of their "
                      "3-4 decades; smoke: direction only",
                      {"smoke": 2.0, "book": 10.0, "paper": 10.0}, bounds="[1, inf)"),
    ),
    chapter(
        "06_loss_landscape_and_adam",
        "The loss landscape at the optimum and Adam",
        "Zucchet & Orvieto (2024) Fig. 4 (and Fig. 9): full Hessians at the optimum, spectra and top eigenvectors "
        "of dense and complex diagonal students; Adam's effective learning rates after training",
        {"smoke": 0.2, "book": 3.5, "paper": 3.5},
        n_teachers=Param("int", "4-unit teachers (seeds seed, seed+1, ...) whose students' Hessians are computed",
                         {"smoke": 3, "book": 8, "paper": 8}, bounds="[1, inf)"),
        hessian_batch=Param("int", "sequences in the fixed batch defining the loss of the Hessians",
                            {"smoke": 64, "book": 64, "paper": 64}, bounds="[1, inf)"),
        hessian_seq_len=Param("int", "sequence length T of the Hessians' batch", {"smoke": 300, "book": 300, "paper": 300}, bounds="[1, inf)"),
        adam_teacher_nu0=Param("float", "smallest eigenvalue modulus of the 10-unit teacher of the Adam runs",
                               {"smoke": 0.99, "book": 0.99, "paper": 0.99}, bounds="[0, 1)"),
        adam_hidden=Param("int", "hidden units of the students trained with Adam", {"smoke": 8, "book": 64, "paper": 64}, bounds="[1, inf)"),
        # book = paper since 2026-12-07 (issue 19: ZO's configuration fits the chapter's budget, 115 s on the 2-core AMD CPU)
        adam_seeds=Param("int", "student seeds per architecture in the Adam runs (ZO: one)", {"smoke": 1, "book": 5, "paper": 5}, bounds="[1, inf)"),
        adam_steps=Param("int", "Adam steps before the effective learning rates are read (ZO: 10 000)", {"smoke": 100, "book": 10000, "paper": 10000}, bounds="[1, inf)"),
        adam_batch=Param("int", "batch size of the Adam runs (ZO: 128)", {"smoke": 16, "book": 128, "paper": 128}, bounds="[1, inf)"),
        adam_lr=Param("float", "Adam's constant learning rate", {"smoke": 1e-3, "book": 1e-3, "paper": 1e-3}, bounds="(0, inf)"),
        adam_s4d=Param("bool", "also train the diagonal S4 of ZO's Fig. 9 in the Adam runs", {"smoke": True, "book": True, "paper": True}),
    ),
    chapter(
        "07_deep_networks_at_init",
        "Deep recurrent networks at initialization",
        "Zucchet & Orvieto (2024) Fig. 5 (and Fig. 13): activity and gradient magnitudes per layer and parameter "
        "group vs memory for complex diagonal, LRU and GRU layers, with no, layer or batch norm",
        {"smoke": 0.2, "book": 1.2, "paper": 3.0},
        dtype=Param("str", "floating-point precision of the numerics", default="float32", choices=("float32", "float64")),
        memories=Param("list[float]", "characteristic times T_char (T_min is T_char, T_max is 2 T_char, |lambda| in [1-1/T_min, 1-1/T_max])",
                       {"smoke": [1.0, 10.0, 100.0], "book": [1.0, 3.16228, 10.0, 31.6228, 100.0],
                        "paper": [1.0, 3.16228, 10.0, 31.6228, 100.0]}, bounds="[1, inf)"),
        n_seeds=Param("int", "network seeds per memory (all memories share each seed's random draws)",
                      {"smoke": 1, "book": 2, "paper": 4}, bounds="[1, inf)"),
        d_input=Param("int", "input/output width (768: BERT embeddings)", {"smoke": 48, "book": 192, "paper": 768}, bounds="[1, inf)"),
        d_model=Param("int", "model width and recurrent state size", {"smoke": 16, "book": 64, "paper": 256}, bounds="[1, inf)"),
        n_blocks=Param("int", "recurrent blocks", {"smoke": 4, "book": 4, "paper": 4}, bounds="[1, inf)"),
        batch=Param("int", "input sequences per network", {"smoke": 4, "book": 8, "paper": 16}, bounds="[2, inf)"),
        seq_len=Param("int", "sequence length", {"smoke": 400, "book": 512, "paper": 512}, bounds="[1, inf)"),
    ),
]
