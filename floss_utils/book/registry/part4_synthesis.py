"""Parameters of the chapter of Part IV, Synthesis (see ``registry.base`` for the format).

The experiments are *ours* (no source runs them). ``paper`` uses GF's network size (N = 80,
k = 75 flossed exponents, 500 flossing steps; lr 3e-3 instead of GF's 1e-3 to give the target -1
more room), ZO's sequence length (300 scored steps) and student width (64 complex units), GF's
training protocol for section 12.6 (3001 epochs) and more seeds (a run on 2 CPU cores timed out
after an hour before sections 12.6 and 12.8 were added; the 240-minute estimate is not measured);
``book`` shrinks the networks (N = 20, 8- and 16-unit diagonal recurrences, chapter 10's N = 32
for the training runs) to fit two CPU cores in about three minutes.
"""

from dataclasses import replace
from typing import Any, Mapping, Sequence

from .base import Chapter, Constraint, Param, at_most, chapter, less_than
from .part3_flossing import _schedule_params


def _chapter10_protocol() -> dict[str, Param]:
    """Section 12.6's training protocol: chapter 10's shared parameters at each scale (one source of
    their presets), renamed ``task_*`` so that they do not collide with this chapter's own."""
    shared = _schedule_params()
    names = {"n_units": ("task_units", "network size N of the trained networks (chapter 10's)"),
             "n_floss": ("task_k", "exponents flossed before training (chapter 10's k)"),
             "seq_len": ("task_seq_len", "steps per training sequence (chapter 10's T)"),
             "epochs": ("task_epochs", "training epochs (chapter 10's)"),
             "pre_steps": ("task_pre_steps", "flossing steps before training (chapter 10's E_p)"),
             "floss_lr": ("task_floss_lr", "learning rate of that flossing (chapter 10's)")}
    out = {new: replace(shared[old], doc=doc) for old, (new, doc) in names.items()}
    out["task_pre_steps"] = replace(out["task_pre_steps"], bounds="[1, inf)")  # the trade-off needs flossing: >= 1 step
    return out

ARRIVAL_STEPS = 100  # flossing steps from which section 12.2 asks the networks to arrive at their targets


def arrival_tolerance(targets: Sequence[float]) -> float:
    """How close (per step) the mean of a network's flossed exponents must land to its target to
    count as arrived (section 12.2): half the smallest spacing of the targets >= -0.3, so that the
    conditions stay apart; 0.1 when there is at most one such target."""
    near = sorted({float(t) for t in targets if t >= -0.3})
    return min(b - a for a, b in zip(near, near[1:])) / 2 if len(near) > 1 else 0.1


def _horizon_covers_arrival(v: Mapping[str, Any]) -> bool:
    """A network arrived at 0 (mean of its flossed exponents within ``arrival_tolerance`` of 0) has
    lambda_1 >= that mean > -tol (the exponents are ordered): a memory longer than 1/tol steps. The
    self-teacher loss scores ``seq_len - burn_in`` steps; they must cover that memory, or networks
    flossed to 0 and to the nearest negative target could not differ within it. Applies where the
    networks are asked to arrive (``floss_steps >= ARRIVAL_STEPS``) and 0 is a target."""
    if v["floss_steps"] < ARRIVAL_STEPS or 0.0 not in v["targets"]:
        return True
    return v["seq_len"] - v["burn_in"] >= 1 / arrival_tolerance(v["targets"])


