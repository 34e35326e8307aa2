"""Decision-time planning in the dream: the planner picks what the dream says survives, from the agent's state."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.models.controller import Controller, ControllerInput
from rllib_worldmodel.planning import check_plannable, DreamPlanner, planner_dream_returns, PlanSettings
from rllib_worldmodel.rl_module import WorldModelsRLModule
from tests.conftest import make_image_world_model

DEADLY = 2


def deadly_action_world_model(deadly: int = DEADLY):
    """M whose LSTM remembers whether `deadly` was ever taken (h ~ 0.76 on every unit after it, 0 otherwise) and
    whose done head fires on that memory (death probability ~1 after it, that of logit -5 before it); a reward
    of 1 per step. z plays no part, so any dream noise leaves the outcome to the actions alone."""
    model = make_image_world_model(z_size=8, rnn_size=16, n_actions=3)
    m, hs, zs = model.mdn_rnn, model.mdn_rnn.hidden_size, model.mdn_rnn.z_size
    with torch.no_grad():
        for p in m.lstm.parameters():
            p.zero_()
        m.lstm.bias_ih_l0[0:hs] = 10.0  # input gate open
        m.lstm.bias_ih_l0[hs : 2 * hs] = 10.0  # forget gate closed: the memory stays
        m.lstm.weight_ih_l0[2 * hs : 3 * hs, zs + deadly] = 10.0  # cell input: "the deadly action was taken"
        m.lstm.bias_ih_l0[3 * hs :] = 10.0  # output gate open
        m.done_head.weight.fill_(10.0)
        m.done_head.bias.fill_(-5.0)
        m.reward_head.weight.zero_()
        m.reward_head.bias.fill_(1.0)
    return model


def fixed_controller(model, action: int) -> Controller:
    """A linear C that always picks `action` (zero weights, one positive bias)."""
    c = Controller(ControllerInput().size(model.config), model.config.action_space())
    flat = np.zeros_like(c.get_flat())
    flat[-3 + action] = 1.0  # the last three parameters are the output biases
    c.set_flat(flat)
    return c


def test_the_planner_scores_every_first_action_and_avoids_the_deadly_one():
    model = deadly_action_world_model()
    planner = DreamPlanner(
        model, fixed_controller(model, 0), ControllerInput(), PlanSettings(horizon=6, samples=4), interval=2
    )
    b = 5
    z, (h, c) = torch.randn(b, 8), model.mdn_rnn.initial_state(b)
    scores = planner.scores(z, h, c, torch.zeros(b, 3))
    assert scores.shape == (b, 3)
    # a safe first action, then C's safe action: 6 steps at M's death probability for logit -5, each paid while alive
    safe = sum((1 - model.death_probability(torch.tensor(-5.0))) ** t for t in range(6))
    torch.testing.assert_close(scores[:, :2], torch.full((b, 2), float(safe)), atol=1e-3, rtol=0)
    assert (scores[:, DEADLY] < 1.01).all()  # the first step is paid, then the dream is (almost surely) over
    assert (planner.act(z, h, c, torch.zeros(b, 3)) != DEADLY).all()


def test_parallel_rollouts_score_each_first_action_by_its_best_base_policy():
    """C always takes the deadly action after the first decision: following C, every first action dies at the next
    decision; held to the horizon, the safe actions survive it. Parallel rollout scores each first action by the
    better of the two, so its scores rise where C's rollouts die, and never fall below them."""
    model = deadly_action_world_model()
    c, z, (h, cell) = fixed_controller(model, DEADLY), torch.randn(4, 8), model.mdn_rnn.initial_state(4)
    prev = torch.zeros(4, 3)

    def planner(rollouts: str) -> DreamPlanner:
        return DreamPlanner(model, c, ControllerInput(), PlanSettings(horizon=6, samples=4, rollouts=rollouts), 2)

    alone, parallel = planner("controller"), planner("parallel")
    assert (alone.num_policies, parallel.num_policies) == (1, 4)  # C, then each of the 3 actions held
    assert (alone.dreams_per_state, parallel.dreams_per_state) == (3 * 4, 3 * 4 * 4)
    by_c, best = alone.scores(z, h, cell, prev), parallel.scores(z, h, cell, prev)
    p = float(model.death_probability(torch.tensor(-5.0)))
    # after a safe first action held 2 steps, C's deadly choice is paid once more, then the dream is over
    torch.testing.assert_close(by_c[:, :2], torch.full((4, 2), sum((1 - p) ** t for t in range(3))), atol=1e-3, rtol=0)
    # the same first action, then itself (or the other safe action) held: alive to the horizon
    torch.testing.assert_close(best[:, :2], torch.full((4, 2), sum((1 - p) ** t for t in range(6))), atol=1e-3, rtol=0)
    assert (best >= by_c - 1e-5).all() and (best[:, DEADLY] < 1.01).all()
    # the controller rollouts are the planner as it was: the same scores as a planner built without the setting
    default = DreamPlanner(model, c, ControllerInput(), PlanSettings(horizon=6, samples=4), 2)
    torch.testing.assert_close(default.scores(z, h, cell, prev), by_c)


