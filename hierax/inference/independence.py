"""Independence Metropolis-Hastings from a Student-t fitted to the posterior.

For models with a handful of parameters (a collapsed Gaussian model keeps
only group sds, correlations and sigma), NUTS's per-iteration overhead
dominates. Here proposals are drawn from a multivariate Student-t, their log
densities are evaluated in vectorized batches by one compiled program (no
gradients; the mode search takes finite differences of the same program),
and each chain accepts or rejects proposals in turn (independence
Metropolis-Hastings: exact for any proposal that covers the posterior,
efficient when it is close).

The first proposal is a heavy-tailed Student-t at the mode, with the inverse
curvature there as scale, matched to the importance-weighted moments when the
posterior is skewed. Once it covers the posterior (Pareto k of its importance
ratios below 0.5; Vehtari et al., PSIS), a tighter Student-t at the weighted
moments is tried and kept when it is accepted more often and its ratios stay
tame. Chains are thinned where they accept rarely or their draws are worth
little. When k > 0.7, or the acceptance rate is low, the caller falls back to
NUTS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import arviz as az
import numpy as np

from hierax.core.device import prng_key
from hierax.errors import ModelError
from hierax.inference.batch_density import (
    PointEvaluation,
    batch_evaluator,
    direct_setup,
    numpyro_point,
    stencil,
)
from hierax.inference.chain_stats import ess_bulk
from hierax.inference.independence_proposal import (
    CheckedProposals,
    StudentTProposal,
    burn_in,
    expected_acceptance,
    independence_chains,
    largest_share,
)
from hierax.inference.init import per_chain_inits
from hierax.inference.sampling import (
    SamplerOutput,
    Unconstrained,
    initial_unconstrained,
    precondition_at_mode,
    run_nuts,
)
from hierax.models.model_info import ModelInfo

__all__ = ["PARETO_K_MAX", "check_draw_method", "run_independence", "sample_collapsed"]

#: Proposals whose importance ratios have a Pareto k above this are not used.
PARETO_K_MAX = 0.7
#: Nor proposals accepted less often than this.
MIN_ACCEPTANCE = 0.25
#: Nor models with more unconstrained parameters than this. Pareto k and the
#: acceptance rate judge the proposal's fit; the cap stops wasted work where a
#: Student-t cannot fit (in many dimensions its weights degrade). The binary-star
#: seed's collapsed model (16 parameters: 14 log periods, their mean and sd) gets
#: k 0.05-0.5 and acceptance 0.68-0.71 (seeds 0-4), and 2-3 times nutpie's effective
#: samples per second.
MAX_DIMENSION = 32
#: Chains accepting less often than this are thinned (by at most MAX_THIN): rejections
#: cluster where the importance ratios have a heavy tail (binary-star seed, acceptance
#: 0.7: min bulk ESS 900 of 4000 draws unthinned, 2100 thinned by 2).
TARGET_ACCEPTANCE = 0.8
MAX_THIN = 8
#: Chains whose kept draws' min bulk ESS is below this share of their number are thinned
#: twice as much (once).
MIN_EFFICIENCY = 0.5
#: Rounds of importance-weighted moment matching before the final proposal.
ADAPTATION_ROUNDS = 2
ADAPTATION_DRAWS = 2000
#: A proposal whose Pareto k on half of ADAPTATION_DRAWS is below this clearly fits: the
#: other half is not drawn (the star cluster: k -0.6), for up to SURE_FIT_MAX_DIM
#: parameters. In more dimensions the tighter proposal's moments need all the draws
#: (binary-star seed, 16 parameters: acceptance 0.64 from 1000 draws' moments, 0.70
#: from 2000).
SURE_FIT = 0.2
SURE_FIT_MAX_DIM = 4
#: Once a proposal covers the posterior, a tighter one fitted to its importance-weighted
#: moments is tried: a near-Gaussian posterior then accepts most proposals (16
#: dimensions, Gaussian posterior: acceptance 0.46 with the covering Student-t, 0.86
#: with this one). It is used when its Pareto k stays below 0.5 on the trial draws and its
#: estimated acceptance is higher; if its final draws' k then exceeds PARETO_K_MAX, the
#: covering proposal is drawn from instead.
TIGHT_DF = 30.0
TIGHT_SCALE = 1.0
#: Nor is it kept when one of its final draws carries more than this share of the total
#: importance weight: a chain reaching that draw stays there for about share x draws
#: steps. Pareto k can miss a few such outliers (radon seed, 4000 draws: k 0.05, one
#: draw with 2600 times the mean weight, min bulk ESS 7).
MAX_WEIGHT_SHARE = 0.01
#: Draws of the tighter proposal's trial (its Pareto k is checked again on the final draws).
TRIAL_DRAWS = 1000


def run_independence(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
    model_info: ModelInfo,
    init: Mapping[str, Any] | None = None,
) -> SamplerOutput | str:
    """Sample with independence MH from a Student-t at the mode, or say why not.

    Parameters
    ----------
    model_fn, data
        A validated NumPyro model and its data.
    chains, draws
        Chains and retained draws per chain.
    warmup
        Steps discarded at the start of each chain (at most 100 are needed:
        every proposal is already a draw near the posterior).
    init : dict, optional
        Values of (some) sites where the mode search starts.

    Returns
    -------
    SamplerOutput, or a string with the reason to fall back to NUTS.
    """
    inits = per_chain_inits(init, 1, model_info)
    init_key = prng_key(seed)
    proposal_rng, accept_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    started = time.perf_counter()
    direct = direct_setup(model_fn, data, inits[0] if inits else None)
    if direct is not None:
        potential_fn, point, starts, unravel = direct
    else:
        numpyro_info, starts, unravel = initial_unconstrained(model_fn, data, inits, 1, init_key)
        potential_fn = numpyro_info.potential_fn
        point = numpyro_point(potential_fn, numpyro_info.postprocess_fn, unravel)
    dim = starts.shape[1]
    if dim > MAX_DIMENSION:
        return f"{dim} parameters are too many for an independence proposal"

    def search(
        potential_fn: Callable[..., Any], point: PointEvaluation, starts: np.ndarray
    ) -> tuple[Callable[..., Any], float, Any, dict[str, Any]]:
        """The batch program, its compile time, the preconditioner at the mode, details."""
        evaluate, seconds = batch_evaluator(point, dim)
        preconditioner, _, details = precondition_at_mode(
            Unconstrained(potential_fn, unravel),
            starts,
            "dense",
            init_key,
            finite_differences=True,
            jitter=False,
            derivatives=stencil(evaluate, dim),
        )
        return evaluate, seconds, preconditioner, details

    evaluate, compile_seconds, preconditioner, details = search(potential_fn, point, starts)
    if direct is not None and not np.isfinite(details.get("mode_log_density", np.nan)):
        # the plain start (all unconstrained values 0) is outside the posterior's
        # support: let NumPyro search for a valid one
        numpyro_info, starts, unravel = initial_unconstrained(model_fn, data, inits, 1, init_key)
        potential_fn = numpyro_info.potential_fn
        point = numpyro_point(potential_fn, numpyro_info.postprocess_fn, unravel)
        evaluate, more_seconds, preconditioner, details = search(potential_fn, point, starts)
        compile_seconds += more_seconds
    if not details.get("mode_found"):
        return "no posterior mode with positive definite curvature was found"
    preparation_seconds = time.perf_counter() - started - compile_seconds

    burn = min(int(warmup), 100)
    started = time.perf_counter()

    def log_ratios(
        z: np.ndarray, proposal: StudentTProposal
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        log_p, constrained = evaluate(preconditioner.to_unconstrained_numpy(z))
        log_q = proposal.log_density(z)
        return np.where(np.isfinite(log_p), log_p - log_q, -np.inf), constrained

    def checked(
        proposal: StudentTProposal, size: int, sure_below: float | None = None
    ) -> CheckedProposals | None:
        """``size`` proposals evaluated, or None where most have no posterior density.

        With ``sure_below``, half of them first: when their Pareto k is already
        below it, the proposal clearly fits and the other half is not drawn.
        """
        if sure_below is not None:
            first = checked(proposal, size // 2)
            if first is None or first.pareto_k < sure_below:
                return first
            rest = checked(proposal, size - size // 2)
            if rest is None:
                return None
            z = np.concatenate([first.z, rest.z])
            log_ratio = np.concatenate([first.log_ratio, rest.log_ratio])
            proposed = {
                k: np.concatenate([v, rest.constrained[k]]) for k, v in first.constrained.items()
            }
        else:
            z = proposal.draw(proposal_rng, size)
            log_ratio, proposed = log_ratios(z, proposal)
        finite = np.isfinite(log_ratio)
        if finite.mean() < 0.5:
            return None
        smoothed, k = az.psislw(np.where(finite, log_ratio, log_ratio[finite].min() - 50.0))
        log_p = log_ratio + proposal.log_density(z)
        return CheckedProposals(z, log_ratio, proposed, smoothed, float(np.asarray(k)), log_p)

    # the Laplace approximation, then importance-weighted moments (adaptive importance
    # sampling) when the posterior is skewed: the proposal must cover the posterior
    proposal = StudentTProposal(np.zeros(dim), np.eye(dim))
    covering: StudentTProposal | None = (
        None  # the fitted covering proposal, when a tighter one is tried
    )
    # the last proposals drawn from the proposal in use before the final round: the chains'
    # burn-in comes from them (a chain may start anywhere; only what follows is kept)
    earlier: CheckedProposals | None = None
    covering_check: CheckedProposals | None = None
    round_ = 0
    while True:
        final = round_ == ADAPTATION_ROUNDS
        result = (
            checked(proposal, chains * draws)
            if final
            else checked(
                proposal, ADAPTATION_DRAWS, sure_below=SURE_FIT if dim <= SURE_FIT_MAX_DIM else None
            )
        )
        if result is None:
            return "most proposals fall where the posterior density is zero or undefined"
        z, log_ratio, proposed, pareto_k = (
            result.z,
            result.log_ratio,
            result.constrained,
            result.pareto_k,
        )
        if (
            final
            and covering is not None
            and (pareto_k > PARETO_K_MAX or largest_share(log_ratio) > MAX_WEIGHT_SHARE)
        ):
            # the tighter proposal's weights have too heavy a tail after all, or a few
            # draws it rarely makes carry much of the posterior: use the covering one
            proposal, covering, earlier = covering, None, covering_check
            continue
        if final:
            break
        earlier = result
        weights = np.exp(result.smoothed - result.smoothed.max())
        if pareto_k >= 0.5:  # a skewed posterior: match the weighted moments and retry
            proposal = StudentTProposal.from_weighted(z, weights)
            earlier = None
            round_ += 1
            continue
        # the proposal covers the posterior: try a tighter one at the same moments
        tighter = StudentTProposal.from_weighted(z, weights, TIGHT_DF, TIGHT_SCALE)
        if pareto_k < 0:
            # bounded ratios: these draws cover the tighter proposal too, and estimate
            # its acceptance by reweighting (its Pareto k is checked on the final draws)
            log_tight = tighter.log_density(z)
            better = expected_acceptance(
                result.log_p - log_tight, log_tight - proposal.log_density(z)
            ) > expected_acceptance(log_ratio)
        else:
            trial = checked(tighter, TRIAL_DRAWS)
            better = (
                trial is not None
                and trial.pareto_k < 0.5
                and expected_acceptance(trial.log_ratio) > expected_acceptance(log_ratio)
            )
            earlier = trial if better else earlier
        if better:
            proposal, covering, covering_check = tighter, proposal, result
            if earlier is result:
                # the covering draws serve as burn-in only if none of them is a draw the
                # tighter proposal would rarely make: a chain starting there stays long
                # (radon seeds 1 and 3: min ESS 90 and 7)
                ratio = result.log_p - tighter.log_density(result.z)
                earlier = (
                    CheckedProposals(
                        result.z, ratio, proposed, result.smoothed, pareto_k, result.log_p
                    )
                    if largest_share(ratio) <= MAX_WEIGHT_SHARE
                    else None
                )
        round_ = ADAPTATION_ROUNDS
    if pareto_k > PARETO_K_MAX:
        return f"the proposal fits poorly (Pareto k {pareto_k:.2f} > {PARETO_K_MAX})"
    # the acceptance rate these proposals would give (no chain needs to run for it)
    acceptance = expected_acceptance(log_ratio)
    if acceptance < MIN_ACCEPTANCE:
        return f"the proposal is accepted too rarely ({acceptance:.2f})"
    # A rarely accepting chain repeats its states: thin it so that each kept draw is
    # worth about one independent draw (proposals are cheap, no gradients)
    thin = int(np.clip(np.ceil(TARGET_ACCEPTANCE / acceptance), 1, MAX_THIN))
    burn = burn_in(log_ratio, pareto_k, burn)
    if earlier is None or earlier.z.shape[0] < chains * burn:
        extra = checked(proposal, chains * burn) if burn else None
        earlier = extra if extra is not None else earlier
    enough = earlier is not None and earlier.z.shape[0] >= chains * burn
    burn = burn if enough else 0
    fresh = [(z, log_ratio, proposed)]

    def run_chains(
        thin: int,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Each chain: its burn-in, then draws x thin proposals (the proposals are
        independent draws, so any arrangement into chains is valid)."""
        missing = chains * draws * thin - sum(len(part[0]) for part in fresh)
        if missing > 0:
            z_more = proposal.draw(proposal_rng, missing)
            fresh.append((z_more, *log_ratios(z_more, proposal)))

        def arrange(head: np.ndarray | None, pieces: list[np.ndarray]) -> np.ndarray:
            body = np.concatenate(pieces)[: chains * draws * thin]
            body = body.reshape((chains, draws * thin) + body.shape[1:])
            if head is not None and burn:
                head = head[-chains * burn :].reshape((chains, burn) + head.shape[1:])
                body = np.concatenate([head, body], axis=1)
            return body.reshape((-1,) + body.shape[2:])

        head = earlier if burn else None
        all_z = arrange(None if head is None else head.z, [part[0] for part in fresh])
        ratio = arrange(None if head is None else head.log_ratio, [part[1] for part in fresh])
        values = {
            name: arrange(
                None if head is None else head.constrained[name], [part[2][name] for part in fresh]
            )
            for name in fresh[0][2]
        }
        length = burn + draws * thin
        uniforms = accept_rng.uniform(size=(chains, length))
        held, accept_prob = independence_chains(ratio.reshape(chains, length), uniforms)
        # after the burn-in, every thin-th state
        kept = held[:, burn + thin - 1 :: thin][:, :draws] + (np.arange(chains) * length)[:, None]
        return all_z, ratio, values, accept_prob, kept

    all_z, log_ratio, proposed, accept_prob, kept = run_chains(thin)
    # where rejections cluster (a heavy tail of the ratios), the kept draws are worth
    # less than the acceptance rate suggests: thin more (binary-star seed: min bulk ESS
    # 1190 of 4000 draws thinned by 2, 3200 thinned by 4)
    efficiency = float(np.min(ess_bulk(all_z[kept]))) / (chains * draws)
    if efficiency < MIN_EFFICIENCY and thin < MAX_THIN:
        thin = min(MAX_THIN, 2 * thin)
        all_z, log_ratio, proposed, accept_prob, kept = run_chains(thin)
    acceptance = float(accept_prob[:, burn:].mean())
    log_p = log_ratio + proposal.log_density(all_z)
    constrained = {name: value[kept.reshape(-1)] for name, value in proposed.items()}
    sampling_seconds = time.perf_counter() - started
    posterior = {
        name: np.asarray(value).reshape((chains, draws) + tuple(np.shape(value)[1:]))
        for name, value in constrained.items()
    }
    lp = log_p[kept.reshape(-1)].reshape(chains, draws)
    sample_stats = {
        "diverging": np.zeros((chains, draws), dtype=bool),
        "acceptance_rate": accept_prob[:, burn + thin - 1 :: thin][:, :draws],
        "lp": lp,
    }
    info = {
        "method": "independence_mh",
        "chains": chains,
        "draws": draws,
        "warmup": burn,
        "seed": seed,
        "proposal": f"{proposal.describe()} fitted to the posterior",
        "pareto_k": pareto_k,
        "acceptance_rate": acceptance,
        "thin": thin,
        "preparation_seconds": preparation_seconds,
        "compile_seconds": compile_seconds,
        "sampling_seconds": sampling_seconds,
        "precondition": details,
    }
    return SamplerOutput(posterior, sample_stats, info)


