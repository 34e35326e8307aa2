"""The dream's anti-exploit and exploration levers on constructed models whose answers are known exactly."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.dream import DreamSettings, DreamSimulator
from rllib_worldmodel.losses import mdn_rnn_loss
from rllib_worldmodel.models.mdn_rnn import MDNOutput
from rllib_worldmodel.schedules import Schedule

Z, E = 2, 2


def constructed_model(done_bias=(-50.0, -50.0)) -> rw.WorldModel:
    """Two members with constant predictions: member 0 expects z' = (0, 0), member 1 z' = (2, 0); sigma = 1, r = 1."""
    cfg = rw.WorldModelConfig(
        obs_kind="vector",
        obs_shape=(3,),
        action_kind="discrete",
        action_dim=2,
        z_size=Z,
        rnn_size=4,
        num_mixtures=1,
        num_heads=E,
    )
    model = rw.WorldModel(cfg)
    m = model.mdn_rnn
    with torch.no_grad():
        for head in (m.mdn_head, m.reward_head, m.done_head):
            head.weight.zero_()
        m.mdn_head.bias.zero_()  # layout (E, Z, [logpi, mu, logsigma], K): logsigma 0 -> sigma 1
        m.mdn_head.bias[(1 * Z + 0) * 3 + 1] = 2.0  # member 1, dim 0, mu
        m.reward_head.bias.fill_(1.0)
        m.done_head.bias.copy_(torch.tensor(done_bias))
    model.set_initial_states(torch.zeros(5, Z), torch.full((5, Z), -30.0))
    return model.eval()


def step(settings: DreamSettings, model=None, b: int = 64):
    sim = DreamSimulator(model or constructed_model(), settings)
    sim.reset(b, seed=0)
    obs, reward, term, trunc = sim.step(torch.zeros(b, dtype=torch.long))
    return sim, reward, term


def test_disagreement_and_pessimism_penalty():
    # per-dimension variance over the members' means: dim 0 -> ((0-1)^2 + (2-1)^2) / 2 = 1, dim 1 -> 0; mean 0.5
    sim, reward, _ = step(DreamSettings(pessimism=0.4))
    torch.testing.assert_close(sim.reward_parts["disagreement"], torch.full((64,), 0.5))
    torch.testing.assert_close(sim.reward_parts["penalty"], torch.full((64,), 0.2))
    torch.testing.assert_close(reward, torch.full((64,), 0.8))  # extrinsic 1 - 0.4 * 0.5
    torch.testing.assert_close(sim.reward_parts["extrinsic"], torch.ones(64))


def test_curiosity_bonuses():
    sim, reward, _ = step(DreamSettings(curiosity=2.0, curiosity_bonus="disagreement"))
    torch.testing.assert_close(reward, torch.full((64,), 2.0))  # 1 + 2 * 0.5
    torch.testing.assert_close(sim.reward_parts["intrinsic"], torch.full((64,), 1.0))
    # surprise: NLL per dim of M's own sample under the sampling member, sigma 1: 0.5 log(2 pi) + 0.5 mean(eps^2)
    sim, reward, _ = step(DreamSettings(curiosity=1.0, curiosity_bonus="surprise", temperature=1e-8))
    torch.testing.assert_close(
        sim.reward_parts["intrinsic"], torch.full((64,), 0.5 * math.log(2 * math.pi)), atol=1e-3, rtol=0
    )
    # novelty: distance from z' to the nearest reference latent / sqrt(Z); members pick z' = (0,0) or (2,0)
    sim = DreamSimulator(constructed_model(), DreamSettings(curiosity=1.0, curiosity_bonus="novelty"))
    sim.set_novelty_reference(torch.zeros(1, Z))
    sim.reset(64, seed=0)
    sim.step(torch.zeros(64, dtype=torch.long))
    expected = sim.z.norm(dim=-1) / math.sqrt(Z)
    torch.testing.assert_close(sim.reward_parts["intrinsic"], expected)
    assert (sim.z[:, 0] > 1.0).any() and (sim.z[:, 0] < 1.0).any()  # both members were sampled


def test_done_ensemble_mean_versus_pessimistic_max():
    model = constructed_model(done_bias=(50.0, -50.0))  # member 0 says dead, member 1 alive: mean p = 0.5
    _, _, term = step(DreamSettings(done_ensemble="mean"), model)
    assert not term.any()
    _, _, term = step(DreamSettings(done_ensemble="max"), model)
    assert term.all()


def test_deterministic_dream_and_initial_noise():
    model = constructed_model()
    a = DreamSimulator(model, DreamSettings(deterministic=True, seed=1))
    b = DreamSimulator(model, DreamSettings(deterministic=True, seed=2))
    a.reset(8), b.reset(8)
    assert torch.equal(a.z, b.z)  # initial logvar -30: starts are the stored means
    noisy = DreamSimulator(model, DreamSettings(initial_noise=1.0, seed=0))
    noisy.reset(4000)
    assert noisy.z.std().item() == pytest.approx(1.0, abs=0.05)


def test_reward_range_clips_what_the_dream_pays():
    _, reward, _ = step(DreamSettings())
    torch.testing.assert_close(reward, torch.ones(64))  # the constructed reward head predicts 1
    _, reward, _ = step(DreamSettings(reward_range=[-5, 0.25]))
    torch.testing.assert_close(reward, torch.full((64,), 0.25))
    assert DreamSettings.from_dict({"reward_range": [-5, 1]}).reward_range == (-5.0, 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pessimism": -1.0}, "pessimism"),
        ({"curiosity": -0.1}, "curiosity"),
        ({"curiosity_bonus": "fun"}, "curiosity_bonus"),
        ({"done_ensemble": "min"}, "done_ensemble"),
        ({"initial_noise": float("nan")}, "initial_noise"),
        ({"reward_range": (1.0, 0.0)}, "reward_range"),
        ({"reward_range": (0.0,)}, "reward_range"),
    ],
)
def test_bad_dream_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DreamSettings(**kwargs)


def test_ensemble_levers_need_an_ensemble(image_world_model):
    with pytest.raises(ValueError, match="num_heads >= 2"):
        DreamSimulator(image_world_model, DreamSettings(pessimism=1.0))
    with pytest.raises(ValueError, match="num_heads >= 2"):
        DreamSimulator(image_world_model, DreamSettings(curiosity=1.0, curiosity_bonus="disagreement"))
    DreamSimulator(image_world_model, DreamSettings(curiosity=1.0, curiosity_bonus="novelty"))  # no ensemble needed


def test_ensemble_loss_uses_each_members_bootstrap_rows():
    torch.manual_seed(0)
    b, t, k = 2, 3, 2
    pred = MDNOutput(
        torch.log_softmax(torch.randn(E, b, t, Z, k), -1),
        torch.randn(E, b, t, Z, k),
        torch.randn(E, b, t, Z, k) * 0.1,
        torch.randn(E, b, t),
        torch.randn(E, b, t),
    )
    z_next, r, done = torch.randn(b, t, Z), torch.randn(b, t), torch.zeros(b, t)
    kw = {"loss_weights": {"mdn": 1.0, "reward": 1.0, "done": 1.0}, "done_pos_weight": 10.0}
    total, _ = mdn_rnn_loss(
        pred, z_next, r, done, None, member_weights_E_B=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), **kw
    )
    only = [
        mdn_rnn_loss(
            MDNOutput(*(x[e, e : e + 1] for x in pred)), z_next[e : e + 1], r[e : e + 1], done[e : e + 1], None, **kw
        )[0]
        for e in range(E)
    ]
    torch.testing.assert_close(total, (only[0] + only[1]) / 2)


def test_schedules():
    assert Schedule(1.15, "temperature", strict=True).value(7) == 1.15
    lin = Schedule(("linear", 1.3, 1.0, 3), "temperature", strict=True)
    assert [round(lin.value(i), 6) for i in range(5)] == [1.3, 1.2, 1.1, 1.0, 1.0]
    per = Schedule([0.0, 0.5, 1.0], "curiosity")
    assert [per.value(i) for i in range(5)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert per.max_value() == 1.0
    with pytest.raises(ValueError, match="temperature"):
        Schedule(0.0, "temperature", strict=True)
    with pytest.raises(ValueError, match="pessimism"):
        Schedule([0.1, -1.0], "pessimism")
    with pytest.raises(ValueError, match="linear"):
        Schedule(("linear", 1.0, 0.5), "temperature")
    with pytest.raises(ValueError, match="per-round"):
        Schedule("high", "curiosity")


def test_death_calibration_matches_the_real_survival():
    """Constant done logit b: sampled deaths are geometric with p = sigmoid(b + offset - log w); survival 1/p."""
    from rllib_worldmodel.calibration import calibrate_done_offset, random_hold_survival

    model = constructed_model(done_bias=(-6.0, -6.0))
    settings = DreamSettings(done_mode="sample", max_episode_steps=2000)
    w = model.config.done_pos_weight
    offset, survival = calibrate_done_offset(model, settings, real_mean_length=20.0, num_dreams=512, steps=10)
    expected = math.log(0.05 / 0.95) + math.log(w) + 6.0  # logit of p = 1/20, undoing the weighting and the bias
    assert offset == pytest.approx(expected, abs=0.3)
    assert survival == pytest.approx(20.0, rel=0.15)
    lengths = random_hold_survival(model, dataclasses.replace(settings, done_logit_offset=offset), 512, seed=3)
    assert lengths.mean().item() == pytest.approx(20.0, rel=0.15)
    with pytest.raises(ValueError, match="real_mean_length"):
        calibrate_done_offset(model, settings, real_mean_length=0.0)
    # a logit scale of 4 moves the matching offset to ~ +23, far past the first window (-4, 8): the search widens
    short = dataclasses.replace(settings, max_episode_steps=200)  # the too-safe dreams of the first window end early
    offset, survival = calibrate_done_offset(
        model, dataclasses.replace(short, done_logit_scale=4.0), 20.0, num_dreams=256, steps=10
    )
    assert offset == pytest.approx(expected + 18.0, abs=0.3)
    assert survival == pytest.approx(20.0, rel=0.15)
    # and the other way: logits of +10 need an offset of ~ -10.6, below the window
    offset, _ = calibrate_done_offset(constructed_model(done_bias=(10.0, 10.0)), short, 20.0, num_dreams=256, steps=10)
    assert offset == pytest.approx(expected - 16.0, abs=0.3)


def test_death_calibration_to_a_controllers_real_return():
    """`dream_score` anchors the deaths to another policy: here a controller whose dream return is its survival
    (reward 1 a step), so the offset that gives it a return of 20 is the one that gives any policy 20 steps."""
    from rllib_worldmodel.calibration import calibrate_done_offset, controller_dream_return

    model = constructed_model(done_bias=(-6.0, -6.0))
    settings = DreamSettings(done_mode="sample", max_episode_steps=2000)
    controller = rw.Controller(rw.ControllerInput().size(model.config), gym.spaces.Discrete(2))
    params = controller.get_flat()
    seen = []

    def dream_score(s: DreamSettings) -> float:
        seen.append(s.done_logit_offset)
        return controller_dream_return(model, s, controller, params, num_dreams=512, seed=1, action_repeat=3)

    offset, score = calibrate_done_offset(model, settings, 20.0, steps=10, dream_score=dream_score)
    expected = math.log(0.05 / 0.95) + math.log(model.config.done_pos_weight) + 6.0
    assert offset == pytest.approx(expected, abs=0.3)
    assert score == pytest.approx(20.0, rel=0.15)
    assert len(set(seen)) == len(seen) == 11  # offset 0, then one per bisection step, all through dream_score
    # the same seed replays the same dreams: the score of the returned offset is reproduced exactly
    calibrated = dataclasses.replace(settings, done_logit_offset=offset)
    assert controller_dream_return(model, calibrated, controller, params, 512, seed=1, action_repeat=3) == score


@pytest.mark.parametrize("true_scale", [0.5, 2.5])
def test_fit_done_logit_scale_recovers_the_scale_real_deaths_follow(true_scale):
    """Episodes whose deaths are drawn from p = mean over members of death_probability(scale * logit - 1) of M's own
    varying done logits: Platt scaling on them finds that scale, whether the head as fitted is over- or
    under-confident, and the fitted likelihood beats the head as fitted and an offset alone."""
    from rllib_worldmodel.calibration import fit_done_logit_scale

    torch.manual_seed(0)
    model = constructed_model()
    with torch.no_grad():
        model.mdn_rnn.done_head.weight.normal_(0.0, 10.0)  # logits that differ from state to state (std ~0.8)
        model.mdn_rnn.done_head.bias.fill_(-1.0)
    truth = DreamSettings(done_mode="sample", done_logit_scale=true_scale, done_logit_offset=-1.0)
    gen = torch.Generator().manual_seed(1)
    episodes = []
    for _ in range(400):
        z = torch.randn(120, Z, generator=gen)
        actions = torch.nn.functional.one_hot(torch.randint(0, 2, (120,), generator=gen), 2).float()
        p = truth.death_probability(model, model.teacher_forced_done_logits(z, actions))
        dies = (torch.rand(120, generator=gen) < p).nonzero()
        t = int(dies[0]) + 1 if len(dies) else 120  # an episode ends at its first death
        episodes.append((z[:t], torch.zeros(t, Z), actions[:t], bool(len(dies))))
    fit = fit_done_logit_scale(model, episodes)
    assert fit["scale"] == pytest.approx(true_scale, rel=0.15)
    assert fit["nll"] < fit["nll_offset_only"] < fit["nll_as_fitted"]
    assert fit["deaths"] == sum(ep[3] for ep in episodes) and fit["steps"] == sum(len(ep[2]) for ep in episodes)
    with pytest.raises(ValueError, match="done_mode"):
        fit_done_logit_scale(model, episodes, DreamSettings(done_mode="threshold"))
    with pytest.raises(ValueError, match="terminated"):
        fit_done_logit_scale(model, [(z, z, actions, False)])


class _SurvivalEnv(gym.Env):
    """64x64x3 frames, Discrete(3); the episode lasts 5 + 10 * (action 2 taken at the first step) steps."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cap = 0, None
        return np.zeros((64, 64, 3), np.uint8), {}

    def step(self, action):
        if self.cap is None:
            self.cap = 15 if int(action) == 2 else 5
        self.t += 1
        return np.zeros((64, 64, 3), np.uint8), 1.0, self.t >= self.cap, False, {}


