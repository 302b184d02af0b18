"""Benchmark models: a recipe's run directory, trained first when it is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path


def train_missing(run: Path, recipe: str, data_dir: Path, extra: list[str] | tuple = ()) -> Path:
    """Returns ``run``, first running ``advjax train recipe`` into it unless it holds a run.

    Trains on the 5,000-image MNIST training subset of ``data_dir`` (a few minutes each on a
    2-core CPU), so every official test image stays held out.
    """
    if (run / "config.json").exists():
        return run
    command = ["advjax", "train", recipe, "--out", str(run), "--no-progress", "--set"]
    command += ["data=mnist-5k", f"data_dir={data_dir}", "eval_examples=1000", *extra]
    print("training:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return run
