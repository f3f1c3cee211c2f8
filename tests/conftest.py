"""Shared fixtures: tiny models whose every quantity can be enumerated exactly.

Sizes are distinct primes (7 visible, 5 hidden, 11 samples) so that a transposed or
wrongly broadcast matrix cannot pass.
"""

import itertools

import numpy as np
import pytest
import torch

from harmonium.rbm import RBMModel
from harmonium.units import Bernoulli, Gaussian, Multinomial, Softmax

N_VISIBLE, N_HIDDEN, N_SAMPLES = 7, 5, 11
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models (restored afterwards): faster, and immune to
    oversubscription on a busy 2-core machine.  Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def make_model(visible="bernoulli", hidden="bernoulli", n_visible=N_VISIBLE, n_hidden=N_HIDDEN, *,
               dtype=torch.float64, seed=0, scale=1.0, centered=False) -> RBMModel:
    """A model with random parameters of the given unit types."""
    g = torch.Generator().manual_seed(seed)
    layers = {
        "bernoulli": lambda n: Bernoulli(n),
        "gaussian": lambda n: Gaussian(n, sigma=torch.linspace(0.5, 1.5, n)),
        "gaussian-learned": lambda n: Gaussian(n, sigma=torch.linspace(0.5, 1.5, n), learn_sigma=True),
        "softmax": lambda n: Softmax(n, group_size=3 if n % 3 == 0 else n),
        "multinomial": lambda n: Multinomial(n, group_size=n, n_draws=2),
    }
    m = RBMModel(layers[visible](n_visible), layers[hidden](n_hidden)).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            if p is not getattr(m.visible, "log_sigma", None):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) * scale)
        if centered:
            m.set_offsets(torch.rand(n_visible, generator=g, dtype=torch.float64).to(dtype),
                          torch.rand(n_hidden, generator=g, dtype=torch.float64).to(dtype))
    return m


def all_states(units, dtype=torch.float64) -> torch.Tensor:
    return torch.cat(list(units.enumerate_states())).to(dtype)


def bars_and_stripes(n: int = 3) -> np.ndarray:
    """The 2^(n+1) - 2 distinct n x n bars-and-stripes patterns, flattened."""
    pats = set()
    for bits in itertools.product([0, 1], repeat=n):
        a = np.tile(np.array(bits)[:, None], (1, n))
        pats.add(tuple(a.ravel()))
        pats.add(tuple(a.T.ravel()))
    return np.array(sorted(pats), dtype=np.float64)