def test_ranking_fidelity_compares_reference_policies(image_world_model):
    from rllib_worldmodel.fidelity import ranking_fidelity, real_episodes, reference_policies

    policies = reference_policies(gym.spaces.Discrete(3))
    assert set(policies) == {"random hold 1-10", "uniform random", "always 0", "always 1", "always 2"}
    env = _SurvivalEnv()
    assert [len(ep) for ep in real_episodes(env, (1, 1), 2, episodes=3)] == [15] * 3
    assert [len(ep) for ep in real_episodes(env, (1, 1), 0, episodes=3)] == [5] * 3
    settings = DreamSettings(max_episode_steps=20, done_mode="sample")
    result = ranking_fidelity(image_world_model, settings, env, episodes=4, num_dreams=16)
    rows = {r["policy"]: r for r in result["rows"]}
    assert rows["always 2"]["real_mean"] == 15 and rows["always 1"]["real_mean"] == 5
    # one death per episode: deaths per step = 1 / length; M's view of the same frames is a probability
    assert rows["always 2"]["real_hazard"] == pytest.approx(1 / 15) and rows["always 1"]["real_hazard"] == 0.2
    assert all(0 < r["model_hazard_on_real"] < 1 and 0 < r["dream_hazard_on_real"] < 1 for r in rows.values())
    assert all(0 < r["dream_mean"] <= 20 for r in rows.values())
    assert -1.0 <= result["spearman_rho"] <= 1.0


