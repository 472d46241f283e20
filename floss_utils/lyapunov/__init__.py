"""Part I - Lyapunov exponents of recurrent networks (chapters 1-2).

Modules (each public name is also importable from this package)::

    maps             batched recurrent maps: tanh RNNs (pre-activation and rate forms), linear maps,
                     Gaussian products, continuous-time rate networks, any cell via Jacobian-vector
                     products
    estimator        the QR estimator of Lyapunov spectra (batched, differentiable, any device,
                     float32/64), batched Cholesky QR, Kaplan-Yorke dimension, entropy rate
    lapack_engine    the estimator's ``engine="lapack"``: its loop for tanh networks, one after another, as
                     direct BLAS/LAPACK calls on a CPU, with its hand-written adjoint (internal)
    theory           closed forms the estimates are checked against: mean-field largest exponent,
                     Newman's spectrum
    random_networks  ready-made spectrum experiments on random tanh networks, sum-rule terms
    jacobians        long-term Jacobian, gradient norms by backpropagation, growth rates, the
                     finite-time tolerance of singular-value rates
"""

from .maps import (
    RecurrentMap, TanhRNN, LinearMap, RandomGaussianProduct, RateNetwork, CellMap,
    gaussian_coupling, scaled_orthogonal, random_orthonormal, sech2, log_sech2,
)
from .estimator import (
    LyapunovResult, lyapunov_spectrum, orthonormalize, cholesky_qr, kaplan_yorke_dimension,
    entropy_rate, NonFiniteError,
)
from .theory import (
    gaussian_expectation, mean_field_variance, mean_field_lyapunov, newman_spectrum,
    newman_spectrum_large_n,
)
from .random_networks import (
    white_noise_drive, random_tanh_networks, tanh_spectra, TanhSpectra,
    gaussian_product_spectra, sum_rule_terms,
)
from .jacobians import (
    long_term_jacobian, log_singular_values, log_extreme_singular_values, gradient_norms, growth_rate,
    resolvable_growth_rate, RateComparison, finite_time_rate_tolerance, longest_resolved_rates,
    FittedRateAgreement, fitted_rate_agreement, slope_bias_bound, orientation_scale,
)

__all__ = [
    "RecurrentMap", "TanhRNN", "LinearMap", "RandomGaussianProduct", "RateNetwork", "CellMap",
    "gaussian_coupling", "scaled_orthogonal", "random_orthonormal", "sech2", "log_sech2",
    "LyapunovResult", "lyapunov_spectrum", "orthonormalize", "cholesky_qr",
    "kaplan_yorke_dimension", "entropy_rate", "NonFiniteError", "gaussian_expectation",
    "mean_field_variance", "mean_field_lyapunov", "newman_spectrum", "newman_spectrum_large_n",
    "white_noise_drive", "random_tanh_networks", "tanh_spectra", "TanhSpectra",
    "gaussian_product_spectra", "sum_rule_terms", "long_term_jacobian", "log_singular_values", "log_extreme_singular_values",
    "gradient_norms", "growth_rate", "resolvable_growth_rate", "RateComparison", "finite_time_rate_tolerance",
    "FittedRateAgreement", "fitted_rate_agreement", "slope_bias_bound", "orientation_scale",
    "longest_resolved_rates",
]
