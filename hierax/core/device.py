"""Host values onto the device without compiling anything.

Outside a trace, ``jnp.asarray(numpy_array)``, ``jnp.zeros(...)``, arithmetic
on JAX arrays and ``jax.random.PRNGKey(seed)`` each run as a small compiled
program: one per operation, shape and dtype. Each costs 5-10 ms to trace,
lower and fetch from the compilation cache (more to compile cold), and a fit
that prepares its data, start values and keys that way runs a dozen of them:
0.1 s of a repeated fit that samples in 0.02 s. ``jax.device_put`` is a copy,
not a program; these helpers do the host-side work in NumPy and hand the
result over.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["prng_key", "to_device"]


def to_device(value: Any) -> jax.Array:
    """``jnp.asarray(value)`` by a copy: the same values and dtype, no compiled program.

    Dtypes are canonicalized as ``jnp.asarray`` does (float64 to float32 without
    64-bit mode).
    """
    if isinstance(value, jax.Array):
        return value
    return jax.device_put(np.asarray(value))


def prng_key(seed: int) -> jax.Array:
    """``jax.random.PRNGKey(seed)``, built on the host.

    A threefry key is the seed's two 32-bit words, high word first (the seed
    taken modulo 2**64 in 64-bit mode, 2**32 otherwise), exactly as JAX's own
    seeding computes it; other key implementations go through JAX.
    """
    config: Any = jax.config
    if config.jax_enable_custom_prng or config.jax_default_prng_impl != "threefry2x32":
        return jax.random.PRNGKey(seed)
    bits = 64 if config.jax_enable_x64 else 32
    value = int(seed) % (1 << bits)
    words = np.array([value >> 32, value & 0xFFFFFFFF], dtype=np.uint32)
    return jax.device_put(words)
