"""floss_utils: the small, tested library behind the book on gradient stability in RNNs.

Modules:
    dynamics  - batched recurrent maps (tanh RNNs, linear maps, rate networks, any cell)
    lyapunov  - Lyapunov spectra by the QR method (batched, differentiable), D_KY, entropy rate
    theory    - closed forms: mean-field largest exponent, Newman's Gaussian-product spectrum
    plotting  - the book's figure theme
    networks, tasks, flossing, flossing_training, batched_adam, cells, flossing_summary
              - Part III: GF networks, copy/XOR tasks, gradient flossing, ensemble trainer
                with flossing schedules, per-member Adam with per-member clipping, GRU/LSTM
                networks (exponents by forward-mode JVPs), tidy summaries of schedule runs
"""

__version__ = "0.1.0"
