import gzip
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from kdx.data import load_adult, load_breast_cancer, load_csv, load_wine_quality
from kdx.data.loaders import read_bundled
from kdx.errors import DataError


def test_adult_shape_and_classes():
    data = load_adult()
    assert data.X.shape == (48842, 14)
    assert data.class_names == ("<=50K", ">50K")
    # Published counts: 37,155 <=50K and 11,687 >50K over data + test.
    assert data.class_counts() == {"<=50K": 37155, ">50K": 11687}
    assert len(data.numeric) == 6 and len(data.categorical) == 8
    assert data.X["workclass"].isna().sum() > 0  # ' ?' read as missing
    assert not data.X["workclass"].astype(str).str.contains(r"\?").any()


def test_wine_shape_and_classes():
    data = load_wine_quality()
    assert data.X.shape == (6497, 11)
    assert data.class_names == tuple(str(q) for q in range(3, 10))
    counts = data.class_counts()
    assert counts["3"] == 30 and counts["9"] == 5 and sum(counts.values()) == 6497


def test_breast_cancer_shape():
    data = load_breast_cancer()
    assert data.X.shape == (569, 30)
    assert data.class_counts() == {"malignant": 212, "benign": 357}


def _bundle_copy(tmp_path: Path) -> Path:
    src = Path(str(resources.files("kdx.data").joinpath("bundled")))
    dst = tmp_path / "bundled"
    shutil.copytree(src, dst)
    return dst


def test_corrupt_bundled_file_is_rejected(tmp_path):
    bundle = _bundle_copy(tmp_path)
    raw = gzip.decompress((bundle / "winequality-red.csv.gz").read_bytes())
    (bundle / "winequality-red.csv.gz").write_bytes(gzip.compress(raw.replace(b"7.4;", b"7.5;", 1)))
    with pytest.raises(DataError, match="SHA-256"):
        load_wine_quality(bundle_dir=bundle)
    (bundle / "winequality-red.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="corrupt"):
        read_bundled("winequality-red.csv", bundle)
    (bundle / "adult.data.gz").unlink()
    with pytest.raises(DataError, match="missing"):
        load_adult(bundle_dir=bundle)


def test_csv_detects_types_and_missing(tiny_csv):
    data = load_csv(tiny_csv, "label", drop=["id"])
    assert data.numeric == ("age", "score") and data.categorical == ("city",)
    assert data.class_names == ("no", "yes")
    assert data.X["age"].isna().any() and data.X["city"].isna().any()


def test_csv_overrides_column_lists(tiny_csv):
    data = load_csv(tiny_csv, "label", numeric=["score"], categorical=["city", "id"])
    assert data.numeric == ("score",) and set(data.categorical) == {"city", "id"}
    assert "age" not in data.X.columns


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"path": "does/not/exist.csv", "target": "label"}, "not found"),
        ({"target": "nope"}, "target column 'nope'"),
        ({"target": "label", "numeric": ["missing_col"]}, "not found"),
        ({"target": "label", "drop": ["ghost"]}, "ghost"),
        # A column listed as numeric is coerced (unparseable cells missing); one with no number at all is refused.
        ({"target": "label", "numeric": ["city"]}, "none of its values is a number"),
        ({"path": None, "target": "label"}, "dataset.path"),
        ({"target": None}, "dataset.target"),
    ],
)
def test_csv_bad_input(tiny_csv, kwargs, match):
    kwargs = {"path": tiny_csv, **kwargs}
    with pytest.raises(DataError, match=match):
        load_csv(**kwargs)


def test_csv_single_class_empty_column_and_nan_target(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("a,b\n1,x\n2,x\n")
    with pytest.raises(DataError, match="single class"):
        load_csv(one, "b")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,e,b\n1,,x\n2,,y\n3,,x\n")
    with pytest.raises(DataError, match="entirely empty"):
        load_csv(empty, "b")
    nan_target = tmp_path / "nan.csv"
    nan_target.write_text("a,b\n1,x\n2,\n3,y\n")
    with pytest.raises(DataError, match="missing value"):
        load_csv(nan_target, "b")
    binary = tmp_path / "bin.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 50)
    with pytest.raises(DataError):
        load_csv(binary, "b")


def test_csv_labels_are_codes(tiny_csv):
    data = load_csv(tiny_csv, "label")
    assert data.y.dtype == np.int64 and set(np.unique(data.y)) == {0, 1}