CHAPTERS: list[Chapter] = [
    chapter(
        "12_flossing_meets_curse_of_memory",
        "Flossing meets the curse of memory",
        "no paper figure (ours): the sharpness (top Hessian eigenvalue w.r.t. the recurrent "
        "parameters) and Adam's effective learning rates of GF networks flossed to targets "
        "0 ... -1, and of complex diagonal / LRU recurrences flossed to the same exponents with "
        "and without ZO's normalization and reparametrization",
        {"smoke": 0.5, "book": 3.0, "paper": 240.0},
        constraints=[at_most("k_floss", "n_units"), less_than("burn_in", "seq_len"), at_most("task_k", "task_units"),
                     less_than("task_delay", "task_seq_len"),
                     Constraint("task_targets contains 0.0 (the reference of section 12.6's comparisons)", ("task_targets",),
                                lambda v: 0.0 in v["task_targets"]),
                     Constraint("the scored horizon seq_len - burn_in covers 1/tol, the shortest memory of a network flossed "
                                "to 0 that arrived within tol of it (tol: half the smallest spacing of the targets >= -0.3; "
                                f"applies from {ARRIVAL_STEPS} flossing steps on)", ("seq_len", "burn_in", "targets", "floss_steps"),
                                _horizon_covers_arrival)],
        n_units=Param("int", "GF network size N", {"smoke": 10, "book": 20, "paper": 80}, bounds="[2, inf)"),
        k_floss=Param("int", "number of exponents flossed (and evaluated)", {"smoke": 6, "book": 16, "paper": 75}, bounds="[1, inf)"),
        targets=Param("list[float]", "flossing targets lambda* of the GF networks (per step)",
                      {"smoke": [0.0, -1.0], "book": [0.0, -0.1, -0.3, -1.0], "paper": [0.0, -0.05, -0.1, -0.3, -1.0]}),
        # book 8 seeds: the paired sign-flip tests can decide at 0.05 from 5 seeds on (their smallest p is 2^-n).
        # paper 16, set after the paper run of 2026-12-07 (8 seeds, label noise 20) failed section 12.4's shrink test
        # (ratio 0.85, p = 0.082, 7 of 8 smaller) and record gf_adam_shrink_paper_16_seeds decided it on seeds 0-15
        # (ratio 0.79, p = 0.0022 < 0.025, the level halved for the two looks; its first 8 seeds reproduce that run's
        # values exactly). At paper the shrink (~0.8) is small against the differences between networks, and at 8
        # seeds one network decides the test: seed 6 flossed to 0 did not arrive in that run (2 threads; mean
        # flossed exponent -0.111) and carries its largest ratio (1.64), while in the 1-thread record
        # gf_adam_saturation_paper it arrived and 8 seeds decided. Chosen after seeing those networks: at paper that
        # check re-tests the record's networks (no independent evidence). It doubles the
        # cost of sections 12.2-12.5 and 12.7-12.8 at paper (about 65 min to the end of 12.4 on 2 cores, estimated
        # from the 8-seed run's 33.6 min)
        n_seeds=Param("int", "networks (seeds) per condition", {"smoke": 1, "book": 8, "paper": 16}, bounds="[1, inf)"),
        # paper 1000, not GF's 500: K = 75 of N = 80 flossed to 0 at rate 3e-3 approach 0 slowly (record
        # gf_flossing_arrival_at_zero, made after the 500-step paper run of 2026-12-06 failed section 12.2's arrival
        # check: the median network 0.025 below 0 after 500 steps, 0.0055 after 1000, on the flossing's own
        # estimate; that run's other targets landed within 0.004). After 1000 steps the 1000-step evaluation that the
        # check reads has the median at -0.021: flossed to 0, the flossing's 55-step windows read higher than long
        # trajectories, in 8 of 8 seeds by 0.014 on average (record gf_flossing_window_bias; section 12.2 says so)
        floss_steps=Param("int", "flossing steps (Adam updates) of the GF networks",
                          {"smoke": 30, "book": 150, "paper": 1000}, bounds="[1, inf)"),
        floss_lr=Param("float", "learning rate of the flossing Adam", {"smoke": 0.01, "book": 0.01, "paper": 0.003}, bounds="(0, inf)"),
        ons=Param("int", "steps between QRs in the flossing estimate (1: GF's; exponents do not depend on it)",
                  {"smoke": 3, "book": 3, "paper": 1}, bounds="[1, inf)"),
        eval_steps=Param("int", "steps of the trajectories on which exponents are evaluated after flossing",
                         {"smoke": 100, "book": 300, "paper": 1000}, bounds="[1, inf)"),
        # book 140: the scored horizon (seq_len - burn_in = 120) covers 1/tol (20 steps at the book's targets), the
        # shortest memory of a network flossed to 0 (a constraint above); the measured memory of the networks
        # flossed to 0 is longer still and is reported in section 12.2 (1/|lambda_1| diverges as lambda_1 -> 0: no horizon covers
        # it by design; at seq_len 80 the median was ~83 steps, over the 60 scored)
        seq_len=Param("int", "length T of the input sequences of the self-teacher loss (steps)",
                      {"smoke": 30, "book": 140, "paper": 350}, bounds="[2, inf)"),
        burn_in=Param("int", "leading steps left out of the self-teacher loss",
                      {"smoke": 10, "book": 20, "paper": 50}, bounds="[0, inf)"),
        batch=Param("int", "sequences per loss evaluation (also the learned initial states per GF network)",
                    {"smoke": 2, "book": 4, "paper": 16}, bounds="[1, inf)"),
        lanczos_iters=Param("int", "Lanczos iterations (Hessian-vector products) per sharpness",
                            {"smoke": 6, "book": 20, "paper": 40}, bounds="[1, inf)"),
        adam_steps=Param("int", "Adam steps of the effective-learning-rate run (from each network itself, noisy targets)",
                         {"smoke": 20, "book": 1000, "paper": 1000}, bounds="[1, inf)"),
        adam_lr=Param("float", "learning rate of that Adam run", {"smoke": 0.001, "book": 0.001, "paper": 0.001}, bounds="(0, inf)"),
        # label noise: the gradient of an entry of J at the teacher is the noise projected on dr/dJ, of size
        # ~ label_noise sqrt(GN_ii / (T B)); it must lift Adam's second moment clear of the unit-gradient probe of the
        # effective learning rate (checked in the chapter). book: 3.0 was the first value tried after 1.0 (which left
        # some networks at 0.8 of Adam's ceiling) at T = 80; when the book's T became 140 (to cover the memory at
        # target 0), 3.0 left a network at 0.59 of the ceiling, and it was scaled to 4.0 = 3.0 sqrt(140 / 80) so that
        # label_noise^2 / (T B), what Adam's second moment reads, stays as at T = 80; smoke 10.0: at 3.0 the smoke
        # networks (N = 10) sat at 0.75 of it. paper 20.0, set after record gf_adam_saturation_paper: the first paper
        # value, 10.0 (a rough scaling by sqrt(T B) of paper over book; the book's own rule gives 4.0 sqrt(10) = 12.6),
        # left 3 of the 8 networks flossed to -0.3 at or above half of the ceiling (record: largest 0.55; the first
        # paper run, which named no network, failed the check at 0.58). The record rebuilds the chapter's paper
        # population with the chapter's code and seeds (not bitwise: 0.55 there, 0.58 in the run, from round-off and
        # thread count) and runs this measurement at 10, 20 and 40: at 20 and at 40 (the chapter's own run at twice
        # the noise) no network reaches half (largest 0.36 and 0.21), and the section's two claims hold at all three
        # noises. 20 is the smallest of the three that passes: chosen on these networks, with 0.14 to spare, so at
        # paper the saturation check re-tests networks the noise was chosen on (no independent evidence)
        label_noise=Param("float", "std of the noise added to the teacher's readout in that run (readout units)",
                          {"smoke": 10.0, "book": 4.0, "paper": 20.0}, bounds="[0, inf)"),
        perturbation=Param("float", "std of the perturbation of J (in units of 1/sqrt(N)) where that run starts (0: at the network)",
                           {"smoke": 0.0, "book": 0.0, "paper": 0.0}, bounds="[0, inf)"),
        # section 12.6: chapter 10's protocol at this scale (network size, sequence length, epochs, flossing before
        # training), on the delayed copy at a delay where chapter 10's unflossed networks fail (book: copy 20, 0 of 10)
        **_chapter10_protocol(),
        task_delay=Param("int", "delay d of the delayed-copy task the networks are trained on", {"smoke": 6, "book": 20, "paper": 40},
                         bounds="[1, inf)"),
        task_targets=Param("list[float]", "flossing targets before training (per step; the unflossed control is added)",
                           {"smoke": [0.0, -0.2], "book": [0.0, -0.05, -0.1, -0.3], "paper": [0.0, -0.025, -0.05, -0.1, -0.3]},
                           bounds="(-inf, 0]"),
        task_seeds=Param("int", "networks (seeds) per target in the training runs", {"smoke": 2, "book": 10, "paper": 10},
                         bounds="[1, inf)"),
        # section 12.8: diagonal recurrences (four versions) trained on section 12.6's task, each at its best
        # learning rate of a grid (ZO's protocol: the best learning rate per model)
        dtask_units=Param("int", "complex units n of the diagonal recurrences trained on the task",
                          {"smoke": 4, "book": 16, "paper": 64}, bounds="[1, inf)"),
        dtask_steps=Param("int", "Adam steps of that training", {"smoke": 40, "book": 1000, "paper": 5000}, bounds="[1, inf)"),
        dtask_lrs=Param("list[float]", "learning-rate grid of that training (the best per version is kept)",
                        {"smoke": [0.01], "book": [0.001, 0.003, 0.01, 0.03], "paper": [0.0003, 0.001, 0.003, 0.01, 0.03]},
                        bounds="(0, inf)"),
        diag_units=Param("int", "complex units n of the diagonal recurrences",
                         {"smoke": 3, "book": 8, "paper": 64}, bounds="[1, inf)"),
        diag_targets=Param("list[float]", "flossing targets of the diagonal recurrences (per step, < 0)",
                           {"smoke": [-0.1, -1.0], "book": [-0.03, -0.1, -0.3, -1.0],
                            "paper": [-0.01, -0.03, -0.1, -0.3, -1.0]}, bounds="(-inf, 0)"),
        diag_floss_steps=Param("int", "flossing steps of the diagonal recurrences",
                               {"smoke": 30, "book": 150, "paper": 300}, bounds="[1, inf)"),
        diag_seq_len=Param("int", "length T of the white-noise sequences of the diagonal self-teacher loss",
                           {"smoke": 80, "book": 300, "paper": 1500}, bounds="[1, inf)"),
    ),
]
