"""Spec files: a whole fit (data, model, priors, sampler, output) in one TOML file.

``hierax fit model.toml`` reads such a file; :func:`load_spec` validates it into a
:class:`Spec`, :func:`build_model` builds the model and :func:`fit_spec` samples it.

Schema (every table and key is checked: an unknown key is an error that names it
with close matches, and every value's type is checked with its key named;
relative paths are resolved against the folder of the TOML file)::

    title = "genes x cell lines"        # optional; shown in the output and the report

    [data]
    file = "crossed.csv"                # CSV, TSV or Parquet (Parquet needs pyarrow)

    [model]                             # either a formula ...
    formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"
    family = "gaussian"                 # gaussian, student_t, bernoulli, binomial, poisson, ...
    link = "identity"                   # linear formula models only; default: the family's
    centered = "auto"                   # "auto", true, false, or a table per group term
    zero_sum = false                    # linear formula models only: bool or table per group
    dropna = false                      # drop rows with missing values (with a warning)
    calibration = "calibration.json"    # a saved CalibrationModel as the observation model

    [model.params]                      # nonlinear formula: one entry per parameter
    intercept = "1 + (1 | batch)"       # a sub-formula
    k = { formula = "1", lower = 0, upper = 1 }   # bounded (or link = "log")
    r = { latent = "TruncatedNormal(mu_r, exp(ln_std_r), low=0)" }

    [model.priors]                      # parameter or class ("b", "sd", "cor")
    sigma = "HalfNormal(1)"             # a distribution ...
    sd_intercept_batch = 0.1            # ... or a number, which fixes the value

    [model.functions]                   # extra JAX functions for a nonlinear expression
    kepler = "mypackage.orbits:kepler"

    [sampler]
    chains = 4
    draws = 1000
    warmup = 1000
    seed = 1                            # default: random (recorded in the fit)
    target_accept = 0.95                # default 0.95 for formula models, 0.8 for functions
    max_tree_depth = 10
    dense_mass = false
    multistart = 0
    init = "mypackage.starts:initial_values"   # a function called with the table,
                                               # or a table of start values

    [output]
    folder = "crossed-fit"              # default: "<spec name>-fit" beside the spec
    show = ["Intercept", "sd_gene"]     # variables printed after the fit
    report = true                       # write report.html

A model that no formula can express is a NumPyro function named as
``"module:function"``; ``[model.data]`` then maps each of its arguments to the
table, and ``[model.dims]`` names dims of sites or arguments::

    [model]
    function = "hierax.examples.crossed:model_naive"

    [model.data]
    logfc = "logfc"                     # a column, as a float array (dim "obs")
    gene = { factor = "gene" }          # integer codes; the levels become coords of dim "gene"
    n_genes = { levels = "gene" }       # the number of levels of a column
    n = { rows = true }                 # the number of rows
    scale = 2.5                         # a literal number, bool or array

Formula, family, priors and the other formula keys do not apply to a function.
"""

from hierax.interface.spec.build import (
    FunctionModel,
    build_model,
    fit_spec,
    import_object,
    named_code,
    predict_frame,
    read_data,
    resolve_init,
)
from hierax.interface.spec.parse import load_spec, parse_spec, spec_from_fit
from hierax.interface.spec.schema import ModelSpec, OutputSpec, SamplerSpec, Spec, SpecError

__all__ = [
    "FunctionModel",
    "ModelSpec",
    "OutputSpec",
    "SamplerSpec",
    "Spec",
    "SpecError",
    "build_model",
    "fit_spec",
    "import_object",
    "load_spec",
    "named_code",
    "parse_spec",
    "predict_frame",
    "read_data",
    "resolve_init",
    "spec_from_fit",
]
