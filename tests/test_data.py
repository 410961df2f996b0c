"""Bad and good input to hierax.data: validate_model_data, factorize, read_table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierax
from hierax.data import factorize, read_table, validate_model_data


def two_argument_model(y, x):
    """Only the signature matters to validate_model_data."""


def keyword_model(y, **options):
    """Accepts any extra keyword, so unknown keys are allowed but ``y`` is required."""


# ------------------------------------------------------- validate_model_data


def test_nan_in_data_array_names_argument_and_count():
    data = {"y": np.array([1.0, np.nan, 2.0, np.nan, 3.0]), "x": np.arange(5.0)}
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, data)
    message = str(caught.value)
    assert "'y'" in message
    assert "2 NaN/inf" in message
    assert "[1, 3]" in message  # the positions of the bad values


def test_inf_in_data_array_names_argument_and_count():
    data = {"y": np.ones(4), "x": np.array([0.0, np.inf, -np.inf, 1.0])}
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, data)
    message = str(caught.value)
    assert "'x'" in message
    assert "'y'" not in message
    assert "2 NaN/inf" in message


def test_nan_in_pandas_series_is_found():
    data = {"y": pd.Series([1.0, None, 3.0]), "x": np.arange(3.0)}
    with pytest.raises(hierax.DataError, match=r"'y' has 1 NaN/inf"):
        validate_model_data(two_argument_model, data)


def test_nan_in_python_list_is_found():
    data = {"y": [1.0, float("nan"), 3.0], "x": np.arange(3.0)}
    with pytest.raises(hierax.DataError, match=r"'y' has 1 NaN/inf"):
        validate_model_data(two_argument_model, data)


def test_missing_argument_suggests_close_data_key():
    """A model with **kwargs accepts the key 'yy', so the missing 'y' is reported."""
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(keyword_model, {"yy": np.ones(3)})
    message = str(caught.value)
    assert "needs the data argument(s) ['y']" in message
    assert "Did you mean 'yy'?" in message


def test_misspelled_key_suggests_model_argument():
    """Without **kwargs the misspelled key is unknown; the argument it resembles is suggested."""
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, {"yy": np.ones(3), "x": np.ones(3)})
    message = str(caught.value)
    assert "no argument(s) ['yy']" in message
    assert "Did you mean 'y'?" in message


def test_missing_argument_without_close_match_names_it():
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, {"y": np.ones(3)})
    message = str(caught.value)
    assert "['x']" in message
    assert "two_argument_model" in message
    assert "Did you mean" not in message


def test_unknown_data_key_is_named():
    data = {"y": np.ones(3), "x": np.ones(3), "weights": np.ones(3)}
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, data)
    message = str(caught.value)
    assert "['weights']" in message
    assert "['y', 'x']" in message  # the arguments the model does have


def test_empty_array_is_named():
    with pytest.raises(hierax.DataError, match=r"'x' is empty"):
        validate_model_data(two_argument_model, {"y": np.ones(3), "x": np.array([])})


@pytest.mark.parametrize(
    "values",
    [
        np.array(["a", "b", "c"]),
        np.array([1, "b", 3.0], dtype=object),
        pd.Series(["north", "south", "north"]),
    ],
    ids=["unicode", "object", "string-series"],
)
def test_non_numeric_array_is_named(values):
    with pytest.raises(hierax.DataError) as caught:
        validate_model_data(two_argument_model, {"y": np.ones(3), "x": values})
    message = str(caught.value)
    assert "'x' holds non-numeric values" in message
    assert "factorize" in message  # says how to fix it


def test_data_that_is_not_a_mapping_is_rejected():
    with pytest.raises(hierax.DataError, match="must be a dict"):
        validate_model_data(two_argument_model, [np.ones(3), np.ones(3)])


def test_validate_does_not_modify_callers_dict_and_converts_series():
    series = pd.Series([1.0, 2.0, 3.0], index=[10, 20, 30])
    x = np.array([0.5, 1.5, 2.5])
    data = {"y": series, "x": x}
    original_keys = list(data)

    cleaned = validate_model_data(two_argument_model, data)

    assert cleaned is not data
    assert list(data) == original_keys
    assert data["y"] is series  # the caller's value is untouched
    assert isinstance(cleaned["y"], np.ndarray)
    np.testing.assert_array_equal(cleaned["y"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(cleaned["x"], x)


def test_validate_passes_scalars_and_boolean_arrays_through():
    mask = np.array([True, False, True])
    cleaned = validate_model_data(two_argument_model, {"y": mask, "x": 3})
    assert cleaned["x"] == 3
    np.testing.assert_array_equal(cleaned["y"], mask)
    assert cleaned["y"].dtype == bool


# ------------------------------------------------------------------ factorize


def test_factorize_strings_sorted_levels_and_codes():
    values = ["pine", "ash", "oak", "ash", "pine"]
    codes, levels = factorize(values)
    assert levels == ["ash", "oak", "pine"]
    np.testing.assert_array_equal(codes, [2, 0, 1, 0, 2])
    assert codes.dtype == np.int64
    assert [levels[c] for c in codes] == values


def test_factorize_integers_gives_sorted_plain_python_levels():
    values = np.array([30, 10, 20, 10, 30])
    codes, levels = factorize(values)
    assert levels == [10, 20, 30]
    assert all(type(level) is int for level in levels)
    np.testing.assert_array_equal(codes, [2, 0, 1, 0, 2])


def test_factorize_categorical_keeps_category_order_and_drops_unused():
    values = pd.Series(
        ["b", "a", "b", "d"], dtype=pd.CategoricalDtype(["d", "c", "b", "a"], ordered=False)
    )
    codes, levels = factorize(values)
    assert levels == ["d", "b", "a"]  # category order, "c" (unused) dropped
    np.testing.assert_array_equal(codes, [1, 2, 1, 0])
    assert [levels[c] for c in codes] == list(values)


def test_factorize_missing_values_name_column_count_and_rows():
    with pytest.raises(hierax.DataError) as caught:
        factorize(["a", None, "b", np.nan, "a"], name="county")
    message = str(caught.value)
    assert "'county'" in message
    assert "2 missing value(s)" in message
    assert "[1, 3]" in message


# ----------------------------------------------------------------- read_table


def test_read_table_reads_csv(tmp_path):
    path = tmp_path / "radon.csv"
    path.write_text("county,log_radon\nAITKIN,0.83\nANOKA,1.25\nAITKIN,-0.22\n")
    table = read_table(path)
    assert list(table.columns) == ["county", "log_radon"]
    assert table.shape == (3, 2)
    np.testing.assert_allclose(table["log_radon"], [0.83, 1.25, -0.22])
    assert list(table["county"]) == ["AITKIN", "ANOKA", "AITKIN"]


def test_read_table_reads_tsv_given_as_string(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_text("a\tb\n1\t2\n3\t4\n")
    table = read_table(str(path))
    assert table.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_read_table_returns_dataframe_unchanged():
    frame = pd.DataFrame({"a": [1.0, np.nan], "g": ["x", "y"]})
    before = frame.copy()
    assert read_table(frame) is frame
    pd.testing.assert_frame_equal(frame, before)


def test_read_table_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(hierax.DataError) as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_read_table_unknown_suffix_names_suffix(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(hierax.DataError) as caught:
        read_table(path)
    message = str(caught.value)
    assert str(path) in message
    assert "'.xlsx'" in message


def test_read_table_csv_with_header_only_is_empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("county,log_radon\n")
    with pytest.raises(hierax.DataError) as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert "no rows" in str(caught.value)


def test_read_table_zero_byte_csv_is_empty(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_bytes(b"")
    with pytest.raises(hierax.DataError) as caught:
        read_table(path)
    assert str(path) in str(caught.value)
