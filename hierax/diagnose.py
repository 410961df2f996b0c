"""Diagnostics with advice: what is wrong with a fit, where, why, and what to do.

:func:`diagnose` runs the baseline convergence checks of
:mod:`hierax.convergence` and the structural checks that name a culprit:
non-identified directions, funnels and where divergences concentrate.
The result, a :class:`Diagnosis`, prints as one paragraph per finding and
renders as HTML in Jupyter and in the report.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from .convergence import Finding, check_convergence, convergence_table

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    """Findings of :func:`diagnose` and the per-entry convergence table.

    Attributes
    ----------
    findings : list of Finding
        One per problem (``check``, ``message``, ``variables``); empty when healthy.
    table : DataFrame
        Per scalar entry: ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd``.
    """

    findings: Sequence[Finding] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def checks(self) -> list[str]:
        """The kinds of the findings, e.g. ``["divergences", "funnel"]``."""
        return [f.check for f in self.findings]

    def __str__(self) -> str:
        if not self.findings:
            return "hierax diagnosis: no problems found."
        lines = [f"hierax diagnosis: {len(self.findings)} finding(s)"]
        lines += [f"- [{f.check}] {f.message}" for f in self.findings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self) -> str:
        """The findings as an HTML fragment (a list of paragraphs)."""
        if not self.findings:
            return '<p class="hierax-ok">No problems found.</p>'
        items = "".join(
            f'<li class="hierax-finding"><b>{html.escape(f.check)}</b>: {html.escape(f.message)}</li>'
            for f in self.findings
        )
        return f'<ul class="hierax-findings">{items}</ul>'


def diagnose(fit: Fit) -> Diagnosis:
    """Diagnose a fit: convergence, divergences, funnels, non-identifiability.

    Parameters
    ----------
    fit : Fit

    Returns
    -------
    Diagnosis
    """
    findings = list(check_convergence(fit.idata, fit.info.get("max_tree_depth")))
    return Diagnosis(findings=findings, table=convergence_table(fit.idata))
