"""Score a CSV with the model.onnx beside this file, using only onnxruntime and NumPy (no kdx, no torch).

    python score.py rows.csv [predictions.csv]

rows.csv has a header with the model's feature names (other columns are ignored). An empty numeric cell is
missing (the training median is used), an empty categorical cell is missing, and any other text is the
category as written. predictions.csv gets the predicted label and one probability column per class (a
regressor: one column, the predicted value).
Written by `kdx export`.
"""

import argparse
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


def parse(argv):
    parser = argparse.ArgumentParser(prog="python score.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("rows", help="CSV of rows to score, with a header naming the model's feature columns")
    parser.add_argument("predictions", nargs="?", help="CSV to write (default: standard output)")
    return parser.parse_args(argv)


def main(argv):
    args = parse(argv)
    session = ort.InferenceSession(str(Path(__file__).resolve().parent / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    try:
        with open(args.rows, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"score.py: cannot read {args.rows}: {getattr(exc, 'strerror', None) or exc}")
    outputs = session.run(None, feed_for(session, rows))
    out = open(args.predictions, "w", newline="") if args.predictions else sys.stdout
    writer = csv.writer(out)
    if len(outputs) == 1:  # a regressor: one predicted value per row
        writer.writerow([classes[0]])
        writer.writerows([f"{v:.17g}"] for v in outputs[0])
    else:
        probabilities, labels = outputs
        writer.writerow(["label", *[f"p_{c}" for c in classes]])
        for label, p in zip(labels, probabilities):
            writer.writerow([label, *(f"{v:.9g}" for v in p)])
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main(sys.argv[1:])