class _ActionLog(_SurvivalEnv):
    """_SurvivalEnv that records every action and lasts 40 steps."""

    def reset(self, *, seed=None, options=None):
        self.actions = []
        return super().reset(seed=seed)

    def step(self, action):
        self.actions.append(int(action))
        self.t += 1
        return np.zeros((64, 64, 3), np.uint8), 1.0, self.t >= 40, False, {}


def test_sweep_reference_policy_alternates_in_the_real_env_and_in_the_dream(image_world_model, monkeypatch):
    """A sweep plays its actions in turn, each held exactly N steps, from a random place in the cycle."""
    import rllib_worldmodel.calibration as calibration
    from rllib_worldmodel.fidelity import real_episodes, reference_policies

    policies = reference_policies(gym.spaces.Discrete(3), sweeps=(10,))
    sweep = policies["sweep 1/2 every 10"]
    assert sweep == {"hold": (10, 10), "fixed_action": None, "cycle": (1, 2)}
    env = _ActionLog()
    assert len(real_episodes(env, sweep["hold"], None, episodes=1, seed=5, cycle=sweep["cycle"])[0]) == 40
    runs = [env.actions[i : i + 10] for i in range(0, 40, 10)]
    assert all(len(set(r)) == 1 for r in runs)  # each action held 10 steps
    assert [r[0] for r in runs] in ([1, 2, 1, 2], [2, 1, 2, 1])

    seen = []

    class Recording(calibration.DreamSimulator):
        def step(self, action):
            seen.append(action.clone())
            return super().step(action)

    monkeypatch.setattr(calibration, "DreamSimulator", Recording)
    settings = DreamSettings(max_episode_steps=30, done_mode="expected")  # no drawn deaths: every dream runs 30 steps
    calibration.random_hold_survival(image_world_model, settings, 8, sweep["hold"], seed=1, cycle=sweep["cycle"])
    actions = torch.stack(seen, 1)  # (8 dreams, 30 steps)
    assert set(actions.unique().tolist()) <= {1, 2}
    assert (actions[:, :10] == actions[:, :1]).all() and (actions[:, 10:20] == 3 - actions[:, :1]).all()
    assert (actions[:, 20:] == actions[:, :1]).all()
    with pytest.raises(ValueError, match="sweeps"):
        reference_policies(gym.spaces.Discrete(3), sweeps=(10,), sweep_actions=(1, 3))


