"""Print an ``XLA_FLAGS`` value that makes XLA generate other machine code on this CPU.

CI runs the test suite twice: natively, and with XLA limited to an older
instruction set, so that a test comparing two compiled programs too tightly, or
hinging on one chain's trajectory, fails in CI rather than on a user's machine.
Limiting the instruction set only changes anything below what the CPU has
(``AVX2`` does nothing on a CPU without AVX-512), so this script compiles a small
program natively and under each limit in turn (newest first), compares the
object code XLA writes (``--xla_dump_to``), and prints the first limit whose code
differs. It exits with status 1 when no limit changes the code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LIMITS = ["AVX2", "AVX", "SSE4_2"]

PROGRAM = """
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
x = jnp.linspace(-3.0, 3.0, 4096)
f = jax.jit(lambda x: jnp.exp(x) * jnp.sin(x) + jnp.log1p(x * x) + (x @ x))
f(x).block_until_ready()
"""


def object_code(flags: str) -> str:
    """A digest of the object files XLA compiles for :data:`PROGRAM` under ``flags``."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"{flags} --xla_dump_to={folder}".strip()
        env["JAX_PLATFORMS"] = "cpu"
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        subprocess.run([sys.executable, "-c", PROGRAM], env=env, check=True)
        digest = hashlib.sha256()
        for path in sorted(Path(folder).glob("*.o")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()


def main() -> int:
    native = object_code("")
    for limit in LIMITS:
        flag = f"--xla_cpu_max_isa={limit}"
        if object_code(flag) != native:
            print(flag)
            return 0
    print("no instruction-set limit changes XLA's code on this CPU", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
