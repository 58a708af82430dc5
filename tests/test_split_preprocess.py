import warnings

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


def _column_transformer(numeric, categorical, train):
    """The reference: scikit-learn's ColumnTransformer of the same steps, fitted on the same rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from kdx.data.preprocess import MISSING, as_text

    ct = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                          ("scale", StandardScaler())]), list(numeric)),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=MISSING)),
                          ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32))]),
         list(categorical))], sparse_threshold=0.0)

    def prepared(X):
        X = X[list(numeric + categorical)].copy()
        X[list(categorical)] = as_text(X[list(categorical)])
        return X

    with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ct.fit(prepared(train))

    def transform(X, empty):
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.asarray(ct.transform(prepared(X)), dtype=np.float32)
        out[:, empty] = 0.0
        return out

    return ct, transform


def test_the_encoding_is_scikit_learns_column_transformer():
    """Preprocessor fits each column with scikit-learn's estimators and writes the encoded matrix itself; the
    reference is a ColumnTransformer of the same steps fitted on the same rows: the same medians, means, scales
    and levels (a mean summed over one column rather than down a matrix may differ in its last bits) and the same
    encoding (one-hot exactly, numeric within one float32 ulp), on the bundled tables and on awkward rows
    (missing values, levels never seen, an empty numeric column, huge values, integer and nullable columns)."""
    from kdx.data import load_adult, load_breast_cancer, load_wine_quality
    from kdx.data.rows import prepare_seed

    def check(pre, train, rows_list):
        ct, transform = _column_transformer(pre.numeric, pre.categorical, train)
        steps = ct.named_transformers_["num"].named_steps
        np.testing.assert_array_equal(pre.median_, steps["impute"].statistics_)
        np.testing.assert_allclose(pre.mean_, steps["scale"].mean_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pre.scale_, steps["scale"].scale_, rtol=1e-12)
        levels = ct.named_transformers_["cat"].named_steps["onehot"].categories_ if pre.categorical else []
        assert [list(c) for c in pre.categories_] == [list(c) for c in levels]
        n_num = len(pre.numeric)
        for rows in rows_list:
            got, reference = pre.transform(rows), transform(rows, pre.empty_numeric_)
            assert got.dtype == reference.dtype == np.float32 and got.shape == reference.shape
            np.testing.assert_array_equal(got[:, n_num:], reference[:, n_num:])
            finite = np.isfinite(reference[:, :n_num])
            np.testing.assert_array_equal(np.isfinite(got[:, :n_num]), finite)
            np.testing.assert_array_max_ulp(got[:, :n_num][finite], reference[:, :n_num][finite], maxulp=1)

    split = {"scheme": "holdout", "folds": 5, "fractions": (0.7, 0.15, 0.15)}
    for loader in (load_adult, load_breast_cancer, load_wine_quality):
        data = loader()
        sd = prepare_seed(data, 0, split)
        check(sd.preprocessor, data.X.iloc[sd.split.train], [data.X])
    train = pd.DataFrame({"a": [1.0, 2.5, np.nan, 4.0], "b": [np.nan] * 4, "n": pd.array([1, None, 3, 4], "Int64"),
                          "c": ["x", None, "y", ""], "d": [1, 2, 1, 2]})
    later = pd.DataFrame({"a": [np.nan, 1e300, -3.25], "b": [5.0, np.nan, 1.0], "n": pd.array([None, 7, 2], "Int64"),
                          "c": ["z", "x", None], "d": [3, 1, 2]})
    pre = Preprocessor(("a", "b", "n"), ("c", "d")).fit(train)
    check(pre, train, [train, later])


def test_fit_and_transform_at_rows_equal_fit_and_transform_of_those_rows():
    """Rows given as positions into the frame (how a seed's parts are encoded, without copying the table) give
    what the frame of those rows gives."""
    from kdx.data import load_adult

    data = load_adult()
    X = data.X
    rows = np.random.default_rng(0).permutation(len(X))[:5000]
    at_rows = Preprocessor(data.numeric, data.categorical).fit(X, rows)
    of_rows = Preprocessor(data.numeric, data.categorical).fit(X.iloc[rows])
    for name in ("median_", "mean_", "scale_", "columns_"):
        np.testing.assert_array_equal(getattr(at_rows, name), getattr(of_rows, name))
    other = rows[::-1][:700]
    np.testing.assert_array_equal(at_rows.transform(X, other), of_rows.transform(X.iloc[other]))


def test_a_preprocessor_saved_by_an_older_kdx_still_loads():
    """Run directories written before the preprocessor fitted its columns itself hold a fitted ColumnTransformer
    (`_ct`): loading one reads its statistics, and it encodes as the ColumnTransformer does."""
    import pickle

    X = pd.DataFrame({"a": [1.0, 2.5, np.nan, 4.0, 7.0], "c": ["x", None, "y", "", "x"]})
    new = Preprocessor(("a",), ("c",)).fit(X)
    ct, transform = _column_transformer(("a",), ("c",), X)
    state = {k: v for k, v in vars(new).items() if k not in ("median_", "mean_", "scale_", "categories_")}
    old = Preprocessor.__new__(Preprocessor)
    old.__dict__.update({**state, "_ct": ct})
    loaded = pickle.loads(pickle.dumps(old))
    assert not hasattr(loaded, "_ct")
    np.testing.assert_array_equal(loaded.transform(X), transform(X, loaded.empty_numeric_))
