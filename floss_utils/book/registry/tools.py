"""Parameters of the book's tool pages (see ``registry.base`` for the format).

These pages are notebooks like the chapters (a parameters cell, checks, results.json) but
reproduce no paper figure: they show how to use the book.
"""

from .base import SCALES, Chapter, Param, chapter

CHAPTERS: list[Chapter] = [
    chapter(
        "rerunning_and_sweeping",
        "Rerunning and sweeping",
        "no paper figure: the floss command (list, params, run, sweep locally and on Dask) on a "
        "worked sweep of Chapter 2",
        {"smoke": 0.3, "book": 1.0, "paper": 20.0},
        sweep_scale=Param("str", "scale of every run of the sweep", {"smoke": "smoke", "book": "smoke", "paper": "book"},
                          choices=SCALES),
        input_stds=Param("list[float]", "input std values s swept in Chapter 2",
                         {"smoke": [0.1, 1.0], "book": [0.1, 0.4, 0.7, 1.0],
                          "paper": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}, bounds="[0, inf)"),
        sizes=Param("list[int]", "network sizes N swept in Chapter 2", {"smoke": [40], "book": [40, 64], "paper": [64, 128, 256]}, bounds="[2, inf)"),
        workers=Param("int", "local worker processes running sweep points at once", default=2, bounds="[1, inf)"),
    ),
]