def test_death_calibration_plays_the_collection_policy_holds(monkeypatch):
    """The calibration target is the real survival of the collection policy, so the dream plays the same holds."""
    import rllib_worldmodel.calibration as calibration

    holds = []
    real = calibration.random_hold_survival

    def spy(world_model, settings, num_dreams=256, hold=(1, 10), *args, **kwargs):
        holds.append(tuple(hold))
        return real(world_model, settings, num_dreams, hold, *args, **kwargs)

    monkeypatch.setattr(calibration, "random_hold_survival", spy)
    model = constructed_model(done_bias=(-4.0, -4.0))
    settings = DreamSettings(done_mode="sample", max_episode_steps=200)
    calibration.calibrate_done_offset(model, settings, 20.0, num_dreams=32, steps=2, hold=(30, 60))
    assert holds and set(holds) == {(30, 60)}


def test_model_hazard_on_real_frames_is_the_done_heads_death_probability():
    """Constant done logits (-2, -4): the mean over members is -3, minus the BCE's log positive weight."""
    from rllib_worldmodel.data import Episode
    from rllib_worldmodel.fidelity import model_hazard_on_real

    model = constructed_model(done_bias=(-2.0, -4.0))
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            rng.normal(size=(n + 1, 3)).astype(np.float32), rng.integers(0, 2, n), np.ones(n, np.float32), True, False
        )
        for n in (7, 30)
    ]
    want = 1 / (1 + math.exp(3.0 + math.log(model.config.done_pos_weight)))
    assert model_hazard_on_real(model, episodes, batch_size=4) == pytest.approx(want, rel=1e-5)
    # as a dream applies it: each member's logit scaled and offset, p per member, then the ensemble rule
    settings = DreamSettings(done_mode="sample", done_logit_scale=2.0, done_logit_offset=1.5)
    p = [1 / (1 + math.exp(-(2.0 * b + 1.5 - math.log(model.config.done_pos_weight)))) for b in (-2.0, -4.0)]
    assert model_hazard_on_real(model, episodes, settings=settings) == pytest.approx(sum(p) / 2, rel=1e-5)
    worst = dataclasses.replace(settings, done_ensemble="max")
    assert model_hazard_on_real(model, episodes, settings=worst) == pytest.approx(max(p), rel=1e-5)
    # threshold deaths: 1 at every step where the dream would end (mean of sigmoid(4) and sigmoid(0) > 0.5), else 0
    ends = DreamSettings(done_mode="threshold", done_logit_scale=2.0, done_logit_offset=8.0)
    assert model_hazard_on_real(model, episodes, settings=ends) == 1.0
    assert model_hazard_on_real(model, episodes, settings=dataclasses.replace(ends, done_logit_offset=0.0)) == 0.0


