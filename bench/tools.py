"""One runner per tool. Each runs in its own subprocess (see run.py) and returns
the common reported draws plus timings measured the same way for every tool.

Timings (seconds):

* ``wall_s``: the whole call as a user makes it, from building the model to
  having the draws in hand (model construction, compilation, initialisation,
  warmup, sampling, the tool's own post-processing).
* ``compile_s``: time spent compiling. JAX tools (hierax, NumPyro): the union
  of JAX's own compile events (tracing, lowering to MLIR, XLA backend
  compilation; ``jax.monitoring``) during the call. nutpie: the
  ``compile_pymc_model`` call. Stan: ``stan.build`` (stanc + C++ compile; the
  httpstan model cache is emptied first unless ``--caches warm``).
  PyMC: ``wall - sampling_time`` (graph compilation + initialisation + process
  start-up). With ``--caches cold`` (default) pytensor gets a fresh compiledir
  and hierax a fresh JAX compilation cache for every run.
* ``sampling_s``: warmup + draws only. JAX tools: the time inside
  ``numpyro.infer.MCMC.run`` (blocked until the draws are ready) minus the
  compile events that fall inside it. PyMC: ``sample_stats.attrs
  ["sampling_time"]``; nutpie: the ``nutpie.sample`` call; Stan: the
  ``posterior.sample`` call.
* ``other_s = wall_s - compile_s - sampling_s``: everything else (hierax's
  mode search and preconditioning, initialisation, post-processing, its
  convergence check).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import time
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

PEERS = ["numpyro", "pymc", "nutpie", "stan"]
HIERAX = ["hierax", "hierax-plain"]
TOOLS = HIERAX + PEERS


class NotAvailable(Exception):
    """The tool (or variant) cannot run here; the message says why."""


# ------------------------------------------------------------------ timing
class CompileClock:
    """Collects JAX compile events as time intervals (nested events counted once)."""

    def __init__(self) -> None:
        import jax

        self.intervals: list[tuple[float, float]] = []
        self.by_event: dict[str, float] = {}
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **_: Any) -> None:
        if not event.startswith("/jax/core/compile/"):
            return
        end = time.perf_counter()
        self.intervals.append((end - float(duration), end))
        self.by_event[event] = self.by_event.get(event, 0.0) + float(duration)

    def seconds(self, lo: float = -math.inf, hi: float = math.inf) -> float:
        """Length of the union of compile intervals clipped to [lo, hi]."""
        spans = sorted((max(a, lo), min(b, hi)) for a, b in self.intervals)
        total, cur_a, cur_b = 0.0, None, None
        for a, b in spans:
            if b <= a:
                continue
            if cur_b is None or a > cur_b:
                if cur_b is not None:
                    total += cur_b - cur_a  # type: ignore[operator]
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        if cur_b is not None:
            total += cur_b - cur_a  # type: ignore[operator]
        return total


class RunWindows:
    """Records when ``numpyro.infer.MCMC.run`` starts and ends (blocked until ready)."""

    def __init__(self) -> None:
        import jax
        from numpyro.infer import mcmc

        self.windows: list[tuple[float, float]] = []
        original = mcmc.MCMC.run

        def run(mc: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(mc, *args, **kwargs)
            finally:
                with contextlib.suppress(Exception):
                    jax.block_until_ready(getattr(mc, "_states", None))
                self.windows.append((started, time.perf_counter()))

        mcmc.MCMC.run = run  # type: ignore[method-assign]


class PerfCounterTap:
    """Records every ``time.perf_counter()`` value that hierax's own modules read.

    hierax times its sampling phase as ``perf_counter() - started`` and reports
    it as ``fit.info["sampling_seconds"]``; finding the two recorded readings
    whose difference is exactly that value gives the phase's window, whatever
    sampler hierax runs (NUTS, independence Metropolis-Hastings, ...), so that
    the JAX compilation inside it can be subtracted.
    """

    def __init__(self) -> None:
        import importlib
        import pkgutil
        import sys

        import hierax

        self.stamps: list[float] = []
        for module_info in pkgutil.walk_packages(hierax.__path__, "hierax."):
            with contextlib.suppress(Exception):
                importlib.import_module(module_info.name)
        real = time
        tap = self

        class _Time:
            def perf_counter(self) -> float:
                value = real.perf_counter()
                tap.stamps.append(value)
                return value

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        proxy = _Time()
        for name, module in list(sys.modules.items()):
            if name.startswith("hierax") and getattr(module, "time", None) is real:
                module.time = proxy  # type: ignore[attr-defined]

    def window(self, seconds: float) -> tuple[float, float] | None:
        """The recorded pair (start, end) with end - start == seconds (the last such pair)."""
        found = None
        stamps = self.stamps
        for i, start in enumerate(stamps):
            for end in stamps[i + 1 :]:
                if end - start == seconds:
                    found = (start, end)
        return found


def configure_jax(chains: int) -> None:
    """The same JAX set-up hierax applies on import: float64, >= chains CPU devices."""
    import jax

    with contextlib.suppress(RuntimeError, AttributeError):
        jax.config.update("jax_num_cpu_devices", max(os.cpu_count() or 1, 4, chains))
    jax.config.update("jax_enable_x64", True)


def _chain_method(chains: int) -> str:
    import jax

    return "parallel" if chains > 1 and jax.local_device_count() >= chains else "vectorized"


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    seen = set()
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message)[:400]}"
        if text not in seen and not issubclass(w.category, DeprecationWarning):
            seen.add(text)
            messages.append(text)


def _jax_timings(
    clock: CompileClock, windows: RunWindows, started: float, finished: float
) -> dict[str, float]:
    compile_s = clock.seconds(started, finished)
    sampling_s = sum(b - a - clock.seconds(a, b) for a, b in windows.windows)
    return {
        "wall_s": finished - started,
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "other_s": finished - started - compile_s - sampling_s,
    }


# ------------------------------------------------------------------ hierax
def marginalize_support(model_cls: type) -> dict[str, Any]:
    """Where (if anywhere) hierax accepts ``marginalize``: the model constructor,
    ``Model.fit`` or ``hierax.fit`` (which ``Model.fit`` forwards to)."""
    import hierax

    for where, fn in (
        ("constructor", model_cls.__init__),
        ("fit", model_cls.fit),
        ("fit", hierax.fit),
    ):
        with contextlib.suppress(TypeError, ValueError):
            params = inspect.signature(fn).parameters
            if "marginalize" in params:
                default = params["marginalize"].default
                return {
                    "where": where,
                    "default": None if default is inspect.Parameter.empty else repr(default),
                }
    return {"where": None, "default": None}


def run_hierax(mod: ModuleType, table: Any, variant: str, s: dict[str, Any]) -> dict[str, Any]:
    import hierax as hx

    clock = CompileClock()
    windows = RunWindows()
    tap = PerfCounterTap()
    probe = mod.hierax_model(table)  # untimed: which class, which keywords
    support = marginalize_support(type(probe))
    del probe
    model_kw: dict[str, Any] = {}
    fit_kw: dict[str, Any] = dict(mod.hierax_fit_kwargs(table))
    notes = [
        f"hierax {getattr(hx, '__version__', '?')}; marginalize: {support}",
        f"caches: {s.get('caches', '?')} (HIERAX_COMPILATION_CACHE="
        f"{os.environ.get('HIERAX_COMPILATION_CACHE', 'hierax default')})",
    ]
    if support["where"] is None:
        if variant == "hierax":
            raise NotAvailable(
                "hierax does not accept `marginalize` yet (checked hx.Model/NonlinearModel "
                "constructor, .fit and hierax.fit signatures); see hierax-plain"
            )
    else:
        target = model_kw if support["where"] == "constructor" else fit_kw
        if variant == "hierax-plain":
            target["marginalize"] = False
        elif support["default"] in ("False", "None"):
            target["marginalize"] = True
        # else: the default ("auto"/True) is what a user gets
    if s["target_accept"] is not None:
        fit_kw["target_accept"] = s["target_accept"]
    with captured_warnings() as caught:
        started = time.perf_counter()
        model = mod.hierax_model(table, **model_kw)
        fit = model.fit(
            chains=s["chains"],
            warmup=s["warmup"],
            draws=s["draws"],
            seed=s["seed"],
            progress=False,
            **fit_kw,
        )
        finished = time.perf_counter()
    timings = _jax_timings(clock, windows, started, finished)
    info = dict(getattr(fit, "info", {}) or {})
    reported = info.get("sampling_seconds")
    window = tap.window(reported) if isinstance(reported, float) else None
    if window is not None:  # hierax's own sampling phase, compile events taken out
        timings["sampling_s"] = reported - clock.seconds(*window)
        notes.append("sampling_s: fit.info['sampling_seconds'] minus JAX compiles inside it")
    elif not windows.windows:
        timings["sampling_s"] = float(reported) if reported is not None else math.nan
        notes.append("sampling_s = fit.info['sampling_seconds'] (compilation included)")
    else:
        notes.append("sampling_s: numpyro MCMC.run windows minus JAX compiles inside them")
    conditional = info.get("conditional_draw_seconds")
    if isinstance(conditional, float):
        # a marginalized fit's exact draws of the integrated-out parameters are part of
        # its sampling: counted, with the JAX compiles inside them taken out
        found = tap.window(conditional)
        timings["sampling_s"] += conditional - (clock.seconds(*found) if found else 0.0)
        notes.append(
            "sampling_s includes the conditional draws of the marginalized parameters"
            + (" (compiles inside them taken out)" if found else " (compilation included)")
        )
    timings["other_s"] = timings["wall_s"] - timings["compile_s"] - timings["sampling_s"]
    raw = {name: np.asarray(fit.posterior[name].values) for name in fit.posterior.data_vars}
    stats = fit.idata["sample_stats"]
    steps = stats["n_steps"].values if "n_steps" in stats else None
    return {
        **timings,
        "raw": mod.hierax_reported(raw),
        "divergences": int(np.asarray(stats["diverging"].values).sum()),
        "mean_steps": float(np.mean(steps)) if steps is not None else math.nan,
        "target_accept": info.get("target_accept"),
        "tool_info": {
            k: info.get(k)
            for k in (
                "preparation_seconds",
                "sampling_seconds",
                "chain_method",
                "precondition",
                "marginalized",
                "not_marginalized_because",
                "method",
                "independence_not_used_because",
                "conditional_draw_seconds",
            )
            if k in info
        },
        "model_kwargs": {**model_kw, **{k: v for k, v in fit_kw.items() if k != "init"}},
        "notes": notes,
        "warnings": caught,
        "findings": [str(f)[:300] for f in (getattr(fit, "findings", None) or [])],
    }


# ------------------------------------------------------------- numpyro
def run_numpyro(mod: ModuleType, table: Any, s: dict[str, Any]) -> dict[str, Any]:
    configure_jax(s["chains"])
    import jax

    if s.get("caches") == "warm" and os.environ.get("BENCH_JAX_CACHE"):
        # the same persistent compilation cache settings hierax uses on import
        jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_JAX_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import numpyro
    from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

    clock = CompileClock()
    windows = RunWindows()
    data = mod.numpyro_data(table)
    init = mod.init_values(table)
    target_accept = 0.8 if s["target_accept"] is None else s["target_accept"]
    method = _chain_method(s["chains"])
    with captured_warnings() as caught:
        started = time.perf_counter()
        kernel = NUTS(
            mod.numpyro_model,
            target_accept_prob=target_accept,
            init_strategy=init_to_value(values=init) if init else init_to_uniform,
        )
        mcmc = MCMC(
            kernel,
            num_warmup=s["warmup"],
            num_samples=s["draws"],
            num_chains=s["chains"],
            chain_method=method,
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(s["seed"]), **data, extra_fields=("diverging", "num_steps"))
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        finished = time.perf_counter()
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return {
        **_jax_timings(clock, windows, started, finished),
        "raw": mod.peer_reported(samples),
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "mean_steps": float(np.mean(np.asarray(extra["num_steps"]))),
        "target_accept": target_accept,
        "tool_info": {"numpyro": numpyro.__version__, "chain_method": method},
        "notes": ["init: " + ("tutorial start (init_to_value)" if init else "init_to_uniform")],
        "warnings": caught,
    }


# -------------------------------------------------------------- pymc
def _posterior_dict(idata: Any) -> dict[str, np.ndarray]:
    return {name: np.asarray(idata.posterior[name].values) for name in idata.posterior.data_vars}


def run_pymc(mod: ModuleType, table: Any, s: dict[str, Any]) -> dict[str, Any]:
    import pymc as pm

    init = mod.init_values(table)
    kwargs: dict[str, Any] = {
        "draws": s["draws"],
        "tune": s["warmup"],
        "chains": s["chains"],
        "cores": min(s["chains"], os.cpu_count() or 1),
        "random_seed": s["seed"],
        "progressbar": False,
        "compute_convergence_checks": False,
        "return_inferencedata": True,
    }
    if s["target_accept"] is not None:
        kwargs["target_accept"] = s["target_accept"]
    if init:  # start every chain there, without PyMC's jitter (as the other tools)
        kwargs.update(initvals=init, init="adapt_diag")
    with captured_warnings() as caught:
        started = time.perf_counter()
        model = mod.pymc_model(table)
        with model:
            idata = pm.sample(**kwargs)
        finished = time.perf_counter()
    sampling = float(idata.sample_stats.attrs.get("sampling_time", math.nan))
    wall = finished - started
    stats = idata.sample_stats
    return {
        "wall_s": wall,
        "compile_s": wall - sampling,
        "sampling_s": sampling,
        "other_s": 0.0,
        "raw": mod.peer_reported(_posterior_dict(idata)),
        "divergences": int(np.asarray(stats["diverging"].values).sum()),
        "mean_steps": float(np.mean(stats["n_steps"].values)) if "n_steps" in stats else math.nan,
        "target_accept": s["target_accept"] or 0.8,
        "tool_info": {"pymc": pm.__version__, "cores": kwargs["cores"]},
        "notes": [
            "compile_s = wall - sampling_time (graph compile, init, process start-up)",
            f"caches: {s.get('caches', '?')} (PYTENSOR_FLAGS={os.environ.get('PYTENSOR_FLAGS', '')})",
            "init: "
            + ("tutorial start, init='adapt_diag' (no jitter)" if init else "jitter+adapt_diag"),
        ],
        "warnings": caught,
    }


# ------------------------------------------------------------- nutpie
def run_nutpie(mod: ModuleType, table: Any, s: dict[str, Any]) -> dict[str, Any]:
    import nutpie

    init = mod.init_values(table)
    compile_kw: dict[str, Any] = {}
    if init:
        compile_kw.update(initial_points=init, jitter_rvs=set())
    sample_kw: dict[str, Any] = {}
    if s["target_accept"] is not None:
        sample_kw["target_accept"] = s["target_accept"]
    with captured_warnings() as caught:
        started = time.perf_counter()
        model = mod.pymc_model(table)
        compiled = nutpie.compile_pymc_model(model, **compile_kw)
        compiled_at = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=s["draws"],
            tune=s["warmup"],
            chains=s["chains"],
            cores=min(s["chains"], os.cpu_count() or 1),
            seed=s["seed"],
            progress_bar=False,
            **sample_kw,
        )
        finished = time.perf_counter()
    stats = idata.sample_stats
    return {
        "wall_s": finished - started,
        "compile_s": compiled_at - started,
        "sampling_s": finished - compiled_at,
        "other_s": 0.0,
        "raw": mod.peer_reported(_posterior_dict(idata)),
        "divergences": int(np.asarray(stats["diverging"].values).sum()),
        "mean_steps": float(np.mean(stats["n_steps"].values)) if "n_steps" in stats else math.nan,
        "target_accept": s["target_accept"] or 0.8,
        "tool_info": {"nutpie": nutpie.__version__, "backend": "numba"},
        "notes": [
            "compile_s includes building the PyMC model",
            "init: " + ("tutorial start, no jitter" if init else "nutpie default (jittered)"),
        ],
        "warnings": caught,
    }


# --------------------------------------------------------------- stan
def run_stan(mod: ModuleType, table: Any, s: dict[str, Any]) -> dict[str, Any]:
    try:
        import httpstan.cache
        import httpstan.models
        import stan
    except ImportError as error:  # pragma: no cover - depends on the venv
        raise NotAvailable(f"pystan not importable: {error}") from error

    code = mod.STAN_CODE
    cold = s.get("caches", "cold") == "cold"
    if cold:
        name = httpstan.models.calculate_model_name(code)
        with contextlib.suppress(Exception):
            httpstan.cache.delete_model_directory(name)
    init = mod.init_values(table)
    sample_kw: dict[str, Any] = {
        "num_chains": s["chains"],
        "num_warmup": s["warmup"],
        "num_samples": s["draws"],
    }
    if init:
        start = {k: (np.asarray(v).tolist()) for k, v in init.items()}
        sample_kw["init"] = [start] * s["chains"]
    if s["target_accept"] is not None:
        sample_kw["delta"] = s["target_accept"]
    quiet = io.StringIO()
    with captured_warnings() as caught, contextlib.redirect_stdout(quiet):
        started = time.perf_counter()
        try:
            posterior = stan.build(code, data=mod.stan_data(table), random_seed=s["seed"])
        except Exception as error:
            raise NotAvailable(f"Stan model did not build: {str(error)[:500]}") from error
        built = time.perf_counter()
        fit = posterior.sample(**sample_kw)
        finished = time.perf_counter()
    chains, draws = s["chains"], s["draws"]

    def get(name: str) -> np.ndarray:
        # (*dims, draws * chains) with the chain index running fastest; scalars come as (1, n)
        dims = tuple(fit.dims[fit.param_names.index(name)]) if name in fit.param_names else ()
        values = np.asarray(fit[name]).reshape(dims + (draws, chains))
        return np.moveaxis(values, (-1, -2), (0, 1))  # (chain, draw, *dims)

    raw = {name: get(name) for name in fit.param_names}
    step = get("stepsize__")
    notes = [
        ("cold compile (httpstan cache emptied first)" if cold else "warm httpstan cache"),
        "init: " + ("tutorial start for every chain" if init else "Stan default uniform(-2, 2)"),
    ]
    if not np.allclose(step, step[:, :1]):
        notes.append("WARNING: step size varies within a chain: chain/draw order suspect")
    return {
        "wall_s": finished - started,
        "compile_s": built - started,
        "sampling_s": finished - built,
        "other_s": 0.0,
        "raw": mod.peer_reported(raw),
        "divergences": int(get("divergent__").sum()),
        "mean_steps": float(np.mean(get("n_leapfrog__"))),
        "target_accept": s["target_accept"] or 0.8,
        "tool_info": {"pystan": getattr(stan, "__version__", "?")},
        "notes": notes,
        "warnings": caught,
    }


def run_tool(tool: str, mod: ModuleType, table: Any, settings: dict[str, Any]) -> dict[str, Any]:
    if tool in HIERAX:
        return run_hierax(mod, table, tool, settings)
    runner = {"numpyro": run_numpyro, "pymc": run_pymc, "nutpie": run_nutpie, "stan": run_stan}
    if tool not in runner:
        raise SystemExit(f"unknown tool {tool!r}; choose from {TOOLS}")
    return runner[tool](mod, table, settings)
