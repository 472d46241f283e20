"""Parameters of the chapters of Part II, The curse of memory (Zucchet & Orvieto 2024).

See ``registry.base`` for the format. Chapters 3-4 (one linear recurrent unit) come first;
the multi-dimensional chapters 5-7 follow in reading order.
"""

from .base import Chapter, Param, chapter

CHAPTERS: list[Chapter] = [
    chapter(
        "03_signal_propagation",
        "Signal propagation in a linear recurrence",
        "Zucchet & Orvieto (2024) Fig. 1A and Fig. 2A-B: E[h^2] and E[(dh/dlambda)^2] vs lambda and rho, "
        "complex lambda, normalization and reparametrization; closed forms vs Monte Carlo",
        {"smoke": 0.2, "book": 0.5, "paper": 5.0},
        lambdas=Param("list[float]", "recurrence values lambda simulated by Monte Carlo (markers)",
                      {"smoke": [0.5, 0.9, 0.99], "book": [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99],
                       "paper": [0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]}),
        rhos=Param("list[float]", "input autocorrelations rho (R_x(Delta) = rho^|Delta|) in [0, 1)",
                   {"smoke": [0.0, 0.9], "book": [0.0, 0.5, 0.9, 0.99], "paper": [0.0, 0.5, 0.9, 0.99]}),
        complex_nu=Param("float", "modulus nu of the complex recurrence lambda = nu e^{i theta}",
                         {"smoke": 0.99, "book": 0.99, "paper": 0.99}),
        complex_thetas=Param("list[float]", "angles theta (rad) of the complex recurrence simulated by Monte Carlo",
                             {"smoke": [0.01, 0.3, 1.5], "book": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
                              "paper": [0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.6, 1.0, 2.0, 3.0]}),
        n_samples=Param("int", "independent input sequences per (lambda, rho)",
                        {"smoke": 400, "book": 2000, "paper": 20000}),
        burn_in=Param("int", "steps discarded before averaging (the transient of d_lambda h)",
                      {"smoke": 1500, "book": 1500, "paper": 4000}),
        window=Param("int", "steps averaged per sequence after the burn-in",
                     {"smoke": 100, "book": 400, "paper": 2000}),
    ),
    chapter(
        "04_teacher_student_1d",
        "One-dimensional teacher-student",
        "Zucchet & Orvieto (2024) Fig. 1B-C (loss landscapes as lambda* -> 1), Fig. 6 (Hessians of the "
        "parametrizations) and Fig. 7 (learning the angle with Adam, done right)",
        {"smoke": 0.2, "book": 0.7, "paper": 2.0},
        gaps=Param("list[float]", "teacher gaps 1 - lambda* of the loss landscapes",
                   {"smoke": [0.01, 0.16, 0.64], "book": [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64],
                    "paper": [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64]}),
        grid_points=Param("int", "points of each loss-landscape curve", {"smoke": 300, "book": 3000, "paper": 10000}),
        mc_samples=Param("int", "sequences of the direct teacher-student simulation checking the loss",
                         {"smoke": 2000, "book": 8000, "paper": 50000}),
        hessian_points=Param("int", "values of nu* at which each parametrization's Hessian is computed",
                             {"smoke": 8, "book": 40, "paper": 200}),
        theta_star=Param("float", "teacher angle theta* (rad) of the Hessians and of the angle learning",
                         {"smoke": 0.0314159, "book": 0.0314159, "paper": 0.0314159}),
        adam_steps=Param("int", "Adam steps when learning the angle (Fig. 7)",
                         {"smoke": 1000, "book": 20000, "paper": 50000}),
        adam_lr=Param("float", "Adam learning rate when learning the angle", {"smoke": 1e-3, "book": 1e-3, "paper": 1e-3}),
    ),
]
