"""The acting agent (V + M + C) as an RLlib RLModule: state, exploration, deterministic acting."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_worldmodel.rl_module import WorldModelsRLModule

SPACE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


def _module(**model_config):
    cfg = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, **model_config}
    torch.manual_seed(0)
    return WorldModelsRLModule(observation_space=SPACE, action_space=gym.spaces.Discrete(3), model_config=cfg)


def _batch(module, b=5, state=None):
    obs = torch.randint(0, 256, (b, 1, 64, 64, 3), dtype=torch.uint8)
    init = module.get_initial_state()
    state = state or {k: v.expand(b, *v.shape).clone() for k, v in init.items()}
    return {Columns.OBS: obs, Columns.STATE_IN: state}


def test_random_only_collection_holds_random_actions_and_skips_the_model():
    m = _module()
    m.set_random_only(True)
    batch = _batch(m, b=64)
    seen = []
    for _ in range(30):
        out = m.forward_exploration(batch)
        a = out[Columns.ACTIONS][:, 0]
        assert a.dtype == torch.long and ((0 <= a) & (a < 3)).all()
        assert (out[Columns.STATE_OUT]["h"] == 0).all()  # V and M untouched while acting randomly
        seen.append(a)
        batch = {Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]}
    actions = torch.stack(seen, 1)  # (64, 30)
    changes = (actions[:, 1:] != actions[:, :-1]).float().mean().item()
    assert 0.05 < changes < 0.35  # held for 1-10 steps: far fewer switches than i.i.d. uniform (2/3)


def test_random_hold_steps_reach_the_acting_module():
    """WorldModelsConfig.collection(random_hold_steps=...) sets how long each random action is held."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "tuned_examples"))
    from tiny import tiny_config

    mc = tiny_config().collection(random_hold_steps=(20, 20)).model_config
    assert (mc["hold_min"], mc["hold_max"]) == (20, 20)
    m = _module(hold_min=mc["hold_min"], hold_max=mc["hold_max"])
    m.set_random_only(True)
    batch, seen = _batch(m, b=16), []
    for _ in range(40):
        out = m.forward_exploration(batch)
        seen.append(out[Columns.ACTIONS][:, 0])
        batch = {Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]}
    actions = torch.stack(seen, 1)
    assert (actions[:, :20] == actions[:, :1]).all() and (actions[:, 20:] == actions[:, 20:21]).all()


def test_deterministic_acting_follows_controller_and_advances_m():
    m = _module()
    m.set_random_only(False)
    m.real_z = "mean"
    batch = _batch(m, b=4)
    out = m.forward_inference(batch)
    mu, _ = m.world_model.vae.encode(batch[Columns.OBS][:, 0])
    h0 = batch[Columns.STATE_IN]["h"]
    expected_a = m.controller.act(torch.cat([mu, h0], -1))
    torch.testing.assert_close(out[Columns.ACTIONS][:, 0], expected_a)
    h1, c1 = m.world_model.mdn_rnn.step(mu, m.world_model.encode_action(expected_a), (h0, batch[Columns.STATE_IN]["c"]))
    torch.testing.assert_close(out[Columns.STATE_OUT]["h"], h1)
    torch.testing.assert_close(out[Columns.STATE_OUT]["c"], c1)
    # Inference ignores the random-only flag: evaluation always uses the controller.
    m.set_random_only(True)
    torch.testing.assert_close(m.forward_inference(batch)[Columns.ACTIONS], out[Columns.ACTIONS])


def test_the_real_z_reading_is_a_buffer_that_travels_with_the_weights():
    """How real frames are read lives in the state dict: a switch made after training reaches an EnvRunner's module
    with a weight sync and stays with a saved agent; a bad value is refused by name."""
    m = _module(real_z="mean")
    assert m.real_z == "mean" and float(m.state_dict()["real_z_mean"]) == 1.0
    batch = _batch(m, b=3)
    mu, _ = m.world_model.vae.encode(batch[Columns.OBS][:, 0])
    torch.testing.assert_close(m.real_latent(batch[Columns.OBS][:, 0]), mu)  # the mean: no draw
    runner = _module()  # built from a config that samples, as an EnvRunner's module would be
    assert runner.real_z == "sample"
    assert not torch.equal(runner.real_latent(batch[Columns.OBS][:, 0]), mu)
    runner.load_state_dict(m.state_dict())
    assert runner.real_z == "mean"
    m.real_z = "sample"
    assert float(m.real_z_mean) == 0.0
    with pytest.raises(ValueError, match="real_z='median'"):
        m.real_z = "median"
    with pytest.raises(ValueError, match="model_config real_z='median'"):
        _module(real_z="median")