def _action_danger_episodes(env_policy: dict, episodes: int, seed: int):
    """Real episodes of a reference policy on a 30-step image env, with events drawn at 30% of the no-op steps:
    the danger depends only on the action just taken, which M's LSTM state reads directly."""
    from rllib_worldmodel.fidelity import real_episodes

    class Frames(_ActionLog):
        def step(self, action):
            self.t += 1
            return np.zeros((64, 64, 3), np.uint8), 1.0, self.t >= 30, False, {}

    rng = np.random.default_rng(seed)
    recorded = real_episodes(Frames(), env_policy["hold"], env_policy["fixed_action"], episodes, seed)
    events = [((ep.actions == 0) & (rng.random(len(ep.actions)) < 0.3)).astype(np.float32) for ep in recorded]
    return recorded, events


def test_danger_fidelity_separates_what_the_state_knows_from_where_the_dream_goes(image_world_model):
    from rllib_worldmodel.fidelity import danger_fidelity, dreamed_states, RecordedPolicy, reference_policies

    specs = reference_policies(gym.spaces.Discrete(3))
    policies = {}
    for k, name in enumerate(["always 0", "uniform random", "always 1"]):
        recorded, events = _action_danger_episodes(specs[name], 8, seed=10 * k)
        policies[name] = RecordedPolicy(specs[name], recorded, events)
    settings = DreamSettings(done_mode="sample", max_episode_steps=5)  # the dream's own cap does not cut the states
    torch.manual_seed(0)
    banked = image_world_model.branch_states.clone()
    result = danger_fidelity(
        image_world_model,
        settings,
        policies,
        num_dreams=16,
        steps=20,
        epochs=60,
        seed=0,
        horizons=(1, 10),
        start_every=5,
    )
    rows = {r["policy"]: r for r in result["rows"]}
    assert rows["always 1"]["real_event_rate"] == 0.0 and rows["always 0"]["real_event_rate"] > 0.2
    # the probe learns "no-op was just pressed" from M's state: on held-out real states and in the dream alike
    assert rows["always 0"]["probe_on_real"] == pytest.approx(rows["always 0"]["real_event_rate"], abs=0.1)
    assert rows["always 1"]["probe_on_real"] < 0.05
    # dreamed latents are M's samples, not V's codes of the real frames: the levels move, the order must not
    assert (
        rows["always 0"]["probe_on_dream"]
        > rows["uniform random"]["probe_on_dream"]
        > rows["always 1"]["probe_on_dream"]
    )
    assert result["rho_probe_real"] == pytest.approx(1.0) and result["rho_probe_dream"] == pytest.approx(1.0)
    assert result["probe_auc"] > 0.8 and result["events"] > 0
    # an untrained done head: the same near-constant probability on every state, real or dreamed
    assert all(0 < r["done_head_on_real"] < 1 and 0 < r["done_head_on_dream"] < 1 for r in rows.values())
    assert dreamed_states(image_world_model, settings, 4, 20, (1, 1), fixed_action=2).shape == (20, 4, 16)
    # dreams from the held-out episodes' real states, with the real actions that followed: same order, the model's
    # own branch points untouched
    one, ten = result["horizon_rows"]
    assert (one["steps"], ten["steps"]) == (1, 10) and torch.equal(image_world_model.branch_states, banked)
    assert [r["starts"] for r in one["rows"]] == [4 * 6] * 3 and [r["starts"] for r in ten["rows"]] == [4 * 5] * 3
    assert ten["rho_dream_vs_real_states"] == pytest.approx(1.0)
    assert one["rho_probe_dream"] == pytest.approx(1.0) and ten["rho_probe_dream"] == pytest.approx(1.0)
    # one step from a real state reads the real frame's latent and the real action: without V's posterior noise
    # (deterministic dreams start at its mean, as the real states read it) the dreamed state IS the real one
    exact = danger_fidelity(
        image_world_model, dataclasses.replace(settings, deterministic=True), policies, 4, 2, epochs=5, horizons=(1,)
    )
    for r in exact["horizon_rows"][0]["rows"]:
        assert r["probe_on_dream"] == pytest.approx(r["probe_on_real"], rel=1e-4)
    with pytest.raises(ValueError, match="horizons"):
        danger_fidelity(image_world_model, settings, policies, horizons=(0,))
    with pytest.raises(ValueError, match="at least two policies"):
        danger_fidelity(image_world_model, settings, {"always 0": policies["always 0"]})


def test_recorded_policy_events_default_to_terminations_and_are_checked():
    from rllib_worldmodel.data import Episode
    from rllib_worldmodel.fidelity import RecordedPolicy, StateProbe

    obs = np.zeros((4, 3), np.float32)
    died, cut = (
        Episode(obs, np.zeros(3, int), np.ones(3), True, False),
        Episode(obs, np.zeros(3, int), np.ones(3), False, True),
    )
    spec = {"hold": (1, 1), "fixed_action": 0, "cycle": None}
    assert [e.tolist() for e in RecordedPolicy(spec, [died, cut]).event_arrays()] == [[0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="one \\(T,\\) array per episode"):
        RecordedPolicy(spec, [died], [np.zeros(2)]).event_arrays()
    with pytest.raises(ValueError, match="both events and non-events"):
        StateProbe(torch.zeros(5, 2), np.zeros(5))
    with pytest.raises(ValueError, match="one label per state"):
        StateProbe(torch.zeros(5, 2), np.ones(4))
