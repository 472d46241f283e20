"""The book's machinery: chapter parameters, runs, sweeps, the ``floss`` command, figures.

Modules::

    registry         the chapters: id, title, what each reproduces, its parameters (types,
                     bounds, per-scale presets) and the rules between them
    parameters       the one validator (floss run, floss sweep and every chapter's first
                     cell), -p/--grid parsing, a notebook's parameters cell
    chapters         what a chapter notebook calls: configure, check, glue_number,
                     write_results, write_table
    runs             one run of a chapter into a directory, with its record (run.json)
    kernel_watch     the kernel of a run: its stderr logged, its memory sampled, its death explained
    sweeps           a chapter at every point of a grid, locally or on Dask; sweep.csv
    records          long runs (the sources' configurations) committed with provenance
    cli              the floss command: list, params, run, sweep, build
    plotting         the shared figure theme, save_figure
    reproducibility  the machine stamp of executed notebooks; number masks for nbval elsewhere
    student          the student edition (solutions removed)

This package imports nothing heavy at import time, so that ``floss`` answers at once; import
the module you need (``from floss_utils.book.chapters import configure``).
"""
