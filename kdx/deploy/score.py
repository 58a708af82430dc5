"""Score a CSV with the model.onnx beside this file, using only onnxruntime and NumPy (no kdx, no torch).

    python score.py rows.csv [predictions.csv]

rows.csv has a header with the model's feature names (other columns are ignored). An empty numeric cell is
missing (the training median is used), an empty categorical cell is missing, and any other text is the
category as written. predictions.csv gets the predicted label and one probability column per class.
Written by `kdx export`.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def feed_for(session, rows):
    feed = {}
    for node in session.get_inputs():
        if rows and node.name not in rows[0]:
            sys.exit(f"score.py: the CSV has no column {node.name!r}")
        cells = [row[node.name].strip() for row in rows]
        if node.type == "tensor(double)":
            try:
                values = [float(c) if c else np.nan for c in cells]
            except ValueError as exc:
                sys.exit(f"score.py: column {node.name!r} must be numeric: {exc}")
            feed[node.name] = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        else:
            feed[node.name] = np.asarray(cells, dtype=object).reshape(-1, 1)
    return feed


def main(argv):
    if len(argv) not in (1, 2):
        sys.exit(__doc__)
    session = ort.InferenceSession(str(Path(__file__).resolve().parent / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    with open(argv[0], newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    probabilities, labels = session.run(None, feed_for(session, rows))
    out = open(argv[1], "w", newline="") if len(argv) == 2 else sys.stdout
    writer = csv.writer(out)
    writer.writerow(["label", *[f"p_{c}" for c in classes]])
    for label, p in zip(labels, probabilities):
        writer.writerow([label, *(f"{v:.9g}" for v in p)])
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main(sys.argv[1:])