def test_a_terminal_value_credits_each_dream_for_its_chance_of_being_alive_at_the_horizon():
    """Safe first actions survive the 6 dreamed steps with probability (1 - p)^6 and score that times the terminal
    value on top of their dreamed steps; the deadly one is (almost surely) dead by the end and gains nothing. The
    value 0 is the planner as it was."""
    model = deadly_action_world_model()
    z, (h, c) = torch.randn(4, 8), model.mdn_rnn.initial_state(4)
    prev = torch.zeros(4, 3)

    def scores(terminal_value: float) -> torch.Tensor:
        look = PlanSettings(horizon=6, samples=4, terminal_value=terminal_value)
        planner = DreamPlanner(model, fixed_controller(model, 0), ControllerInput(), look, interval=2)
        return planner.scores(z, h, c, prev)

    plain, credited = scores(0.0), scores(100.0)
    p = float(model.death_probability(torch.tensor(-5.0)))
    alive_at_end = (1 - p) ** 6
    torch.testing.assert_close(credited[:, :2], plain[:, :2] + 100.0 * alive_at_end, atol=1e-3, rtol=0)
    assert (credited[:, DEADLY] - plain[:, DEADLY] < 1e-3).all()
    default = DreamPlanner(model, fixed_controller(model, 0), ControllerInput(), PlanSettings(horizon=6, samples=4), 2)
    torch.testing.assert_close(default.scores(z, h, c, prev), plain)


def test_candidates_are_compared_on_the_same_dreamed_futures():
    """Common random numbers: where the action changes nothing, every candidate gets the same score, although each of
    its dreams is random (tau 1.15, a mixture of Gaussians). Equal up to float rounding, not to the last bit: the
    candidates are rows of one batch, and a batched matmul may sum different rows in different orders (about 1 in
    25 random inputs here differ by 1 ulp)."""
    model = make_image_world_model(z_size=8, rnn_size=16, n_actions=3)
    with torch.no_grad():
        model.mdn_rnn.lstm.weight_ih_l0[:, model.mdn_rnn.z_size :] = 0.0  # M does not read the action
    planner = DreamPlanner(
        model, fixed_controller(model, 1), ControllerInput(), PlanSettings(horizon=6, samples=3), interval=2
    )
    b = 4
    z, (h, c) = torch.randn(b, 8), model.mdn_rnn.initial_state(b)
    scores = planner.scores(z, h, c, torch.zeros(b, 3))
    torch.testing.assert_close(scores, scores[:, :1].expand(b, 3), rtol=0, atol=1e-6)
    assert planner.sim.stream is not None and planner.sim.num_streams == b * 3
    assert not torch.equal(scores[0], scores[1])  # the states differ, so do their futures


