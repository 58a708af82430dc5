import numpy as np
import pandas as pd
import pytest

from kdx.data import load_wine_quality
from kdx.data.preprocess import Preprocessor
from kdx.data.split import stratified_split
from kdx.errors import DataError


def test_split_sizes_disjoint_and_complete():
    y = np.repeat([0, 1, 2], [700, 200, 100])
    s = stratified_split(y, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (700, 150, 150)
    all_rows = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(all_rows)) == len(y) == len(all_rows)
    for part, frac in ((s.train, 0.7), (s.val, 0.15), (s.test, 0.15)):
        assert np.bincount(y[part]).tolist() == [round(700 * frac), round(200 * frac), round(100 * frac)]


def test_split_is_seeded():
    y = np.repeat([0, 1], [60, 40])
    a, b, c = stratified_split(y, 1), stratified_split(y, 1), stratified_split(y, 2)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_wine_rare_class_lands_in_every_split():
    data = load_wine_quality()
    s = stratified_split(data.y, seed=0)
    nine = data.class_names.index("9")
    assert [int((data.y[p] == nine).sum()) for p in (s.train, s.val, s.test)] == [3, 1, 1]
    assert abs(len(s.test) / len(data.y) - 0.15) < 0.002


def test_class_too_rare_is_rejected_by_name():
    y = np.array([0] * 50 + [1] * 2)
    with pytest.raises(DataError, match="'rare' has only 2 row"):
        stratified_split(y, 0, class_names=("common", "rare"))


def test_preprocessing_is_fitted_on_train_only():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, np.nan], "c": ["a", "b", "a", None]})
    test = pd.DataFrame({"x": [100.0, np.nan], "c": ["zzz", "b"]})
    pre = Preprocessor(("x",), ("c",)).fit(train)
    assert pre.columns_ == ("x", "c=__missing__", "c=a", "c=b")
    out = pre.transform(test)
    mean, sd = 2.0, np.std([1.0, 2.0, 3.0, 2.0])  # median imputation of train, then train statistics
    assert out[0, 0] == pytest.approx((100 - mean) / sd, rel=1e-5)
    assert out[1, 0] == pytest.approx(0.0, abs=1e-6)
    assert out[0, 1:].tolist() == [0, 0, 0]  # unseen category: all zeros
    assert out[1, 1:].tolist() == [0, 0, 1]


def test_group_columns_sums_one_hot_back():
    frame = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"], "d": ["u", "v"]})
    pre = Preprocessor(("x",), ("c", "d")).fit(frame)
    values = np.arange(2 * pre.n_features_out, dtype=float).reshape(2, -1)
    grouped = pre.group_columns(values)
    assert pre.feature_names_ == ("x", "c", "d")
    assert grouped.tolist() == [[0, 1 + 2, 3 + 4], [5, 6 + 7, 8 + 9]]


def test_a_numeric_column_empty_in_training_keeps_every_name_in_place():
    import numpy as np
    import pandas as pd

    from kdx.data.preprocess import Preprocessor

    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [np.nan] * 4, "c": [5.0, 6.0, 7.0, 8.0],
                          "city": ["x", "y", "x", "y"]})
    later = pd.DataFrame({"a": [1.0], "b": [1e6], "c": [6.0], "city": ["y"]})
    pre = Preprocessor(("a", "b", "c"), ("city",)).fit(train)
    assert pre.columns_ == ("a", "b", "c", "city=x", "city=y")
    assert pre.column_feature_.tolist() == [0, 1, 2, 3, 3]
    out = pre.transform(later)
    assert out.shape == (1, 5) and out[0, 1] == 0.0  # never seen in training: carries nothing
    assert pre.group_columns(np.ones((1, 5))).tolist() == [[1, 1, 1, 2]]


def test_a_single_name_is_a_list_and_text_listed_as_numeric_is_named(tmp_path):
    import numpy as np
    import pandas as pd
    import pytest

    from kdx.data.loaders import load_csv
    from kdx.errors import DataError

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": range(30), "age": rng.normal(size=30), "city": rng.choice(["n", "s"], 30),
                          "label": rng.choice(["a", "b"], 30)})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path, "label", drop="id", categorical="city")
    assert data.features == ("age", "city") and data.categorical == ("city",)
    with pytest.raises(DataError, match="'city' is listed as numeric but none of its values is a number"):
        load_csv(path, "label", numeric="city", drop=["id"])


def test_categories_become_text_as_one_call_per_cell_would():
    """The categorical columns' text form (missing and "" → NaN, else str(v)), computed once per distinct value
    for text columns, equals the per-cell definition on awkward columns (1 and 1.0 stay "1" and "1.0")."""
    import numpy as np
    import pandas as pd

    from kdx.data.preprocess import as_text

    frame = pd.DataFrame({"a": ["x", "", None, np.nan, "y"], "b": [1, 2.5, np.nan, 3, 0],
                          "c": [True, False, None, True, "t"], "d": pd.Categorical(["p", "q", None, "p", "q"]),
                          "e": [1, "1", 1.0, "", None], "f": [None] * 5, "g": ["", "", None, "a", "a"]})
    expected = frame.apply(lambda col: col.map(lambda v: np.nan if pd.isna(v) or v == "" else str(v))).astype(object)
    pd.testing.assert_frame_equal(as_text(frame), expected)
    assert as_text(frame)["e"].tolist()[:3] == ["1", "1", "1.0"]


def test_the_encoding_is_scikit_learns_column_transformer_bit_for_bit():
    """Preprocessor.transform writes the encoded matrix itself; the fitted ColumnTransformer (what the ONNX
    export carries) is the reference: equal to the last bit on the bundled tables and on awkward rows (missing
    values, levels never seen, an empty numeric column, huge values, integer and nullable columns)."""
    from kdx.data import load_adult, load_breast_cancer, load_wine_quality
    from kdx.data.rows import prepare_seed

    split = {"scheme": "holdout", "folds": 5, "fractions": (0.7, 0.15, 0.15)}
    for loader in (load_adult, load_breast_cancer, load_wine_quality):
        data = loader()
        pre = prepare_seed(data, 0, split).preprocessor
        assert np.array_equal(pre.transform(data.X), pre.reference_transform(data.X)), loader.__name__
    train = pd.DataFrame({"a": [1.0, 2.5, np.nan, 4.0], "b": [np.nan] * 4, "n": pd.array([1, None, 3, 4], "Int64"),
                          "c": ["x", None, "y", ""], "d": [1, 2, 1, 2]})
    later = pd.DataFrame({"a": [np.nan, 1e300, -3.25], "b": [5.0, np.nan, 1.0], "n": pd.array([None, 7, 2], "Int64"),
                          "c": ["z", "x", None], "d": [3, 1, 2]})
    pre = Preprocessor(("a", "b", "n"), ("c", "d")).fit(train)
    for rows in (train, later):
        got, reference = pre.transform(rows), pre.reference_transform(rows)
        assert got.dtype == reference.dtype == np.float32
        np.testing.assert_array_equal(got, reference)
