"""A WorldModels iteration and a two-trial Tune search on a two-node Ray cluster (run by tests/test_cluster.py).

    python tests/cluster_job.py OUT_JSON STORAGE_DIR

The cluster is `ray.cluster_utils.Cluster` on loopback: a head node with 1 CPU and a worker node with 2 CPUs and a
custom resource, each its own raylet. The EnvRunners and the evaluation EnvRunner ask for that resource, so they
can only run on the worker node; the driver, the Learner and the dream stay on the head. Writes what it saw as JSON.
Runs in its own process: one Python process can join only one Ray cluster, and the test session has its own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep every node on loopback

import ray
from ray import tune
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuned_examples"))


def node_ids(group) -> list[str]:
    """The node of every remote EnvRunner in `group`."""
    return group.foreach_env_runner(lambda _: ray.get_runtime_context().get_node_id(), local_env_runner=False)


def main(out: Path, storage: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2, resources={"worker_node": 2})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        from tiny import tiny_config

        from rllib_worldmodel.registration import register_all, register_trainable_name
        from rllib_worldmodel.tuning import run_search

        register_all()  # the registries are per cluster
        register_trainable_name()
        config = (
            tiny_config()
            .env_runners(
                num_env_runners=1, num_cpus_per_env_runner=0.5, custom_resources_per_env_runner={"worker_node": 0.5}
            )
            .evaluation(evaluation_num_env_runners=1)
        )
        algo = config.build_algo()
        try:
            seen = {"runners": node_ids(algo.env_runner_group), "evaluation": node_ids(algo.eval_env_runner_group)}
            evaluation = algo.train()["evaluation"]
        finally:
            algo.stop()
        results, best = run_search(
            config.copy(copy_frozen=False).dream(temperature=tune.grid_search([0.8, 1.3])),
            num_samples=1,
            max_iterations=1,
            storage_path=str(storage),
            verbose=0,
        )
        report = {
            "head": cluster.head_node.node_id,
            "worker": worker.node_id,
            **seen,
            "real_mean": evaluation["real/episode_return_mean"],
            "dream_real_gap": evaluation["dream_real_gap"],
            "trials": len(results),
            "trial_errors": len(results.errors),
            "trial_reals": [r.metrics["evaluation"]["real/episode_return_mean"] for r in results],
            "best_real": best.metrics["evaluation"]["real/episode_return_mean"],
        }
        out.write_text(json.dumps(report))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