def test_epsilon_exploration_changes_some_actions():
    m = _module(epsilon=0.5)
    m.set_random_only(False)
    m.real_z = "mean"
    batch = _batch(m, b=400)
    greedy = m.forward_inference(batch)[Columns.ACTIONS]
    explored = m.forward_exploration(batch)[Columns.ACTIONS]
    frac = (greedy != explored).float().mean().item()
    assert 0.2 < frac < 0.5  # half the steps random, a third of those coincide with the greedy action


def _played_with_a_jittery_controller(m, b: int, steps: int):
    """(b, steps) actions of `m` acting greedily on fresh random frames each step, with a controller whose decision
    changes from frame to frame; and the last step's output."""
    m.set_random_only(False)
    with torch.no_grad():
        for p in m.controller.parameters():
            p.normal_(0.0, 3.0)
    batch, seen = _batch(m, b=b), []
    for _ in range(steps):
        batch[Columns.OBS] = torch.randint(0, 256, (b, 1, 64, 64, 3), dtype=torch.uint8)
        out = m.forward_inference(batch)
        seen.append(out[Columns.ACTIONS][:, 0])
        batch = {Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]}
    return torch.stack(seen, 1), out


def test_action_repeat_holds_the_controllers_decision_in_the_real_env():
    actions, out = _played_with_a_jittery_controller(_module(action_repeat=3), b=8, steps=9)
    assert actions.dtype == torch.long
    for start in (0, 3, 6):
        assert (actions[:, start : start + 3] == actions[:, start : start + 1]).all()
    assert (actions[:, ::3] != actions[:, :1]).any()  # new decisions at steps 3 and 6
    assert (out[Columns.STATE_OUT]["steps_taken"] == 9).all()


def test_a_controller_fitted_at_the_planners_interval_decides_at_it_alone():
    """`controller_every` (set when C is fitted to the planner's choices) overrides `action_repeat` for C alone."""
    m = _module(action_repeat=6)
    m.controller_every.fill_(2)
    assert m.controller_interval() == 2
    actions, _ = _played_with_a_jittery_controller(m, b=16, steps=6)
    for start in (0, 2, 4):
        assert (actions[:, start : start + 2] == actions[:, start : start + 1]).all()
    assert (actions[:, 2] != actions[:, 0]).any()  # a new decision at step 2, not at step 6
    m.controller_every.fill_(0)
    assert m.controller_interval() == 6  # 0: C's action_repeat again


def test_the_deployed_interval_is_the_one_the_deployed_agent_decides_at():
    """`deployed_interval` (what evaluations report) is C's interval without planning, the deployed planner's with it
    (not the collecting planner's), and the planning agent's actions change only at it."""
    m = _module(action_repeat=6, plan_horizon=3, plan_every=2, plan_collect=True, plan_collect_every=3)
    m.controller_every.fill_(4)
    assert m.deployed_interval() == 2 == m.planner().interval != m.planner(collect=True).interval
    actions, _ = _played_with_a_jittery_controller(m, b=4, steps=6)
    for start in (0, 2, 4):
        assert (actions[:, start : start + 2] == actions[:, start : start + 1]).all()
    for name in ("plan_horizon", "plan_collect", "plan_collect_every"):  # planning off: C alone
        getattr(m, name).fill_(0)
    assert m.deployed_interval() == 4 == m.controller_interval()


