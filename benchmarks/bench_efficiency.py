"""Teacher/student latency ratios for the study pairs (batch 1 and 256) and the profiler's own cost."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from kdx.measure.efficiency import time_calls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import make_config  # noqa: E402

PAIRS = ("adult", "breast_cancer", "wine_quality")


def main() -> dict:
    from kdx.run.protocol import run

    empty = time_calls(lambda: None, 100, 1000).mean() * 1e6
    print(f"  harness overhead per timed call (empty function): {empty:.2f} µs")
    results = {"harness_overhead_us": empty}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in PAIRS:
            m = run(make_config(f"experiment={pair}", "seeds=[0]"), Path(tmp) / pair).metrics.set_index("model")
            t, s = m.loc["teacher"], m.loc["student_kd"]
            r1, rb = t.latency_ms / s.latency_ms, t.latency_batch_ms / s.latency_batch_ms
            results[pair] = {"ratio_b1": r1, "ratio_b256": rb, "prr": s.prr,
                             "profile_seconds": m.profile_seconds.to_dict()}
            print(f"  {pair:14s} teacher/student latency x{r1:6.2f} (b=1) x{rb:6.2f} (b=256) | "
                  f"teacher {t.latency_ms:.4f} ms vs student {s.latency_ms:.4f} ms (b=1) | PRR {s.prr:.3f} | "
                  "profiling cost per model " + ", ".join(f"{k} {v:.1f} s" for k, v in m.profile_seconds.items()))
    results["note"] = "1 seed, full data; profile settings as in conf/config.yaml"
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