def test_the_planning_agent_survives_the_dream_its_controller_dies_in():
    model = deadly_action_world_model()
    suicidal = fixed_controller(model, DEADLY)
    settings = DreamSettings(done_mode="sample", max_episode_steps=20, seed=0)
    alone = DreamSimulator(model, settings)
    alone.reset(8, seed=0)
    _, reward, term, _ = alone.step(torch.full((8,), DEADLY))
    assert term.all()  # C alone dies at its first step
    plan = PlanSettings(horizon=4, samples=2)
    returns = planner_dream_returns(model, settings, suicidal, plan, num_dreams=8, seed=0, action_repeat=2)
    assert returns.shape == (8,)
    assert returns.mean() > 15  # the planner never takes the deadly first action; C's deadly choice is overruled


def test_start_at_dreams_from_the_given_state():
    model = make_image_world_model()
    sim = DreamSimulator(model, DreamSettings(seed=0))
    z, h, c = torch.randn(3, 8), torch.randn(3, 16), torch.randn(3, 16)
    obs = sim.start_at(z, h, c)
    torch.testing.assert_close(obs, torch.cat([z, h], 1))
    assert sim.batch_size == 3 and (sim.prev_action == 0).all() and (sim.t == 0).all()
    with pytest.raises(ValueError, match=r"h must be \(3, 16\)"):
        sim.start_at(z, h[:, :4], c)


def planning_module(batch_size: int, **model_config) -> tuple[WorldModelsRLModule, dict]:
    """An acting module planning 4 steps ahead in the deadly-action world model, its C always choosing the deadly
    action, and a batch of `batch_size` first steps."""
    model = deadly_action_world_model()
    mc = {"z_size": 8, "rnn_size": 16, "num_mixtures": 3, "plan_horizon": 4, "plan_samples": 2, "action_repeat": 2}
    space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    module = WorldModelsRLModule(
        observation_space=space, action_space=gym.spaces.Discrete(3), model_config={**mc, **model_config}
    )
    module.world_model.load_state_dict(model.state_dict())
    module.controller.load_state_dict(fixed_controller(model, DEADLY).state_dict())
    module.set_random_only(False)
    state = {k: v.expand(batch_size, *v.shape).clone() for k, v in module.get_initial_state().items()}
    obs = torch.randint(0, 256, (batch_size, 1, 64, 64, 3), dtype=torch.uint8)
    return module, {Columns.OBS: obs, Columns.STATE_IN: state}


def test_the_acting_module_plans_only_without_exploration():
    module, batch = planning_module(6)
    assert (module.forward_exploration(batch)[Columns.ACTIONS] == DEADLY).all()  # collection: C as it is
    out = module.forward_inference(batch)
    assert (out[Columns.ACTIONS] != DEADLY).all()  # evaluation: the planner overrules C
    # between decisions the planned action is held, as C's would be
    nxt = module.forward_inference({Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]})
    torch.testing.assert_close(nxt[Columns.ACTIONS], out[Columns.ACTIONS])
    module.plan_every.fill_(1)  # the planner may decide more often than C's own action repeat
    assert module.planner().interval == 1
    nxt = module.forward_inference({Columns.OBS: batch[Columns.OBS], Columns.STATE_IN: out[Columns.STATE_OUT]})
    assert (nxt[Columns.ACTIONS] != DEADLY).all() and int(nxt[Columns.STATE_OUT]["steps_taken"][0]) == 2
    module.plan_horizon.fill_(0)  # switched off: C alone
    assert (module.forward_inference(batch)[Columns.ACTIONS] == DEADLY).all()


def test_with_plan_collect_the_planning_agent_collects_with_exploration_on_top():
    module, batch = planning_module(60, plan_collect=True)
    assert float(module.plan_collect) == 1.0
    assert (module.forward_exploration(batch)[Columns.ACTIONS] != DEADLY).all()  # collection: the planner decides
    module.epsilon = 1.0  # exploration still acts on top of the planner's choice: uniform actions, the deadly too
    assert (module.forward_exploration(batch)[Columns.ACTIONS] == DEADLY).any()
    module.epsilon = 0.0
    module.plan_collect.fill_(0)  # off: C collects alone
    assert (module.forward_exploration(batch)[Columns.ACTIONS] == DEADLY).all()


