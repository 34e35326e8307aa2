"""C distilled from the planner: fitted to the planner's dreamed scores at real states, it takes the planner's picks."""

import gymnasium as gym
import pytest
import torch

from rllib_worldmodel.config import WorldModelsConfig
from rllib_worldmodel.distill import (
    distill_planner,
    DistillSettings,
    fit_to_scores,
    label_noise,
    planner_scores,
    real_states,
    regret,
)
from rllib_worldmodel.models.controller import Controller, ControllerInput
from rllib_worldmodel.planning import DreamPlanner, PlanSettings
from tests.conftest import make_image_world_model
from tests.test_planning import DEADLY, deadly_action_world_model, fixed_controller


def encoded_episodes(model, lengths, seed=0):
    """Fake encoded real episodes (V's posterior means and log-variances, one-hot actions, terminated)."""
    g = torch.Generator().manual_seed(seed)
    zs, n = model.config.z_size, model.config.action_dim
    out = []
    for length in lengths:
        actions = torch.nn.functional.one_hot(torch.randint(0, n, (length,), generator=g), n).float()
        out.append((torch.randn(length, zs, generator=g), torch.full((length, zs), -4.0), actions, True))
    return out


def test_regret_is_what_the_chosen_action_loses_against_the_best():
    scores = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    logits = torch.tensor([[0.0, 0.0, 9.0], [0.0, 9.0, 0.0]])  # picks action 2, then action 1
    torch.testing.assert_close(regret(logits, scores), torch.tensor([1.0, 0.0]))