def test_previous_action_input_is_the_action_really_taken():
    """With include_prev_action C reads [z, h, one-hot of the last action], as in the dream; exploration's actions
    count, since they are what M saw and what the dream's column would hold."""
    m = _module(include_prev_action=True, epsilon=1.0)
    m.set_random_only(False)
    m.real_z = "mean"
    assert m.controller.input_size == 4 + 8 + 3
    batch = _batch(m, b=6)
    assert (batch[Columns.STATE_IN]["prev_action"] == 0).all()
    out = m.forward_exploration(batch)  # epsilon 1: every action random, not the controller's
    taken = out[Columns.ACTIONS][:, 0]
    torch.testing.assert_close(out[Columns.STATE_OUT]["prev_action"], torch.nn.functional.one_hot(taken, 3).float())
    batch = {Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]}
    mu, _ = m.world_model.vae.encode(batch[Columns.OBS][:, 0])
    state = batch[Columns.STATE_IN]
    expected = m.controller.act(torch.cat([mu, state["h"], state["prev_action"]], -1))
    torch.testing.assert_close(m.forward_inference(batch)[Columns.ACTIONS][:, 0], expected)


def test_v_only_controller_reads_z_alone():
    """include_hidden=False: the real-env agent feeds C only V's latent, as the dream's observation has it."""
    m = _module(include_hidden=False)
    m.set_random_only(False)
    m.real_z = "mean"
    assert m.controller.input_size == 4
    batch = _batch(m, b=5)
    mu, _ = m.world_model.vae.encode(batch[Columns.OBS][:, 0])
    torch.testing.assert_close(m.forward_inference(batch)[Columns.ACTIONS][:, 0], m.controller.act(mu))


def test_a_window_continues_from_its_episode_prefix_as_the_whole_episode_would():
    """`_forward_train`'s M outputs on windows cut from episodes (prefixes of different lengths, one at the start)
    are M's outputs at those steps when it runs each whole episode from its start."""
    m = _module()
    mdn = m.world_model.mdn_rnn
    z, a = torch.randn(3, 10, 4), torch.eye(3)[torch.randint(0, 3, (3, 10))]
    starts, width = torch.tensor([6, 0, 3]), 4
    p_max = int(starts.max())
    pad = torch.arange(p_max)[None, :, None] < starts[:, None, None]  # zero past each row's own prefix
    batch = {
        "z_prefix": z[:, :p_max] * pad,
        "a_prefix": a[:, :p_max] * pad,
        "prefix_len": starts,
        "z_in": torch.stack([z[b, s : s + width] for b, s in enumerate(starts.tolist())]),
        "a": torch.stack([a[b, s : s + width] for b, s in enumerate(starts.tolist())]),
        "mask": torch.ones(3, width),
    }
    with torch.no_grad():
        got = m._forward_train(batch)["mdn_logpi"]  # (E, 3 * width, ...): the valid steps in row-major order
        whole = mdn(z, a)[0].logpi  # (E, 3, 10, ...)
    want = torch.stack([whole[:, b, s : s + width] for b, s in enumerate(starts.tolist())], 1).flatten(1, 2)
    torch.testing.assert_close(got, want)


def test_bf16_training_outputs_are_float32_and_near_the_fp32_ones():
    """model_config precision="bf16": V's and M's training forward runs in bfloat16 and hands the Learner float32
    outputs close to float32's; the same window batch gives the same valid steps."""
    z, a = torch.randn(3, 6, 4), torch.eye(3)[torch.randint(0, 3, (3, 6))]
    batch = {
        "vae_obs": torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8),
        "z_prefix": torch.zeros(3, 1, 4),
        "a_prefix": torch.zeros(3, 1, 3),
        "prefix_len": torch.zeros(3, dtype=torch.long),
        "z_in": z,
        "a": a,
        "mask": torch.ones(3, 6),
    }
    out = {}
    for precision in ("fp32", "bf16"):
        m = _module(precision=precision)
        assert m.world_model.precision == precision
        with torch.no_grad():
            torch.manual_seed(1)  # V's posterior draw
            out[precision] = m._forward_train(batch)
    assert out["fp32"].keys() == out["bf16"].keys()
    for k, v in out["bf16"].items():
        assert v.dtype == torch.float32, k
        torch.testing.assert_close(v, out["fp32"][k], atol=0.05, rtol=0.05, msg=k)