def test_a_collecting_planner_of_its_own_collects_while_the_deployed_agent_acts_as_set():
    # the planner collects, C alone is deployed (plan_horizon 0): collection avoids the deadly action, evaluation not
    module, batch = planning_module(6, plan_horizon=0, plan_collect=True, plan_collect_horizon=4)
    assert (module.forward_exploration(batch)[Columns.ACTIONS] != DEADLY).all()
    assert (module.forward_inference(batch)[Columns.ACTIONS] == DEADLY).all()
    # both plan, each at its own interval: the collecting planner every step, the deployed one at C's 2
    module.plan_horizon.fill_(4)
    module.plan_collect_every.fill_(1)
    assert module.planner(collect=True).interval == 1 and module.planner().interval == 2
    assert module.planner(collect=True) is not module.planner()
    # planners that plan alike are one planner
    module.plan_collect_every.fill_(0)
    assert module.planner(collect=True) is module.planner()


def test_the_collecting_planners_settings_default_to_the_deployed_ones():
    plan = PlanSettings(horizon=50, every=25, collect=True, collect_horizon=12, collect_every=3)
    assert (plan.collection().horizon, plan.collection().every) == (12, 3)
    assert (plan.deployed().horizon, plan.deployed().every) == (50, 25)
    alike = PlanSettings(horizon=12, every=3, collect=True)
    assert alike.collection() == alike.deployed()
    assert PlanSettings(horizon=50, every=25, collect=True, collect_every=5).collection().horizon == 50
    only = PlanSettings(collect=True, collect_horizon=12)  # the planner collects, C alone deploys
    assert not only.enabled and only.collection().enabled and only.collection().horizon == 12


def test_the_planning_interval_is_plan_every_or_cs_own():
    assert PlanSettings(horizon=24).interval(6) == 6
    assert PlanSettings(horizon=24, every=3).interval(6) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"horizon": -1}, "plan_horizon=-1 must be an int >= 0"),
        ({"horizon": 2.5}, "plan_horizon=2.5"),
        ({"horizon": 4, "samples": 0}, "plan_samples=0 must be an int >= 1"),
        ({"horizon": 4, "every": -2}, "plan_every=-2 must be an int >= 0"),
        ({"horizon": 4, "rollouts": "greedy"}, r"plan_rollouts='greedy': use one of \('controller', 'parallel'\)"),
        ({"horizon": 4, "collect": True, "collect_horizon": -1}, "plan_collect_horizon=-1 must be an int >= 0"),
        ({"horizon": 4, "collect": True, "collect_every": 1.5}, "plan_collect_every=1.5"),
        ({"horizon": 4, "collect_horizon": 12}, "plan_collect_horizon=12 sets the collecting planner, and plan_co"),
        ({"horizon": 4, "collect_every": 3}, "plan_collect_every=3 sets the collecting planner"),
        ({"horizon": 4, "terminal_value": -1.0}, "plan_terminal_value=-1.0 must be a finite number >= 0"),
        ({"horizon": 4, "terminal_value": float("inf")}, "plan_terminal_value=inf must be a finite number"),
        ({"horizon": 4, "terminal_value": True}, "plan_terminal_value=True must be a finite number"),
    ],
)
def test_bad_plan_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlanSettings(**kwargs)


def test_planning_needs_discrete_actions_and_a_whole_decision():
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        check_plannable(gym.spaces.Box(-1, 1, (2,)), 8, 1)
    with pytest.raises(ValueError, match="shorter than one decision"):
        check_plannable(gym.spaces.Discrete(3), 4, 6)
    check_plannable(gym.spaces.Box(-1, 1, (2,)), 0, 1)  # off: any space


