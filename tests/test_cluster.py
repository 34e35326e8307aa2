"""WorldModels across the nodes of a multi-node Ray cluster (two raylets on loopback), in a subprocess."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path


def test_envrunners_on_a_worker_node_train_evaluate_and_a_search_picks_the_real_score(tmp_path):
    out = tmp_path / "cluster.json"
    job = Path(__file__).with_name("cluster_job.py")
    # the job joins the cluster it builds by its address; conftest's RAY_ADDRESS=local is for every other process
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(job), str(out), str(tmp_path / "tune")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["head"] != report["worker"]
    # the custom resource only the worker node has put every EnvRunner there; the driver and Learner stay on the head
    assert report["runners"] == [report["worker"]] and report["evaluation"] == [report["worker"]]
    assert math.isfinite(report["real_mean"]) and report["real_mean"] >= 1  # CartPole episodes played for real
    assert math.isfinite(report["dream_real_gap"])
    assert report["trials"] == 2 and report["trial_errors"] == 0
    assert report["best_real"] == max(report["trial_reals"])  # selected on the real score
