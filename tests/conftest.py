"""Shared fixtures: one Ray session, small world models fitted or built once per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# Keep Ray on loopback; must be set before `import ray` anywhere.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Every process the tests start (the CLI, benchmark scripts, fresh processes) starts a Ray of its own: with no
# address Ray joins the cluster recorded in /tmp/ray/ray_current_cluster (left by any `ray start --head` or
# cluster_utils.Cluster on the machine), and a cluster test cut off by its timeout leaves it pointing at a dead
# cluster ("When connecting to an existing cluster, num_cpus and num_gpus must not be provided"). RAY_ADDRESS only
# fills an address left unset, so the cluster job's explicit one still wins.
os.environ.setdefault("RAY_ADDRESS", "local")

import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.envs import make_real_env

# Tests run beside Ray workers on 2 cores: one torch thread each avoids the measured 5-20x contention slowdown.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session, shut down at the end."""
    import ray

    from rllib_worldmodel.registration import register_all, register_trainable_name

    # address="local": always a Ray of the suite's own, whatever RAY_ADDRESS says (the module top explains why).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # Ray's registry is per cluster: a test that started and shut down its own Ray (the CLI's) took the import-time
    # registrations with it, so register again in this one, as `rllib-worldmodel` does.
    register_all()
    register_trainable_name()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def cartpole_episodes():
    """60 random-hold CartPole episodes (real env, vector observations)."""
    env = make_real_env("CartPole-v1")
    return rw.collect_random_episodes(env, 60, seed=0)


@pytest.fixture(scope="session")
def cartpole_fit(cartpole_episodes, tmp_path_factory):
    """A small world model fitted on real CartPole episodes; returns (model, history, checkpoint path)."""
    torch.manual_seed(0)
    env = make_real_env("CartPole-v1")
    cfg = rw.WorldModelConfig.from_spaces(
        env.observation_space, env.action_space, z_size=4, rnn_size=32, num_mixtures=3, vae_hidden=32
    )
    model = rw.WorldModel(cfg)
    trainer = rw.WorldModelTrainer(model, vae_lr=3e-3, mdn_lr=3e-3, seed=0)
    history = trainer.fit(
        cartpole_episodes, vae_epochs=30, mdn_epochs=30, vae_batch_size=64, mdn_batch_size=16, seq_len=50
    )
    path = model.save(tmp_path_factory.mktemp("wm") / "cartpole.pt")
    return model, history, path


def make_image_world_model(z_size: int = 8, rnn_size: int = 16, n_actions: int = 3, seed: int = 0) -> rw.WorldModel:
    """An untrained image world model (64x64x3, Discrete) with random initial states, for API/shape tests."""
    torch.manual_seed(seed)
    cfg = rw.WorldModelConfig(
        obs_kind="image",
        obs_shape=(64, 64, 3),
        action_kind="discrete",
        action_dim=n_actions,
        z_size=z_size,
        rnn_size=rnn_size,
        num_mixtures=3,
    )
    model = rw.WorldModel(cfg)
    model.set_initial_states(torch.randn(10, z_size), torch.full((10, z_size), -2.0))
    return model.eval()


@pytest.fixture
def image_world_model() -> rw.WorldModel:
    return make_image_world_model()


@pytest.fixture(scope="session")
def image_checkpoint(tmp_path_factory):
    return make_image_world_model().save(tmp_path_factory.mktemp("wm") / "image.pt")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_in_fresh_process(body: str, cwd, env: dict[str, str] | None = None, **ray_init) -> dict:
    """Run `body` in a new Python process, after starting a loopback Ray there, and return the dict it leaves in
    `out` (JSON). What a user's next process sees of a checkpoint: nothing of this process's state carries over.

    Args:
        body: Python source; it must define `out` and stop what it builds.
        cwd: The process's working directory.
        env: Its environment (default: this one's).
        **ray_init: Extra `ray.init` arguments (e.g. `num_gpus=0`).
    """
    script = (
        "import json, os\n"
        'os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"\n'
        "import ray\n"
        f"ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, **{ray_init!r})\n"
        + textwrap.dedent(body)
        + '\nprint("RESULT" + json.dumps(out))\nray.shutdown()\n'
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=str(cwd), env=env
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    assert line, proc.stderr[-3000:]
    return json.loads(line[0][len("RESULT") :])