def check_draw_method(draw_method: str) -> None:
    """Raise :class:`~hierax.errors.ModelError` unless ``draw_method`` is a known one."""
    if draw_method not in ("auto", "nuts", "independence"):
        raise ModelError(
            f"draw_method must be 'auto', 'nuts' or 'independence', got {draw_method!r}."
        )


def sample_collapsed(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    model_info: ModelInfo,
    chains: int,
    draws: int,
    warmup: int,
    seed: int,
    init: Any = None,
    draw_method: str = "auto",
    **sampler: Any,
) -> SamplerOutput:
    """Sample a collapsed (marginalized) model: independence MH when it fits, else NUTS.

    ``draw_method``: "auto" tries :func:`run_independence` and falls back to
    NUTS, recording why in ``info["independence_not_used_because"]``;
    "independence" raises :class:`~hierax.errors.ModelError` when its checks
    fail; "nuts" goes straight to NUTS. One dict of initial values starts the
    mode search; per-chain values need NUTS. (A collapsed model with nothing to
    sample never comes here: :func:`hierax.inference.marginal.collapsed.run_collapsed`
    draws it exactly.)
    """
    check_draw_method(draw_method)
    output: SamplerOutput | str = "NUTS was asked for"
    if draw_method != "nuts":
        if init is None or isinstance(init, Mapping):
            output = run_independence(
                model_fn,
                data,
                chains=chains,
                draws=draws,
                warmup=warmup,
                seed=seed,
                model_info=model_info,
                init=init,
            )
        else:
            output = "per-chain initial values were given"
        if isinstance(output, str) and draw_method == "independence":
            raise ModelError(f"independence sampling is not possible here: {output}.")
    if isinstance(output, str):
        fallback = output
        output = run_nuts(
            model_fn,
            data,
            chains=chains,
            draws=draws,
            warmup=warmup,
            seed=seed,
            init=init,
            model_info=model_info,
            **sampler,
        )
        output.info["method"] = "nuts"
        if draw_method == "auto":
            output.info["independence_not_used_because"] = fallback
    return output