def test_a_linear_c_learns_a_linear_choice_from_scores():
    """The best action is 0 where x[0] > 0 and 1 elsewhere (2 is always worst): C, from zero weights, learns it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=g)
    right = (x[:, 0] > 0).float()
    scores = torch.stack([right, 1 - right, torch.full_like(right, -1.0)], dim=-1)
    c = Controller(6, gym.spaces.Discrete(3))
    with torch.no_grad():
        for p in c.parameters():
            p.zero_()
    m = fit_to_scores(c, x, scores, DistillSettings(states=1, epochs=30, lr=1e-2, batch_size=256), seed=0)
    assert set(m) == {
        "dream/distill_states",
        "dream/distill_regret_before",
        "dream/distill_agreement_before",
        "dream/distill_regret_random",
        "dream/distill_regret_after",
        "dream/distill_agreement_after",
    }
    assert m["dream/distill_states"] == 2000
    assert m["dream/distill_agreement_after"] > 0.93 and m["dream/distill_regret_after"] < 0.08
    assert m["dream/distill_regret_before"] == pytest.approx(0.5, abs=0.05)  # zero logits pick 0: wrong half the time
    assert m["dream/distill_regret_random"] == pytest.approx(1.0, abs=0.05)  # mean over 1, 0, -1 against 1


def test_real_states_take_the_newest_episodes_with_the_action_before_each_state():
    model = make_image_world_model(z_size=8, rnn_size=16, n_actions=3)
    episodes = encoded_episodes(model, [10, 7, 9])
    z, h, c, prev = real_states(model, episodes, every=3, max_states=6, generator=torch.Generator().manual_seed(0))
    # newest first: the last episode has states at steps 0, 3, 6 (3 states), the one before at 0, 3, 6 (3 more)
    assert z.shape == (6, 8) and h.shape == (6, 16) and c.shape == (6, 16) and prev.shape == (6, 3)
    second, third = episodes[1], episodes[2]
    torch.testing.assert_close(prev[0], torch.zeros(3))  # an episode start: no action before it
    torch.testing.assert_close(prev[1], second[2][2])  # step 3 of the middle episode: its action at step 2
    torch.testing.assert_close(prev[5], third[2][5])
    # z is drawn from V's posterior of that very frame (std exp(-2) here)
    assert (z[3] - third[0][0]).abs().max() < 1.0 and not torch.equal(z[3], third[0][0])
    # M's state after the real history: zero at a start, not zero later
    assert (h[0] == 0).all() and (h[1] != 0).any()


def test_real_states_are_the_acting_agents_m_reads_the_same_drawn_z_it_acts_on():
    """As `WorldModelsRLModule` does: the z drawn for a frame is C's input and M's next input alike."""
    model = make_image_world_model(z_size=8, rnn_size=16, n_actions=3)
    (episode,) = encoded_episodes(model, [6])
    z, h, c, prev = real_states(model, [episode], every=1, max_states=6, generator=torch.Generator().manual_seed(1))
    for t in range(5):
        h_next, c_next = model.mdn_rnn.step(z[t : t + 1], episode[2][t : t + 1], (h[t : t + 1], c[t : t + 1]))
        torch.testing.assert_close(h_next[0], h[t + 1])
        torch.testing.assert_close(c_next[0], c[t + 1])
    z_mean, *_ = real_states(model, [episode], every=1, max_states=6, real_z="mean")
    torch.testing.assert_close(z_mean, episode[0])
    with pytest.raises(ValueError, match="real_z='mode'"):
        real_states(model, [episode], every=1, max_states=6, real_z="mode")


def test_distilled_c_stops_taking_the_action_the_dream_says_kills():
    """C always takes the deadly action; the planner (which looks one decision ahead) scores it lowest at every
    real state, and the fitted C no longer takes it there."""
    model = deadly_action_world_model()
    controller = fixed_controller(model, DEADLY)
    planner = DreamPlanner(model, controller, ControllerInput(), PlanSettings(horizon=2, samples=2), interval=2)
    episodes = encoded_episodes(model, [12, 12, 12])
    episodes = [
        (mu, lv, torch.nn.functional.one_hot(torch.zeros(len(a), dtype=torch.long), 3).float(), t)
        for mu, lv, a, t in episodes
    ]  # real histories without the deadly action (M's memory is clean)
    m = distill_planner(planner, episodes, DistillSettings(states=18, epochs=200, lr=5e-2, val_fraction=0.0))
    assert m["dream/distill_states"] == 18
    assert m["dream/distill_agreement_before"] == 0.0 and m["dream/distill_regret_before"] > 0.5
    assert m["dream/distill_regret_after"] < 0.01
    z, h, c, prev = real_states(model, episodes, every=2, max_states=18)
    assert (controller.act(ControllerInput().build(z, h, c, prev)) != DEADLY).all()  # fitted in place


def test_label_noise_reads_how_far_the_planners_labels_repeat():
    """A dream without noise in the outcome labels alike twice (agreement 1, regret 0); in a noisy dream one
    look-ahead dream per action repeats its pick less often, and loses more under the second draw, than 64 do."""
    model = deadly_action_world_model()
    planner = DreamPlanner(
        model, fixed_controller(model, 0), ControllerInput(), PlanSettings(horizon=2, samples=2), interval=2
    )
    z, (h, c), prev = torch.randn(20, 8), model.mdn_rnn.initial_state(20), torch.zeros(20, 3)
    scores = planner_scores(planner, z, h, c, prev)
    assert label_noise(planner, z, h, c, prev, scores, seed=1) == {
        "dream/distill_label_agreement": 1.0,
        "dream/distill_label_regret": 0.0,
    }
    model = make_image_world_model(z_size=8, rnn_size=16, n_actions=3)  # seeded: the same model every run
    with torch.no_grad():
        model.mdn_rnn.done_head.weight.mul_(5)  # deaths that follow the dreamed latents
    z, h, c = torch.randn(300, 8), torch.randn(300, 16) * 0.5, torch.randn(300, 16) * 0.5
    prev = torch.zeros(300, 3)
    read = {}
    for samples in (1, 64):
        wild = PlanSettings(horizon=12, samples=samples, temperature=3.0)  # wild dreams: labels that vary
        planner = DreamPlanner(model, fixed_controller(model, 0), ControllerInput(), wild, 2)
        read[samples] = label_noise(planner, z, h, c, prev, planner_scores(planner, z, h, c, prev), seed=1)
    assert 0 < read[1]["dream/distill_label_agreement"] < 0.97 < read[64]["dream/distill_label_agreement"] <= 1
    assert read[1]["dream/distill_label_regret"] > read[64]["dream/distill_label_regret"] >= 0


def test_distillation_reports_the_label_noise_on_the_held_out_states_only():
    model = deadly_action_world_model()
    planner = DreamPlanner(
        model, fixed_controller(model, DEADLY), ControllerInput(), PlanSettings(horizon=2, samples=2), interval=2
    )
    episodes = encoded_episodes(model, [12, 12, 12])
    m = distill_planner(planner, episodes, DistillSettings(states=18, epochs=5, val_fraction=0.25))
    assert m["dream/distill_label_agreement"] == 1.0 and m["dream/distill_label_regret"] == 0.0
    m = distill_planner(planner, episodes, DistillSettings(states=18, epochs=5, val_fraction=0.0))
    assert "dream/distill_label_agreement" not in m  # nothing held out: no second labelling to pay for


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"states": -1}, "distill_states"),
        ({"states": 5, "every": -2}, "distill_every"),
        ({"states": 5, "epochs": 0}, "distill_epochs"),
        ({"states": 5, "lr": 0.0}, "distill_lr"),
        ({"states": 5, "val_fraction": 0.5}, "distill_val_fraction"),
        ({"states": 5, "deploy": "both"}, "distill_deploy='both' must be one of"),
        ({"states": 5, "check_episodes": -1}, "distill_check_episodes=-1 must be an int >= 0"),
        ({"states": 5, "check_episodes": 2.5}, "distill_check_episodes"),
    ],
)
def test_bad_distill_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistillSettings(**kwargs)


def test_distillation_needs_planning_and_cma_at_config_time():
    with pytest.raises(ValueError, match="distill_states=10 fits C to the planner's choices: set plan_horizon"):
        WorldModelsConfig().environment("CartPole-v1").controller(distill_states=10).validate()
    with pytest.raises(ValueError, match="distill_lr"):
        WorldModelsConfig().environment("CartPole-v1").controller(
            plan_horizon=2, distill_states=10, distill_lr=-1
        ).validate()
    with pytest.raises(ValueError, match="needs trainer='cma'"):
        WorldModelsConfig().environment("CartPole-v1").controller(
            plan_horizon=2, distill_states=10, trainer="rllib"
        ).validate()
    with pytest.raises(ValueError, match="distill_deploy='alone' deploys a fitted C, and distill_states=0 fits none"):
        WorldModelsConfig().environment("CartPole-v1").controller(plan_horizon=2, distill_deploy="alone").validate()
    with pytest.raises(ValueError, match="distill_check_episodes=20 checks a fitted C in the real game"):
        WorldModelsConfig().environment("CartPole-v1").controller(plan_horizon=2, distill_check_episodes=20).validate()


def test_a_continuous_c_is_refused():
    c = Controller(4, gym.spaces.Box(-1.0, 1.0, (2,)))
    with pytest.raises(ValueError, match="discrete actions"):
        fit_to_scores(c, torch.zeros(3, 4), torch.zeros(3, 2), DistillSettings(states=3))