def test_config_refuses_planning_with_the_policy_anchor_and_bad_values():
    import rllib_worldmodel as rw

    base = rw.WorldModelsConfig().environment("CartPole-v1")
    with pytest.raises(ValueError, match="calibrate_deaths='policy'"):
        base.copy().controller(plan_horizon=8).dream(calibrate_deaths="policy").validate()
    with pytest.raises(ValueError, match="plan_samples=0"):
        base.copy().controller(plan_horizon=8, plan_samples=0).validate()
    with pytest.raises(ValueError, match="plan_dream_episodes=0"):
        base.copy().controller(plan_dream_episodes=0).validate()
    with pytest.raises(ValueError, match="plan_horizon=4 is shorter than one decision"):
        base.copy().controller(plan_horizon=4, action_repeat=6).validate()
    base.copy().controller(plan_horizon=4, action_repeat=6, plan_every=2).validate()
    with pytest.raises(ValueError, match="plan_collect=True: collection by the planning agent needs a bool and "):
        base.copy().controller(plan_collect=True).validate()  # nothing to collect with: horizon 0
    with pytest.raises(ValueError, match="plan_collect=1"):
        base.copy().controller(plan_horizon=8, plan_collect=1).validate()
    with pytest.raises(ValueError, match="controller plan_collect_every=3 sets the collecting planner"):
        base.copy().controller(plan_horizon=8, plan_collect_every=3).validate()
    with pytest.raises(ValueError, match=r"plan_collect_horizon \(or plan_horizon\)=4 is shorter than one decision"):
        base.copy().controller(plan_horizon=50, plan_every=25, plan_collect=True, plan_collect_horizon=4).validate()
    collecting = base.copy().controller(plan_horizon=50, plan_every=25, plan_collect=True, plan_collect_horizon=12)
    collecting.copy().controller(plan_collect_every=3).validate()
    assert collecting.model_config["plan_collect_horizon"] == 12 and collecting.model_config["plan_collect_every"] == 0
    base.copy().controller(plan_collect=True, plan_collect_horizon=12).validate()  # C deploys, the planner collects
    cfg = base.copy().controller(plan_horizon=8, plan_samples=4)
    cfg.validate()
    assert cfg.model_config["plan_horizon"] == 8 and cfg.model_config["plan_samples"] == 4
    assert cfg.model_config["plan_collect"] is False
    assert base.copy().controller(plan_horizon=8, plan_collect=True).model_config["plan_collect"] is True
    with pytest.raises(ValueError, match="plan_rollouts='all'"):
        base.copy().controller(plan_horizon=8, plan_rollouts="all").validate()
    assert cfg.model_config["plan_rollouts"] == "controller"
    parallel = base.copy().controller(plan_horizon=8, plan_rollouts="parallel")
    parallel.validate()
    assert parallel.model_config["plan_rollouts"] == "parallel"
    with pytest.raises(ValueError, match="plan_terminal_value=-5 must be a finite number >= 0"):
        base.copy().controller(plan_horizon=8, plan_terminal_value=-5).validate()
    credited = base.copy().controller(plan_horizon=8, plan_terminal_value=100)
    credited.validate()
    assert credited.model_config["plan_terminal_value"] == 100 and credited.plan_settings().terminal_value == 100.0


def test_the_acting_module_holds_its_rollouts_setting_in_a_buffer():
    module, batch = planning_module(6, plan_rollouts="parallel")
    assert float(module.plan_rollouts) == 1.0 and module.planner().num_policies == 4
    assert (module.forward_inference(batch)[Columns.ACTIONS] != DEADLY).all()
    module.plan_rollouts.fill_(0)  # a buffer, as every planning setting: the planner is rebuilt on change
    assert module.plan_settings().rollouts == "controller" and module.planner().num_policies == 1
    with pytest.raises(ValueError, match="plan_rollouts='both'"):
        planning_module(1, plan_rollouts="both")
    credited, _ = planning_module(1, plan_terminal_value=100.0)  # a buffer too: it travels with weight syncs
    assert float(credited.plan_terminal_value) == 100.0 and credited.planner().settings.terminal_value == 100.0
    credited.plan_terminal_value.fill_(0.0)
    assert credited.planner().settings.terminal_value == 0.0
    with pytest.raises(ValueError, match="plan_terminal_value=-1"):
        planning_module(1, plan_terminal_value=-1)
