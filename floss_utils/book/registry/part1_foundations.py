"""Parameters of the chapters of Part I, Foundations (see ``registry.base`` for the format)."""

from .base import Chapter, Param, at_most, chapter

CHAPTERS: list[Chapter] = [
    chapter(
        "01_lyapunov_spectra",
        "Lyapunov spectra of recurrent networks",
        "Engelken, Wolf & Abbott (2023): extensive chaos, dimension below N, input reduces entropy rate and "
        "dimension, on the discrete-time map; mean-field and Newman validations",
        {"smoke": 0.3, "book": 2.0, "paper": 60.0},
        sizes=Param("list[int]", "network sizes N for the mean-field comparison of lambda_max",
                    {"smoke": [30, 60], "book": [100, 400], "paper": [100, 400, 1000, 2000]}, bounds="[2, inf)"),
        mf_seeds=Param("int", "coupling draws per size for the mean-field comparison of lambda_max (one exponent per "
                              "network; at paper scale a draw of the largest networks costs tens of minutes on 2 CPU cores)",
                       {"smoke": 2, "book": 3, "paper": 3}, bounds="[2, inf)"),
        gains=Param("list[float]", "coupling gains g swept for lambda_max, dimension and entropy",
                    {"smoke": [0.5, 1.5, 2.5, 4.0],
                     "book": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0],
                     "paper": [round(0.5 + 0.125 * i, 3) for i in range(29)]}, bounds="(0, inf)"),
        steps=Param("int", "steps averaged over per spectrum (after the transient)",
                    {"smoke": 200, "book": 2000, "paper": 10000}, bounds="[1, inf)"),
        transient=Param("int", "steps discarded before averaging",
                        {"smoke": 50, "book": 300, "paper": 1000}, bounds="[0, inf)"),
        n_spectrum=Param("int", "N of the networks whose full spectra are shown",
                         {"smoke": 30, "book": 100, "paper": 400}, bounds="[2, inf)"),
        collapse_sizes=Param("list[int]", "sizes N whose spectra are compared against i/N",
                             {"smoke": [30, 60], "book": [50, 100, 200], "paper": [100, 200, 400, 800]}, bounds="[2, inf)"),
        collapse_gain=Param("float", "gain g of the collapse figure", {"smoke": 3.0, "book": 3.0, "paper": 3.0}, bounds="(0, inf)"),
        input_stds=Param("list[float]", "std s of the white input drive (per unit, per step)",
                         {"smoke": [0.0, 1.0], "book": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0],
                          "paper": [0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]}, bounds="[0, inf)"),
        input_gain=Param("float", "gain g of the input-fluctuation figure", {"smoke": 3.0, "book": 3.0, "paper": 3.0}, bounds="(0, inf)"),
        newman_n=Param("int", "N of the Gaussian-product check", {"smoke": 10, "book": 40, "paper": 100}, bounds="[2, inf)"),
        newman_steps=Param("int", "steps of the Gaussian-product check",
                           {"smoke": 1000, "book": 20000, "paper": 100000}, bounds="[1, inf)"),
    ),
    chapter(
        "02_exponents_to_gradients",
        "From exponents to gradients",
        "Oseledets' theorem made visible: long-term Jacobian singular values, gradient norm and "
        "condition number vs horizon (the link between exponents and gradients that GF builds on)",
        {"smoke": 0.2, "book": 1.0, "paper": 10.0},
        constraints=[at_most("k", "n_units")],
        n_units=Param("int", "network size N", {"smoke": 40, "book": 64, "paper": 256}, bounds="[2, inf)"),
        gains=Param("list[float]", "gains of the stable, edge-of-chaos and chaotic networks",
                    {"smoke": [0.5, 1.0, 2.5], "book": [0.5, 1.0, 2.5], "paper": [0.5, 1.0, 2.5]}, bounds="(0, inf)"),
        input_std=Param("float", "std s of the white input drive", {"smoke": 0.1, "book": 0.1, "paper": 0.1}, bounds="[0, inf)"),
        horizon=Param("int", "longest horizon t of the long-term Jacobian (steps)",
                      {"smoke": 60, "book": 120, "paper": 300}, bounds="[1, inf)"),
        k=Param("int", "number of tangent directions (exponents, singular values)",
                {"smoke": 6, "book": 8, "paper": 16}, bounds="[1, inf)"),
        steps=Param("int", "steps of the QR estimate of the exponents", {"smoke": 300, "book": 4000, "paper": 20000}, bounds="[1, inf)"),
        transient=Param("int", "steps discarded before everything else", {"smoke": 50, "book": 200, "paper": 1000}, bounds="[0, inf)"),
        n_seeds=Param("int", "networks (seeds) per gain", {"smoke": 4, "book": 8, "paper": 32}, bounds="[1, inf)"),
    ),
]
