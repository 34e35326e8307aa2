"""The benchmarks' own machinery that real-game numbers in README.md and RESULTS.md rest on (benchmarks/ are
scripts, loaded by path)."""

import importlib.util
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rllib_worldmodel.models.controller import Controller, ControllerInput
from tests.conftest import make_image_world_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# the scripts import each other by name (as `python benchmarks/x.py` runs them); appended: they shadow nothing, and
# this file then runs alone as in the whole suite (where tests/test_cuda.py appended it too)
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LoggedEnv(gym.Env):
    """64x64x3 frames, Discrete(3), `length` steps of reward 1 then terminated; logs every episode's actions by the
    seed it was reset with."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self, log: dict[int, list[int]], length: int = 7):
        self.log, self.length = log, length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.actions = self.log.setdefault(seed, [])
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        frame = self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        return frame, 1.0, len(self.actions) >= self.length, False, {}


@pytest.fixture(scope="module")
def takecover_tau():
    return load_script("takecover_tau")


def test_play_real_follows_the_controller_with_its_previous_action_and_repeat(takecover_tau):
    """C ignores [z, h] and turns its previous action a into a + 1 (mod 3), starting from 0 where there is none:
    deciding every 2nd step gives 0 0 1 1 2 2 0 in every episode, including those an env plays after its first
    (the previous action and the LSTM state restart with each episode)."""
    wm = make_image_world_model()
    size = ControllerInput(prev_action=True).size(wm.config)
    controller = Controller(size, gym.spaces.Discrete(3))
    with torch.no_grad():
        controller.net.weight.zero_()
        controller.net.weight[:, -3:] = 10.0 * torch.roll(torch.eye(3), 1, dims=0)  # prev a -> output a + 1
        controller.net.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # no previous action -> 0
    log: dict[int, list[int]] = {}
    recorded: dict[int, tuple] = {}
    returns, share = takecover_tau.play_real(
        wm,
        controller,
        episodes=5,
        num_envs=2,
        controller_input=ControllerInput(prev_action=True),
        seed=10,
        recorded=recorded,
        action_repeat=2,
        make_env=lambda: _LoggedEnv(log),
    )
    assert sorted(log) == list(range(10, 15))  # episode i reset with seed + i
    assert all(actions == [0, 0, 1, 1, 2, 2, 0] for actions in log.values())
    np.testing.assert_array_equal(returns, np.full(5, 7.0))
    np.testing.assert_allclose(share, [3 / 7, 2 / 7, 2 / 7])
    assert sorted(recorded) == list(range(5))
    mu, logvar, acts, terminated = recorded[3]
    assert mu.shape == logvar.shape == (7, wm.config.z_size) and terminated
    np.testing.assert_array_equal(acts.argmax(-1).numpy(), [0, 0, 1, 1, 2, 2, 0])


def test_play_real_plays_episode_i_with_candidate_i(takecover_tau):
    """`flats`: every episode its own controller parameters (CMA-ES candidates judged in the real game)."""
    wm = make_image_world_model()
    controller = Controller(ControllerInput().size(wm.config), gym.spaces.Discrete(3))
    flats = []
    for favourite in (2, 1, 0, 2):
        with torch.no_grad():
            controller.net.weight.zero_()
            controller.net.bias.copy_(torch.nn.functional.one_hot(torch.tensor(favourite), 3).float())
        flats.append(controller.get_flat())
    log: dict[int, list[int]] = {}
    returns, _ = takecover_tau.play_real(
        wm, controller, episodes=4, num_envs=3, flats=np.stack(flats), make_env=lambda: _LoggedEnv(log, length=4)
    )
    assert [log[i] for i in range(4)] == [[2] * 4, [1] * 4, [0] * 4, [2] * 4]
    np.testing.assert_array_equal(returns, np.full(4, 4.0))


class _HitEnv(gym.Env):
    """10 steps of 64x64 frames; health is lost on steps 3 and 7 (info["damage"], as DamagePenalty reports it)."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((64, 64, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        damage = 20.0 if self.t in (3, 7) else 0.0
        return np.zeros((64, 64, 3), np.uint8), 1.0, self.t >= 10, False, {"damage": damage}


def test_dream_danger_records_each_episodes_hits_and_the_death():
    danger = load_script("dream_danger")
    spec = {"hold": (100, 100), "fixed_action": None, "cycle": (1, 2)}
    recorded = danger.record(danger.HitLog(_HitEnv()), spec, episodes=3, seed=4)
    assert recorded.spec is spec and len(recorded.episodes) == 3
    want = [0, 0, 1, 0, 0, 0, 1, 0, 0, 1]  # two hits, then the death on the last step
    assert [e.tolist() for e in recorded.event_arrays()] == [want] * 3
    assert all(len(ep.actions) == 10 and len(set(ep.actions.tolist())) == 1 for ep in recorded.episodes)


def test_sweep_baseline_scores_each_period_in_frames_on_real_takecover(tmp_path, capsys):
    """The open-loop bar: one row per period, its length in frames at the frame skip, scored on real episodes."""
    import json

    out = tmp_path / "sweep.json"
    load_script("sweep_baseline").main(
        ["--frame-skip", "4", "--periods", "5", "10", "--episodes", "2", "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["policy"], r["period_frames"], r["real_episodes"]) for r in rows] == [
        ("sweep 1/2 every 5", 20, 2),
        ("sweep 1/2 every 10", 40, 2),
    ]
    assert all(0 < r["real_mean"] <= 2100 for r in rows)  # frames survived, within the 2,100-frame cap
    assert "frame skip 4" in capsys.readouterr().out
    # every episode starting the cycle at its first action: the same seeds replay the same games
    fixed = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in fixed:
        load_script("sweep_baseline").main(
            ["--frame-skip", "4", "--periods", "5", "--episodes", "2", "--start", "first", "--out", str(path)]
        )
    a, b = (json.loads(path.read_text())["rows"][0]["real_returns"] for path in fixed)
    assert a == b and len(a) == 2


def test_a_reference_cycle_starts_at_random_or_where_told():
    import gymnasium as gym

    from rllib_worldmodel.fidelity import ReferencePolicy

    space = gym.spaces.Discrete(3)
    fixed = ReferencePolicy(space, (2, 2), cycle=(1, 2), rng=np.random.default_rng(0), start_turn=0)
    for _ in range(5):
        fixed.reset()
        assert [fixed() for _ in range(4)] == [1, 1, 2, 2]
    free = ReferencePolicy(space, (2, 2), cycle=(1, 2), rng=np.random.default_rng(0))
    firsts = set()
    for _ in range(20):
        free.reset()
        firsts.add(free())
    assert firsts == {1, 2}


def test_cross_dream_scores_each_controller_in_every_dream_and_the_real_game(tmp_path, capsys, monkeypatch):
    """Two Ms on one V: a controller trained in each, scored in both dreams and in real TakeCover; world models
    that do not share V are refused (C reads z, which must mean the same in every dream)."""
    import json

    first, second = make_image_world_model(seed=0), make_image_world_model(seed=1)
    second.vae.load_state_dict(first.vae.state_dict())  # same V, an M of its own
    paths = [str(first.save(tmp_path / "a.pt")), str(second.save(tmp_path / "b.pt"))]
    out = tmp_path / "cross.json"
    budget = ["--cma-population", "4", "--cma-rollouts", "1", "--cma-generations", "1", "--horizon", "10"]
    budget += ["--dream-episodes", "4", "--eval-episodes", "2", "--action-repeat", "5", "--out", str(out)]
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports takecover_tau, as when run as a script
    cross = load_script("cross_dream")
    cross.main(["--world-model", *paths, *budget])
    rows = json.loads(out.read_text())["rows"]
    assert [r["trained_in"] for r in rows] == paths
    for r in rows:
        # an untrained M's rewards are arbitrary: the dream scores only have to exist for every M
        assert list(r["dream_in"]) == paths and np.isfinite(list(r["dream_in"].values())).all()
        assert r["real_episodes"] == 2 and 0 < r["real_mean"] <= 2100  # frames survived in the real game
    assert "dream in M0 | dream in M1" in capsys.readouterr().out
    other = make_image_world_model(seed=2)  # its own V
    with pytest.raises(ValueError, match="does not share the V"):
        cross.main(["--world-model", paths[0], str(other.save(tmp_path / "c.pt")), *budget])


def test_fireball_probe_labels_only_fireballs_on_course_in_their_band():
    probe = load_script("fireball_probe")
    balls = [  # (distance, lateral offset now, lateral offset on arrival)
        np.zeros((0, 3)),  # none in flight
        np.array([[400.0, 90.0, 5.0]]),  # far and to the side now, but aimed at the player
        np.array([[100.0, -20.0, -20.0], [250.0, 5.0, 200.0]]),  # near and on course; mid-way, passing wide
        np.array([[130.0, 0.0, 31.0], [130.0, 0.0, 33.0]]),  # the radius is a strict bound on the arrival offset
    ]
    y = probe.threat_labels(balls, radius=32.0)
    assert y.shape == (4, len(probe.BANDS))
    np.testing.assert_array_equal(y, [[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]])


def test_fireball_probe_reads_c_input_as_c_does(image_world_model):
    """[z, h] at step t pairs z_t with M's state after step t-1 (zeros at the start): what C reads when it acts."""
    probe = load_script("fireball_probe")
    rng = np.random.default_rng(0)
    episodes = [
        {"frames": rng.integers(0, 255, (t, 64, 64, 3), dtype=np.uint8), "actions": rng.integers(0, 3, t)}
        for t in (5, 7)
    ]
    feats = probe.features(image_world_model, episodes)
    wm = image_world_model
    for i, ep in enumerate(episodes):
        z, zh, px = feats["z"][i], feats["z, h"][i], feats["pixels"][i]
        assert z.shape == (len(ep["actions"]), wm.config.z_size) and px.shape == (len(ep["actions"]), 64 * 64 * 3)
        torch.testing.assert_close(zh[:, : wm.config.z_size], z)
        assert (zh[0, wm.config.z_size :] == 0).all()
        h = wm.teacher_forced_states_of([(z, wm.encode_action(torch.as_tensor(ep["actions"])))])[0]
        torch.testing.assert_close(zh[1:, wm.config.z_size :], h[:-1].cpu())


def test_dream_planning_plays_each_seed_through_the_modules_own_planning_path(monkeypatch):
    """The benchmark acts through `forward_inference` (as evaluation EnvRunners do): every episode once, its state
    reset at each episode start, the planned decision held for the action repeat."""
    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports takecover_tau, as when run as a script
    planning = load_script("dream_planning")
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2, "plan_horizon": 4, "plan_samples": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    module.set_random_only(False)
    log: dict[int, list[int]] = {}
    returns = planning.play(module, lambda: _LoggedEnv(log, length=7), episodes=5, seed=30, num_envs=2)
    assert returns.tolist() == [7.0] * 5 and sorted(log) == [30, 31, 32, 33, 34]
    for actions in log.values():
        assert len(actions) == 7 and all(actions[i] == actions[i + 1] for i in (0, 2, 4))
    assert module._planners  # the decisions were planned


def test_dream_planning_counts_each_actions_share_and_the_changes_within_each_episode(monkeypatch):
    """Two envs step episodes 0 and 1 side by side, then episode 2 replaces episode 0: a change is counted only
    between two steps of one episode, never across episodes or rows."""
    from ray.rllib.core.columns import Columns

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    log = load_script("dream_planning").ActionLog(3)
    for episodes, actions in [([0, 1], [1, 2]), ([0, 1], [2, 2]), ([0, 1], [2, 1]), ([2, 1], [0, 1]), ([2], [1])]:
        log([], np.array(episodes), {}, {Columns.ACTIONS: torch.tensor(actions)[:, None]})
    # episode 0: 1, 2, 2 (one change); episode 1: 2, 2, 1, 1 (one); episode 2: 0, 1 (one); 9 steps in all
    assert log.summary() == {
        "action_shares": [round(1 / 9, 4), round(4 / 9, 4), round(4 / 9, 4)],
        "action_changes_per_step": round(3 / 9, 4),
    }


def test_dream_planning_checks_every_row_before_playing_any(monkeypatch):
    import gymnasium as gym

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports takecover_tau, as when run as a script
    planning = load_script("dream_planning")
    rows = planning.plan_rows([50], [25, 3], ["controller"], gym.spaces.Discrete(3), 25)
    assert rows == [(0, 0, "controller"), (50, 25, "controller"), (50, 3, "controller")]  # C alone first
    assert planning.plan_rows([0], [3], ["controller"], gym.spaces.Discrete(3), 25) == [(0, 0, "controller")]  # once
    with pytest.raises(ValueError, match=r"--horizons 12 with --every 25: plan_horizon=12 is shorter than one dec"):
        planning.plan_rows([50, 12], [25, 3], ["controller"], gym.spaces.Discrete(3), 25)


def test_dream_planning_pairs_each_row_with_c_alone_and_with_the_same_agent_reading_draws(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    planning = load_script("dream_planning")

    def row(horizon: int, real_z: str, returns: list[float]) -> dict:
        every = 3 if horizon else 25
        rollouts = "controller" if horizon else None
        return {
            "plan_horizon": horizon,
            "decides_every": every,
            "plan_rollouts": rollouts,
            "real_z": real_z,
            "real_returns": returns,
        }

    rows = [
        row(0, "sample", [10, 20]),
        row(12, "sample", [30, 20]),
        row(0, "mean", [14, 24]),
        row(12, "mean", [30, 60]),
    ]
    planning.add_paired_gains(rows)
    assert "paired_gain_mean" not in rows[0] and [r["paired_gain_mean"] for r in rows[1:]] == [10.0, 4.0, 30.0]
    assert "real_z_gain_mean" not in rows[1]  # read the first way: nothing to pair with
    assert (rows[2]["real_z_gain_mean"], rows[2]["real_z_gain_se"]) == (4.0, 0.0)  # C alone, mean vs draws
    assert (rows[3]["real_z_gain_mean"], rows[3]["real_z_gain_se"]) == (20.0, 20.0 / np.sqrt(2))  # the planner's


def test_dream_planning_pairs_each_row_with_the_fixed_sweep(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    planning = load_script("dream_planning")
    rows = [{"real_returns": [100.0, 200.0, 300.0]}, {"real_returns": [100.0, 260.0, 360.0]}]
    planning.add_sweep_pairing(rows, np.array([100.0, 200.0, 330.0]))
    assert [r["same_as_sweep"] for r in rows] == [2, 1]  # episodes played exactly as long as the sweep
    assert rows[0]["sweep_gain_mean"] == -10.0 and rows[1]["sweep_gain_mean"] == 30.0
    np.testing.assert_allclose(rows[1]["sweep_gain_se"], np.std([0.0, 60.0, 30.0]) / np.sqrt(3))


def test_dream_planning_takes_c_from_a_state_dict_or_another_checkpoint(monkeypatch, tmp_path):
    """`--controller`: a saved state dict, or another WorldModels checkpoint folder whose agent's C is played."""
    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    planning = load_script("dream_planning")
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    with torch.no_grad():
        module.controller.net.weight.normal_()
    module.controller_every.fill_(3)  # a C fitted to a planner deciding every 3 steps
    folder = tmp_path / "checkpoint"
    module.save_to_path(folder / "learner_group" / "learner" / "rl_module" / "default_policy")
    torch.save(module.controller.state_dict(), tmp_path / "c.pt")
    for source, every in ((folder, 3), (tmp_path / "c.pt", None)):  # a file does not say C's interval
        weights, interval = planning.controller_weights(source)
        assert weights.keys() == module.controller.state_dict().keys() and interval == every
        for name, value in module.controller.state_dict().items():
            torch.testing.assert_close(weights[name], value)
    # `--controller-every`: the interval a file's C decides at alone (a file does not say; the checkpoint's otherwise)
    module.world_model.save(tmp_path / "world_model.pt")
    for every, expected in ((7, 7), (None, 3)):
        agent, _ = planning.load_planning_agent(folder, controller=tmp_path / "c.pt", controller_every=every)
        assert int(agent.controller_every) == expected and agent.controller_interval() == expected
    with pytest.raises(ValueError, match="controller_every=0"):
        planning.load_planning_agent(folder, controller=tmp_path / "c.pt", controller_every=0)


def test_dream_planning_plans_with_another_world_model_and_its_calibration(monkeypatch, tmp_path):
    """`--world-model`: V and M (and the calibrated deaths) of another file of the same architecture replace the
    checkpoint's; without it the checkpoint's own model plans, calibrated as exported beside the checkpoint (or
    beside a kept agent's folder)."""
    from rllib_worldmodel.models.world_model import WorldModel
    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    planning = load_script("dream_planning")
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    folder = tmp_path / "checkpoint"
    module.save_to_path(folder / "learner_group" / "learner" / "rl_module" / "default_policy")
    module.world_model.save(tmp_path / "world_model.pt", metadata={"done_logit_offset": -1.0})
    other = WorldModel(module.wm_config)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(1.0)
    other.save(tmp_path / "other.pt", metadata={"done_logit_offset": 2.0})
    own, meta = planning.load_planning_agent(folder, temperature=0.9, samples=3)
    assert meta["done_logit_offset"] == -1.0 and float(own.plan_done_offset) == -1.0  # the dream it plans in
    assert float(own.plan_temperature) == pytest.approx(0.9) and int(own.plan_samples) == 3
    for name, value in module.world_model.state_dict().items():
        torch.testing.assert_close(own.world_model.state_dict()[name], value)
    swapped, meta = planning.load_planning_agent(folder, tmp_path / "other.pt")
    assert meta["done_logit_offset"] == 2.0 and float(swapped.plan_done_offset) == 2.0
    # an agent a run kept (`WorldModels.save_agent`: OUT/agents/iteration_NNN/{agent,world_model.pt}) loads the same
    kept = tmp_path / "agents" / "iteration_003"
    module.save_to_path(kept / "agent")
    module.world_model.save(kept / "world_model.pt", metadata={"done_logit_offset": -0.5})
    alone, meta = planning.load_planning_agent(kept / "agent")
    assert meta["done_logit_offset"] == -0.5 and float(alone.plan_done_offset) == -0.5
    for name, value in module.state_dict().items():
        if name.startswith(("world_model.", "controller")):  # (it sets the planning buffers and random_only itself)
            torch.testing.assert_close(alone.state_dict()[name], value)
    for name, value in other.state_dict().items():
        torch.testing.assert_close(swapped.world_model.state_dict()[name], value)
    torch.testing.assert_close(swapped.controller.net.weight, module.controller.net.weight)  # C stays the agent's


class _SpentEnv(_LoggedEnv):
    """_LoggedEnv whose episode ends once its actions sum to 8 (or after 30 steps): how long it lasts depends on
    what the agent plays, as a real game's does."""

    def step(self, action):
        frame, reward, _, truncated, info = super().step(action)
        return frame, reward, sum(self.actions) >= 8 or len(self.actions) >= 30, truncated, info


def test_dream_planning_replays_the_same_draws_for_the_same_noise_seed_and_others_for_another(monkeypatch, tmp_path):
    """End to end through `main`: with the same --seed and --noise-seed every row plays exactly as before (what
    pairing two runs' files on their seeds rests on); --noise-seed N plays the same games with other draws of V and
    the look-ahead, and the JSON says which."""
    import json

    from rllib_worldmodel.rl_module import WorldModelsRLModule

    planning = load_script("dream_planning")
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    torch.manual_seed(0)
    with torch.no_grad():
        module.controller.net.weight.normal_(0.0, 3.0)  # C's choice follows V's draw of each frame
    folder = tmp_path / "checkpoint"
    module.save_to_path(folder / "learner_group" / "learner" / "rl_module" / "default_policy")
    module.world_model.save(tmp_path / "world_model.pt", metadata={"env_settings": {}})
    logs: list[dict[int, list[int]]] = []

    def make_env():  # one log per run of main: each env of a run appends its episodes' actions by seed
        return _SpentEnv(logs[-1])

    monkeypatch.setattr(planning, "make_takecover", make_env)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # main's thread count stays out of the suite

    def run(name: str, *extra: str) -> dict:
        logs.append({})
        out = tmp_path / f"{name}.json"
        argv = ["dream_planning.py", "--checkpoint", str(folder), "--episodes", "6", "--seed", "40"]
        argv += ["--horizons", "0", "4", "--every", "2", "--samples", "2", "--out", str(out), *extra]
        monkeypatch.setattr(sys, "argv", argv)
        planning.main()
        return json.loads(out.read_text())

    first, again, other = run("first"), run("again"), run("other", "--noise-seed", "7")
    assert (first["noise_seed"], again["noise_seed"], other["noise_seed"]) == (40, 40, 7)  # default: --seed
    assert [r["plan_horizon"] for r in first["rows"]] == [0, 4]
    assert [r["real_returns"] for r in again["rows"]] == [r["real_returns"] for r in first["rows"]]
    assert logs[1] == logs[0] and sorted(logs[0]) == list(range(40, 46))
    assert logs[2] != logs[0] and sorted(logs[2]) == list(range(40, 46))  # the same games, other draws
    assert any(len(set(r["real_returns"])) > 1 for r in first["rows"])  # the episodes' lengths follow the actions


def test_vae_focus_scores_given_world_models_vs_on_the_same_fresh_frames(monkeypatch, tmp_path):
    """`--world-models`: no training; each file's V reconstructs the same frames of fresh random-hold episodes (black
    end frames left out), played in the files' shared env settings; a file's V scores as `salient_metrics` of its
    own reconstruction says. Bad names, missing files and files of other game settings are refused up front."""
    import dataclasses
    import json

    from rllib_worldmodel.models.world_model import read_checkpoint

    focus = load_script("vae_focus")
    plain = make_image_world_model(seed=0)
    sharp = make_image_world_model(seed=1)
    sharp.config = dataclasses.replace(sharp.config, vae_focus_fraction=0.02, vae_focus_weight=10.0)
    settings = {"frame_skip": 4}
    plain.save(tmp_path / "plain.pt", metadata={"env_settings": settings, "real_steps": 100})
    sharp.save(tmp_path / "sharp.pt", metadata={"env_settings": settings, "real_steps": 200})
    made: list[dict] = []

    class _Frames(_LoggedEnv):  # a bright frame at every step, then a black one to end on
        def step(self, action):
            frame, reward, terminated, truncated, info = super().step(action)
            return (np.zeros_like(frame) if terminated else frame), reward, terminated, truncated, info

    def make_env(**kwargs):
        made.append(kwargs)
        return _Frames({}, length=6)

    monkeypatch.setattr(focus, "make_takecover", make_env)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    out = tmp_path / "scores.json"
    argv = ["vae_focus.py", "--world-models", f"plain={tmp_path / 'plain.pt'}", f"sharp={tmp_path / 'sharp.pt'}"]
    monkeypatch.setattr(sys, "argv", [*argv, "--real-episodes", "3", "--out", str(out)])
    focus.main()
    result = json.loads(out.read_text())
    assert made == [settings]  # the files' own game settings
    assert result["settings"]["held_out_frames"] == 3 * 6  # 7 frames an episode, the black last one left out
    rows = {r["variant"]: r for r in result["rows"]}
    assert (rows["plain"]["focus_weight"], rows["sharp"]["focus_weight"]) == (0.0, 10.0)
    assert (rows["plain"]["real_steps"], rows["sharp"]["real_steps"]) == (100, 200)
    # the same frames again: they follow the episodes' seeds only
    frames = focus.held_out_frames(focus.collect_random_episodes(_Frames({}, length=6), 3, hold=(1, 25), seed=0))
    target = frames.astype(np.float32) / 255.0
    for name, model in (("plain", plain), ("sharp", sharp)):
        expected = focus.salient_metrics(focus.reconstruct(model, frames), target, np.median(target, axis=0))
        assert rows[name]["salient_kept"] == pytest.approx(expected["salient_kept"])
        assert rows[name]["recon"] == pytest.approx(expected["recon"], rel=1e-5)
    with pytest.raises(ValueError, match="write NAME=FILE"):
        focus.named_files(["plain.pt"])
    with pytest.raises(ValueError, match="given twice"):
        focus.named_files([f"a={tmp_path / 'plain.pt'}", f"a={tmp_path / 'sharp.pt'}"])
    with pytest.raises(ValueError, match="no file at"):
        focus.named_files([f"a={tmp_path / 'missing.pt'}"])
    assert focus.shared_env_settings({}) == {}  # no files: the default game
    plain.save(tmp_path / "other.pt", metadata={"env_settings": {"frame_skip": 1}})
    with pytest.raises(ValueError, match="other's env settings"):
        focus.shared_env_settings({n: read_checkpoint(tmp_path / f"{n}.pt")["metadata"] for n in ("plain", "other")})


def test_planner_foresight_records_every_decision_and_holds_actions_within_the_switch_margin(monkeypatch):
    """The recorder sees each decision's candidate scores at the step it was made, the health before each step,
    and with a huge switch margin the agent never leaves its first decision."""
    import functools
    from types import SimpleNamespace

    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    foresight = load_script("planner_foresight")
    monkeypatch.setattr(foresight, "health", lambda env: 100.0 - len(env.actions))
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2, "plan_horizon": 4, "plan_samples": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    module.set_random_only(False)
    for margin in (0.0, 1e9):
        log: dict[int, list[int]] = {}
        rec = foresight.Recorder(module.planner(), margin)
        make_env = functools.partial(_LoggedEnv, log, length=7)
        foresight.play(module, make_env, episodes=4, seed=0, num_envs=2, observe=rec.observe)
        rec.close()
        assert sorted(rec.scores) == [0, 1, 2, 3]
        for ep in range(4):
            assert sorted(rec.scores[ep]) == [0, 2, 4, 6] and all(len(s) == 3 for s in rec.scores[ep].values())
            assert rec.health[ep] == [100.0 - t for t in range(7)] and rec.actions[ep] == log[ep]
        if margin > 0:
            assert all(len(set(actions)) == 1 for actions in log.values())
    assert module.planner().act == rec._act  # the planner is left as it was
    scored = SimpleNamespace(scores=lambda *_: torch.tensor([[1.0, 3.0, 2.0]] * 3), act=None, interval=1)
    taken = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # none yet (episode start), 0, 2
    z = torch.zeros(3, 4)
    assert foresight.Recorder(scored, 1.5).act(z, z, z, taken).tolist() == [1, 1, 2]  # 2 is within 1.5 of the best
    assert foresight.Recorder(scored, 0.0).act(z, z, z, taken).tolist() == [1, 1, 1]


def test_done_labels_records_each_episodes_frames_actions_and_health_and_refits_on_its_hits(monkeypatch, tmp_path):
    """The recorder files V's posterior of each frame the agent read (the encoding the agent used), the action it
    took and the health before each step under the episode played; the refit on hits writes a world model whose
    done head alone changed, with the prior-corrected offset."""
    import argparse
    import functools
    import math

    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    labels = load_script("done_labels")
    monkeypatch.setattr(labels, "health", lambda env: 100.0 - 30.0 * (len(env.actions) >= 3))  # a hit at step 2
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2, "plan_horizon": 4, "plan_samples": 2}
    module = WorldModelsRLModule(
        observation_space=_LoggedEnv.observation_space, action_space=_LoggedEnv.action_space, model_config=mc
    )
    module.set_random_only(False)
    encode = module.world_model.vae.encode
    frames: dict[int, list[np.ndarray]] = {}

    class Framed(_LoggedEnv):  # keeps the frames each episode showed, to encode them again below
        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            self.frames = frames.setdefault(seed, [obs])
            return obs, info

        def step(self, action):
            out = super().step(action)
            self.frames.append(out[0])
            return out

    recorder = labels.EpisodeRecorder(module)
    log: dict[int, list[int]] = {}
    returns = labels.play(
        module, functools.partial(Framed, log, length=7), episodes=3, seed=0, num_envs=2, observe=recorder.observe
    )
    episodes = recorder.episodes(returns, cap_steps=10)
    assert module.world_model.vae.encode == encode  # V is left as it was
    assert len(episodes) == 3
    for ep, rec in enumerate(episodes):
        assert rec["action"].tolist() == log[ep] and rec["terminated"] and rec["return"] == 7.0
        assert rec["health"].tolist() == [100.0, 100.0, 100.0, 70.0, 70.0, 70.0, 70.0]
        with torch.no_grad():
            mu, logvar = encode(torch.as_tensor(np.stack(frames[ep][:7])))
        torch.testing.assert_close(rec["mu"], mu)
        torch.testing.assert_close(rec["logvar"], logvar)
    assert not recorder.episodes(returns, cap_steps=7)[0]["terminated"]  # ran to the cap: cut, not dead
    source = tmp_path / "world_model.pt"
    module.world_model.save(source, metadata={"done_logit_offset": -0.1, "env_settings": {"frame_skip": 4}})
    args = argparse.Namespace(refit_horizon=5, refit_every=1, refit_steps=20, max_starts=None, seed=0, offset=None)
    row = labels.refit(source, episodes, "hits", args, tmp_path / "hits.pt")
    assert row["events"] == 6.0  # the hit at step 2 and the death at the last step, in each of 3 episodes
    assert row["skipped"] == 0.0 and row["pairs"] > 0
    from rllib_worldmodel.models.world_model import read_checkpoint, WorldModel

    meta = read_checkpoint(tmp_path / "hits.pt")["metadata"]
    assert meta["done_logit_offset"] == pytest.approx(-math.log(module.wm_config.done_pos_weight))
    assert meta["done_head_labels"] == "hits" and meta["env_settings"] == {"frame_skip": 4}
    refitted = WorldModel.load(tmp_path / "hits.pt").state_dict()
    for name, value in module.world_model.state_dict().items():
        if not name.startswith("mdn_rnn.done_head"):
            torch.testing.assert_close(refitted[name], value, msg=name)
    assert not torch.allclose(refitted["mdn_rnn.done_head.weight"], module.world_model.mdn_rnn.done_head.weight)
    deaths = labels.refit(source, episodes, "deaths", args, tmp_path / "deaths.pt")
    assert deaths["events"] == 3.0


def test_planner_foresight_counts_hits_deaths_and_the_auc_of_dreamed_danger():
    from types import SimpleNamespace

    foresight = load_script("planner_foresight")
    assert foresight.roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert foresight.roc_auc(np.array([1.0]), np.array([2.0])) == 0.0
    assert foresight.roc_auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    rec = foresight.Recorder(SimpleNamespace(scores=None, act=None, interval=3))
    rec.health = {0: [100.0, 100.0, 100.0, 60.0, 60.0, 60.0], 1: [100.0] * 10, 2: [100.0] * 3}
    rec.actions = {0: [1] * 3 + [2] * 3, 1: [0] * 10, 2: [0] * 3}
    rec.scores = {
        0: {0: [9.0, 8.0, 7.0], 3: [1.0, 2.0, 3.0]},  # episode 0: hit at step 2, dies at step 5 (6 < 10 steps)
        1: {0: [12.0, 11.0, 10.0], 3: [12.0, 11.0, 11.5], 6: [11.0, 10.8, 9.0]},  # survives to the cap
        2: {0: [12.0, 0.0, 0.0]},  # one hit from full health kills
    }
    out = foresight.foresight(rec, cap_steps=10, horizon=3)
    assert out["hits_per_episode"] == 1.0 and out["damage_per_hit"] == pytest.approx((40 + 60 + 100) / 3)
    assert out["deaths"] == 2 and out["one_hit_deaths"] == 1
    # before a hit the chosen actions dreamed 8, 3 and 12; elsewhere 12, 12, 11
    assert out["decisions_before_a_hit"] == 3 and out["decisions_elsewhere"] == 3
    assert out["foresight_auc"] == pytest.approx((3 + 3 + 0.5 + 0.5 + 0) / 9)  # low dreamed score = danger
    assert out["margin_before_a_hit_median"] == 1.0 and out["margin_elsewhere_median"] == pytest.approx(0.5)
    assert out["switch_share"] == pytest.approx(1 / 3)  # episode 0 switches once; episode 1 twice keeps


def test_dream_planning_times_the_full_and_the_planners_step_side_by_side(monkeypatch, image_world_model):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    planning = load_script("dream_planning")
    cost = planning.step_cost(image_world_model, dreams=6, steps=2, repeats=1)
    assert set(cost) == {"full_step_ms", "planner_step_ms", "speedup"}
    assert cost["full_step_ms"] > 0 and cost["planner_step_ms"] > 0
    assert cost["speedup"] == round(cost["full_step_ms"] / cost["planner_step_ms"], 2)


def test_evaluation_paths_plays_the_deployed_agent_through_rllib_and_the_player(ray_session, monkeypatch):
    """Both players play whole episodes of the agent the evaluation EnvRunner holds (its env, its module)."""
    import functools

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "tuned_examples"))
    paths = load_script("evaluation_paths")
    from tiny import tiny_config

    algo = tiny_config().build_algo()
    try:
        make = functools.partial(algo.env_creator, algo.config.env_config)
        out = paths.both_paths(algo, make, episodes=4, seed=3)
    finally:
        algo.stop()
    for name in ("rllib", "player"):
        returns = out[name]["returns"]
        assert len(returns) == 4 and all(1 <= r <= 500 for r in returns)  # whole CartPole episodes
        assert out[name]["mean"] == pytest.approx(np.mean(returns)) and out[name]["se"] >= 0


def test_replay_checkpoint_writes_and_restores_real_takecover_frames_every_way(tmp_path):
    """Run as a script (its restores run in fresh processes): every way of storing the replay reads back the frames
    that were written (the script raises otherwise), and lz4 stores fewer bytes than the state as RLlib gives it."""
    import json
    import subprocess
    import sys

    out = tmp_path / "replay_checkpoint.json"
    cmd = [sys.executable, str(BENCHMARKS / "replay_checkpoint.py"), "--episodes", "3", "--dir", str(tmp_path)]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert list(rows) == ["as RLlib gives it", "lz4, level 0 (the default)", "lz4, level 3"]
    assert result["frames_bytes"] >= result["steps"] * 64 * 64 * 3 > 0
    assert rows["as RLlib gives it"]["bytes"] >= result["frames_bytes"]
    assert (
        rows["as RLlib gives it"]["bytes"] > rows["lz4, level 0 (the default)"]["bytes"] > rows["lz4, level 3"]["bytes"]
    )
    assert "restore memory / frames" in proc.stdout.splitlines()[-5]
    assert list(tmp_path.iterdir()) == [out]  # the written files are gone


def test_mdn_update_draws_window_batches_as_the_algorithm_does_and_both_paths_score_them_alike(tmp_path, monkeypatch):
    """The benchmark's windows run from a uniform step to their episode's end, padded to the longest; its paths
    (heads at every padded step, heads at the valid steps, the prefix packed or on the fused kernel) give the same
    loss on them."""
    import json
    import sys

    bench = load_script("mdn_update")
    rng = np.random.default_rng(0)
    lengths = np.array([5, 9, 2, 30])
    batch = bench.window_batch(rng, lengths, 16, 4, 3, 2)
    widths = batch["mask"].sum(1).long()
    assert batch["mask"].shape[1] == widths.max() and (widths >= 1).all()
    ends = batch["prefix_len"] + widths  # prefix + window = a whole episode
    assert set(ends.tolist()) <= set(lengths.tolist())
    assert (batch["done"].sum(1) == 1).all() and (batch["done"][torch.arange(16), widths - 1] == 1).all()
    out = tmp_path / "mdn_update.json"
    argv = ["mdn_update.py", "--small", "--updates", "2", "--episodes", "20", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    result = json.loads(out.read_text())
    assert result["loss_abs_difference_first_batch"] < 1e-5
    assert 0 < result["valid_steps_per_batch"] <= result["padded_steps_per_batch"]
    assert set(result["seconds_per_update"]) == {"padded", "valid_heads", "valid_packed_prefix", "valid"}
    assert result["projected_fit"]["updates"] == int(np.ceil(20.0 * 27_183 / result["valid_steps_per_batch"]))


def test_devices_times_the_main_jobs_updates_and_search_and_projects_its_fit(tmp_path, monkeypatch, capsys):
    """The device benchmark runs the Learner's V and M updates and a CMA-ES generation whose dreams all reach the cap
    (the same work on every device), and projects the main job's fit and search from them; a CUDA device on a machine
    without one is refused by name."""
    import json
    import sys

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it reuses mdn_update's window batches
    bench = load_script("devices")
    out = tmp_path / "devices.json"
    argv = ["devices.py", "--small", "--devices", "cpu", "--repeats", "1", "--dream-steps", "12", "--population", "3"]
    argv += ["--encode-frames", "600"]  # more than one of encode_frames' 512-frame chunks
    monkeypatch.setattr(sys, "argv", argv + ["--rollouts", "2", "--every", "4", "--vae-batch", "8", "--out", str(out)])
    bench.main()
    result = json.loads(out.read_text())
    row = result["seconds"]["cpu"]
    timings = {"vae_update_s", "mdn_update_s", "cma_generation_s", "encode_frame_s", "main_job_fit_and_search_s"}
    assert set(row) == timings | {"vae_loss_first", "mdn_loss_first"}
    assert all(row[k] > 0 for k in timings)
    updates = result["main_job_updates"]
    assert updates["vae"] == int(np.ceil(3 * 27_183 / 8)) and updates["generations"] == 32
    assert updates["mdn"] == int(np.ceil(20 * 27_183 / result["work"]["mdn_valid_steps_per_batch"]))
    projected = updates["vae"] * row["vae_update_s"] + updates["mdn"] * row["mdn_update_s"]
    assert row["main_job_fit_and_search_s"] == pytest.approx(projected + 32 * row["cma_generation_s"])
    assert result["speedup_over_cpu"] == {}
    assert result["work"]["encode_frames"] == 600 and result["work"]["full_replay_steps"] == 400_000
    assert "on cpu" in capsys.readouterr().out.splitlines()[-1]
    # both precisions side by side: the same work, the bfloat16 row's losses and dreams compared with float32's
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--precisions", "fp32", "bf16"])
    bench.main()
    result = json.loads(out.read_text())
    assert list(result["seconds"]) == ["cpu", "cpu bf16"] and result["precisions"] == ["fp32", "bf16"]
    bf16, fp32 = result["seconds"]["cpu bf16"], result["seconds"]["cpu"]
    assert bf16["mdn_loss_first_vs_fp32"] == pytest.approx(bf16["mdn_loss_first"] - fp32["mdn_loss_first"])
    assert abs(bf16["mdn_loss_first_vs_fp32"]) < 0.01 * fp32["mdn_loss_first"]  # the same batch and weights
    assert 0 <= bf16["dream_return_mean_abs_vs_fp32"] < 0.1 * bf16["dream_return_mean_fp32"]
    assert 0 <= bf16["encode_mu_mean_abs_vs_fp32"] < 0.1 * bf16["encode_mu_std_fp32"]  # the same frames and V
    assert set(result["speedup_over_cpu"]["cpu bf16"]) == timings
    assert isinstance(result["bf16_in_hardware"]["cpu"], bool)
    if not torch.cuda.is_available():
        monkeypatch.setattr(sys, "argv", ["devices.py", "--devices", "cuda"])
        with pytest.raises(SystemExit):
            bench.main()
        assert "--devices cuda" in capsys.readouterr().err


def test_distill_planner_plays_its_four_agents_on_the_same_real_episodes(ray_session, tmp_path, monkeypatch):
    """From a planning agent's checkpoint: C alone, C + planning, C fitted to the planner's dreamed choices alone and
    planning on it, each on the same real TakeCover episode seeds; the fitted C's weights are written beside the JSON.
    The script starts its own Ray, so it runs in a fresh process, as from the command line."""
    import json
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "tuned_examples"))
    from tiny import tiny_config

    config = tiny_config(takecover=True).controller(plan_horizon=4, plan_samples=2)
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "run" / "checkpoint"))
        algo.export_world_model(tmp_path / "run" / "world_model.pt")
    finally:
        algo.stop()
    out = tmp_path / "distill.json"
    args = ["--checkpoint", str(tmp_path / "run" / "checkpoint"), "--states", "30", "--every", "2", "--epochs", "3"]
    args += ["--episodes", "2", "--out", str(out)]

    def run(*extra: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(BENCHMARKS / "distill_planner.py"), *args, *extra],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=str(tmp_path),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    proc = run("--seed", "40")
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert list(rows) == ["C alone", "C + planning", "distilled C alone", "distilled C + planning"]
    for row in rows.values():
        assert len(row["returns"]) == 2 and all(0 < r <= 60 for r in row["returns"])  # whole episodes, 60-frame cap
    assert rows["C + planning"]["paired_vs_base"] == 0.0 and result["paired_base"] == "C + planning"
    assert result["plan"]["horizon"] == 4 and 0 < result["distill_metrics"]["dream/distill_states"] <= 30
    fitted = torch.load(out.with_suffix(".controller.pt"), weights_only=True)
    assert set(fitted) == {"net.weight", "net.bias"}
    assert "| distilled C + planning |" in proc.stdout.splitlines()[-1]
    # from CMA-ES's mean, another planner's rollouts, the C-alone rows only, each on two sets of episode seeds
    run("--c", "searched", "--plan-horizon", "6", "--plan-rollouts", "parallel", "--alone-only", "--seed", "40", "50")
    result = json.loads(out.read_text())
    labelled_by = {k: result["distill_metrics"][f"dream/distill_plan_{k}"] for k in ("horizon", "every", "parallel")}
    assert labelled_by == {"horizon": 6, "every": 1, "parallel": 1}  # the planner asked for, not the config's
    assert list(result["rows"]) == ["C alone", "distilled C alone"] and result["paired_base"] == "C alone"
    assert len(result["rows"]["C alone"]["returns"]) == 4  # 2 episodes x 2 seeds
    assert result["plan"]["rollouts"] == "parallel" and result["c"] == "searched"


def test_wide_search_parses_each_run_and_names_the_flag_when_one_is_malformed():
    import argparse

    wide = load_script("wide_search")
    assert wide.parse_run("256x32x32:3") == (256, 32, 32, 3)
    for bad in ("256x32", "1x8x32:1", "32x0x32:1", "32x8x0:1", "32x8x32"):
        with pytest.raises(argparse.ArgumentTypeError, match="--runs"):
            wide.parse_run(bad)


def test_wide_search_exports_a_checkpoints_dream_and_searches_it_where_ray_is_not_installed(
    ray_session, tmp_path, monkeypatch
):
    """`export` writes M, the start states, the training and scoring dream settings, C and the search settings of a
    checkpoint; `search` runs in a process that cannot import Ray, scores the checkpoint's C and each searched C in
    the same scoring dreams, and writes each C as a state dict that `dream_planning.py --controller` reads. The same
    run twice is the same search."""
    import dataclasses
    import functools
    import json
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "tuned_examples"))
    from tiny import tiny_config

    algo = tiny_config().build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "checkpoint"))
        expected_settings = dataclasses.asdict(algo.dream_settings())
        own_c = algo.local_module.controller.get_flat()
    finally:
        algo.stop()
    bundle = tmp_path / "bundle.pt"
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    script = str(BENCHMARKS / "wide_search.py")
    proc = run([sys.executable, script, "export", "--checkpoint", "checkpoint", "--out", str(bundle)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(bundle, weights_only=False)
    assert saved["train_settings"] == expected_settings
    np.testing.assert_array_equal(saved["controller"]["flat"], own_c)
    assert saved["cma"] == {
        "population": 6,
        "rollouts": 2,
        "generations": 2,
        "sigma_init": 0.1,
        "common_noise": True,
        "action_repeat": 1,
    }
    # Ray made unimportable, as on a machine that has only torch, gymnasium and cma
    no_ray = (
        "import importlib.util as u, runpy, sys; f = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'ray' else f(n, *a); sys.modules['ray'] = None; "
        f"sys.argv = ['wide_search.py'] + sys.argv[1:]; runpy.run_path({script!r}, "
        "run_name='__main__'); assert 'ray.rllib' not in sys.modules"
    )
    args = ["search", "--bundle", str(bundle), "--device", "cpu", "--score-dreams", "8"]
    args += ["--runs", "4x2x2:1", "4x2x2:1", "6x2x1:2", "--out-dir", "out"]
    proc = run([sys.executable, "-c", no_ray, *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "wide_search.json").read_text())
    first, again, other = result["runs"]
    assert [r["run"] for r in result["runs"]] == ["p4_r2_g2_s1", "p4_r2_g2_s1", "p6_r2_g1_s2"]
    assert len(first["history"]) == 2 and len(other["history"]) == 1 and first["dream_steps"] > 0
    assert first["dream_mean"] == again["dream_mean"] and first["history"] == again["history"]
    # the checkpoint's C scored in the bundle's scoring dream with the scoring seed, as anyone can recompute it
    from rllib_worldmodel.cma_es import evaluate_population
    from rllib_worldmodel.dream import DreamSimulator

    wm, settings, controller, _ = load_script("wide_search").load_bundle(bundle, "cpu")
    own = evaluate_population(
        DreamSimulator(wm, settings["score"]), controller, own_c[None], 8, seed=result["score_seed"]
    ).returns[0]
    assert result["checkpoint_c"]["dream_mean"] == pytest.approx(float(own.mean()), rel=1e-6)
    weights = torch.load(tmp_path / "out" / "p6_r2_g1_s2.controller.pt", weights_only=True)
    c = Controller(saved["controller"]["input_size"], saved["controller"]["action_space"])
    c.load_state_dict(weights)  # what dream_planning.py --controller loads
    assert "| 6 x 2 x 1, seed 2 |" in proc.stdout.splitlines()[-1]


def test_vote_plays_the_plurality_and_breaks_ties_by_the_last_action_then_the_earliest_member(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its siblings, as when run as a script
    vote = load_script("vote")
    votes = torch.tensor([[1, 2, 0, 1], [2, 2, 1, 0], [1, 0, 2, 2]])  # 3 members x 4 rows
    # row 0: two votes for 1; row 1: two for 2; rows 2, 3: a three-way tie
    assert vote.plurality(votes, torch.tensor([-1, -1, 2, 2]), 3).tolist() == [1, 2, 2, 2]  # the last action, tied
    assert vote.plurality(votes, torch.tensor([-1, 0, -1, -1]), 3).tolist() == [1, 2, 0, 1]  # else the earliest vote


def test_a_committee_plays_its_majority_and_every_member_remembers_the_action_played(monkeypatch):
    """Two copies of one agent outvote a third: the committee plays exactly what that agent plays alone on the same
    seeded episodes, and the outvoted member's M reads the played action, not its own vote."""
    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    vote = load_script("vote")
    space = {"observation_space": _LoggedEnv.observation_space, "action_space": _LoggedEnv.action_space}
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2, "real_z": "mean"}
    torch.manual_seed(0)
    agent, other = (WorldModelsRLModule(**space, model_config=mc) for _ in range(2))
    for m in (agent, other):
        m.set_random_only(False)
    alone_log: dict[int, list[int]] = {}
    alone = vote.play(agent, lambda: _LoggedEnv(alone_log, length=9), episodes=4, seed=50, num_envs=2)
    committee_log: dict[int, list[int]] = {}
    voted = vote.play_committee([agent, other, agent], lambda: _LoggedEnv(committee_log, length=9), 4, 50, num_envs=2)
    assert committee_log == alone_log and voted["returns"].tolist() == alone.tolist() == [9.0] * 4
    assert voted["overruled_share"][0] == voted["overruled_share"][2] == 0.0
    assert 0.0 <= voted["overruled_share"][1] == voted["split_share"] <= 1.0
    # one step by hand: whatever each votes, every member's previous action is the one played
    committee = vote.Committee([agent, other], batch=2)
    frames = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    action, votes, now = committee.act(frames, np.arange(2))
    assert votes.shape == (2, 2) and torch.equal(action, votes[0])  # a 1-1 tie at the first step: the earliest
    assert now.all()  # members acting alone: every step counts as a vote
    for m, s in zip(committee.members, committee.state):
        assert torch.equal(s["prev_action"], m.world_model.encode_action(action).to(s["prev_action"].dtype))
    with pytest.raises(SystemExit, match="members act alone"):
        planning = WorldModelsRLModule(**space, model_config={**mc, "plan_horizon": 4, "plan_samples": 2})
        vote.Committee([agent, planning], batch=2)


def test_pooled_planners_play_the_summed_dreamed_returns_and_refuse_mixed_members(monkeypatch):
    """Two identical planners pooled play exactly what one plays alone (their summed scores rank the actions as
    one's do); a member whose dreams favour one action by far decides every planning decision, and only at those
    steps; a member that does not plan, or plans at another interval, is refused."""
    import copy

    from rllib_worldmodel.rl_module import WorldModelsRLModule

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    vote = load_script("vote")
    space = {"observation_space": _LoggedEnv.observation_space, "action_space": _LoggedEnv.action_space}
    mc = {"z_size": 4, "rnn_size": 8, "num_mixtures": 2, "action_repeat": 2, "real_z": "mean"}
    plan = {**mc, "plan_horizon": 4, "plan_samples": 2, "plan_every": 3}
    torch.manual_seed(0)
    agent = WorldModelsRLModule(**space, model_config=plan)
    agent.set_random_only(False)
    alone_log: dict[int, list[int]] = {}
    alone = vote.play(copy.deepcopy(agent), lambda: _LoggedEnv(alone_log, length=10), episodes=4, seed=50, num_envs=2)
    pooled_log: dict[int, list[int]] = {}
    twins = [copy.deepcopy(agent), copy.deepcopy(agent)]  # each a planner of its own, seeded alike
    pooled = vote.play_committee(twins, lambda: _LoggedEnv(pooled_log, length=10), 4, 50, num_envs=2, pool_plans=True)
    assert pooled_log == alone_log and pooled["returns"].tolist() == alone.tolist() == [10.0] * 4
    assert pooled["split_share"] == 0.0 and pooled["overruled_share"] == [0.0, 0.0]
    assert pooled["decisions"] == 4 * 4  # steps 0, 3, 6, 9 of each 10-step episode

    class _Favours:  # a member's planner whose dreams score action 2 far above the others
        interval = 3

        def scores(self, z, h, c, prev):
            return torch.tensor([0.0, 0.0, 1e6]).expand(len(z), 3)

    other = copy.deepcopy(agent)
    monkeypatch.setattr(other, "planner", lambda: _Favours())
    committee = vote.Committee([copy.deepcopy(agent), other], batch=2, pool_plans=True)
    frames = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    first, votes, now = committee.act(frames, np.arange(2))
    assert first.tolist() == [2, 2] and now.tolist() == [True, True] and votes[1].tolist() == [2, 2]
    for m, s in zip(committee.members, committee.state):  # every M reads the action played
        assert torch.equal(s["prev_action"], m.world_model.encode_action(first).to(s["prev_action"].dtype))
    committee.decided[:] = 0  # held between decisions: the committee's own held action, whatever the planners say
    for _ in range(2):
        held, votes, now = committee.act(frames, np.arange(2))
        assert held.tolist() == [0, 0] and now.tolist() == [False, False] and votes.eq(0).all()
    assert committee.act(frames, np.arange(2))[0].tolist() == [2, 2]  # step 3: the next decision
    with pytest.raises(SystemExit, match="does not plan"):
        vote.Committee([agent, WorldModelsRLModule(**space, model_config=mc)], batch=2, pool_plans=True)
    with pytest.raises(SystemExit, match="different intervals"):
        every2 = WorldModelsRLModule(**space, model_config={**plan, "plan_every": 2})
        vote.Committee([agent, every2], batch=2, pool_plans=True)


def _planning_result(path: Path, seed: int, rows: list[dict], frame_skip: int = 4) -> None:
    """A dream_planning.py result file with `rows` on episode seeds seed..seed+len-1."""
    import json

    episodes = len(rows[0]["real_returns"])
    result = {"seed": seed, "episodes": episodes, "env_settings": {"frame_skip": frame_skip}, "rows": rows}
    path.write_text(json.dumps(result))


def test_paired_agents_pairs_rows_of_the_same_kind_on_the_same_episode_sets(tmp_path):
    paired = load_script("paired_agents")
    c_alone = {"plan_horizon": 0, "decides_every": 6, "plan_rollouts": None, "real_z": "sample"}
    planner = {"plan_horizon": 12, "decides_every": 3, "plan_rollouts": "controller", "plan_terminal_value": 0.0}
    # A: written with every setting; B: an older file without real_z / terminal value (it played their defaults),
    # and its C deciding every 3 steps: C alone still pairs with C alone, the planner with the same planner
    _planning_result(
        tmp_path / "a_1.json",
        100,
        [{**c_alone, "real_returns": [10, 20]}, {**planner, "real_z": "sample", "real_returns": [30, 50]}],
    )
    _planning_result(
        tmp_path / "a_2.json",
        200,
        [{**c_alone, "real_returns": [10, 10]}, {**planner, "real_z": "sample", "real_returns": [40, 40]}],
    )
    _planning_result(tmp_path / "a_3.json", 300, [{**c_alone, "real_returns": [99, 99]}])  # B never played 300
    b_c = {"plan_horizon": 0, "decides_every": 3, "plan_rollouts": None}
    b_plan = {k: v for k, v in planner.items() if k != "plan_terminal_value"}
    _planning_result(
        tmp_path / "b_1.json", 100, [{**b_c, "real_returns": [10, 10]}, {**b_plan, "real_returns": [30, 30]}]
    )
    _planning_result(
        tmp_path / "b_2.json", 200, [{**b_c, "real_returns": [20, 20]}, {**b_plan, "real_returns": [30, 40]}]
    )
    a = paired._sets(paired._files(str(tmp_path / "a_*.json"), "--a"), "--a")
    b = paired._sets(paired._files(str(tmp_path / "b_*.json"), "--b"), "--b")
    c_row, plan_row = paired.pair(a, b)
    assert c_row["agent"] == "C alone (z: sample)" and c_row["episodes"] == 4  # set 300 left out: B lacks it
    diffs = np.array([0.0, 10.0, -10.0, -10.0])
    assert c_row["paired_diff_mean"] == pytest.approx(-2.5)
    assert c_row["paired_diff_se"] == pytest.approx(diffs.std(ddof=1) / 2)
    assert [(s["seed"], s["diff_mean"], s["a_every"], s["b_every"]) for s in c_row["sets"]] == [
        (100, 5.0, 6, 3),
        (200, -10.0, 6, 3),
    ]
    assert c_row["sets_a_ahead"] == 1 and (c_row["a_mean"], c_row["b_mean"]) == (12.5, 15.0)
    assert plan_row["agent"] == "planning 12 ahead every 3 (z: sample)"
    assert (plan_row["paired_diff_mean"], plan_row["sets_a_ahead"]) == (7.5, 2)


def test_paired_agents_ignore_pairs_two_settings_of_one_agent_and_refuses_ambiguous_pairs(tmp_path, capsys):
    paired = load_script("paired_agents")
    c_alone = {"plan_horizon": 0, "decides_every": 6, "real_returns": [10, 20]}
    planner = {"plan_horizon": 12, "decides_every": 3, "plan_rollouts": "controller"}
    parallel = {**planner, "plan_rollouts": "parallel", "real_returns": [40, 60]}
    _planning_result(tmp_path / "a.json", 100, [c_alone, parallel])
    _planning_result(tmp_path / "b.json", 100, [c_alone, {**planner, "real_returns": [30, 30]}])
    a = paired._sets([tmp_path / "a.json"], "--a")
    b = paired._sets([tmp_path / "b.json"], "--b")
    assert [r["agent"] for r in paired.pair(a, b)] == ["C alone (z: sample)"]  # without --ignore: no planner pair
    c_row, plan_row = paired.pair(a, b, ("plan_rollouts",))
    assert c_row["b_agent"] == c_row["agent"] and c_row["paired_diff_mean"] == 0.0
    assert plan_row["agent"] == "planning 12 ahead every 3, parallel rollouts (z: sample)"
    assert plan_row["b_agent"] == "planning 12 ahead every 3 (z: sample)"
    assert (plan_row["paired_diff_mean"], plan_row["paired_diff_se"]) == (20.0, 10.0)
    assert (
        paired.main(["--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "b.json"), "--ignore", "plan_rollouts"])
        == 0
    )
    assert "parallel rollouts (z: sample) vs planning 12 ahead every 3 (z: sample) | 2 |" in capsys.readouterr().out
    # B holding both rollouts on one set: which one A's parallel row pairs with is ambiguous, so refused
    _planning_result(tmp_path / "b2.json", 100, [c_alone, {**planner, "real_returns": [30, 30]}, parallel])
    with pytest.raises(ValueError, match="ignore fewer settings"):
        paired.pair(a, paired._sets([tmp_path / "b2.json"], "--b"), ("plan_rollouts",))
    with pytest.raises(ValueError, match="--ignore plan_horizon: not a row setting"):
        paired.pair(a, b, ("plan_horizon",))


def test_paired_agents_refuses_sets_that_are_not_the_same_episodes(tmp_path, capsys):
    paired = load_script("paired_agents")
    row = [{"plan_horizon": 0, "real_returns": [1.0, 2.0]}]
    _planning_result(tmp_path / "a.json", 100, row)
    _planning_result(tmp_path / "b.json", 500, row)
    _planning_result(tmp_path / "c.json", 100, row, frame_skip=1)
    _planning_result(tmp_path / "d.json", 100, row)
    assert paired.main(["--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "b.json")]) == 2
    assert "no episode set in common" in capsys.readouterr().err
    assert paired.main(["--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "c.json")]) == 2
    assert "different games are not the same episodes" in capsys.readouterr().err
    assert paired.main(["--a", str(tmp_path / "[ad].json"), "--b", str(tmp_path / "b.json")]) == 2
    assert "both play seeds 100+2: pass one" in capsys.readouterr().err
    assert paired.main(["--a", str(tmp_path / "none*.json"), "--b", str(tmp_path / "b.json")]) == 2
    assert "--a" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("a", "b", "lines"),
    [
        (  # the 400,000-step chain over the 200,000-step chain (README, "Commands and files")
            "chain_keep400k_it16",
            "chain_it16",
            [
                "| C alone (z: sample) | 600 | 718.7 ± 447.3 | 531.2 ± 303.9 | +187.5 ± 19.0 | 6 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "1065.6 ± 610.6 | 932.3 ± 563.5 | +133.3 ± 27.1 | 6 of 6 |",
            ],
        ),
        (  # the 600,000-step chain under both 400,000-step runs (RESULTS, "A third chain, with a 600,000-step replay")
            "chain_keep600k_it16",
            "chain_keep400k_it16",
            [
                "| C alone (z: sample) | 600 | 536.8 ± 312.7 | 718.7 ± 447.3 | -182.0 ± 18.7 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "915.3 ± 549.0 | 1065.6 ± 610.6 | -150.4 ± 27.7 | 0 of 6 |",
            ],
        ),
        (
            "chain_keep600k_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 536.8 ± 312.7 | 735.3 ± 467.6 | -198.5 ± 19.8 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "915.3 ± 549.0 | 989.5 ± 608.6 | -74.3 ± 27.9 | 0 of 6 |",
            ],
        ),
        (  # the replicate's leg 4 again with mdn_recency_half_life=100000 (RESULTS, "M fitted on recent rounds")
            "chain_keep400k_rep_hl100k_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 652.5 ± 411.7 | 735.3 ± 467.6 | -82.8 ± 21.3 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "917.1 ± 556.6 | 989.5 ± 608.6 | -72.4 ± 27.3 | 1 of 6 |",
            ],
        ),
        (  # the same leg 4 run again uniform: one leg's own spread (RESULTS, "M fitted on recent rounds")
            "chain_keep400k_rep_ctl_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 664.3 ± 403.9 | 735.3 ± 467.6 | -71.0 ± 20.8 | 1 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "930.3 ± 552.5 | 989.5 ± 608.6 | -59.2 ± 28.0 | 0 of 6 |",
            ],
        ),
        (  # the weighted leg against that uniform control
            "chain_keep400k_rep_hl100k_it16",
            "chain_keep400k_rep_ctl_it16",
            [
                "| C alone (z: sample) | 600 | 652.5 ± 411.7 | 664.3 ± 403.9 | -11.9 ± 20.1 | 3 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "917.1 ± 556.6 | 930.3 ± 552.5 | -13.3 ± 26.9 | 1 of 6 |",
            ],
        ),
        (  # the replicate continued two planning rounds (RESULTS, "Two more planning rounds on the replicate")
            "chain_keep400k_rep_cont_it18",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 717.3 ± 445.8 | 735.3 ± 467.6 | -17.9 ± 21.7 | 2 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "966.2 ± 567.5 | 989.5 ± 608.6 | -23.3 ± 27.0 | 1 of 6 |",
            ],
        ),
        (  # the main job trained in bfloat16 against float32, seed 0 (RESULTS, "bfloat16 where the hardware has it")
            "main_1206_bf16_s0",
            "main_1206_fp32_s0",
            [
                "| C alone (z: sample) | 200 | 670.5 ± 416.4 | 677.8 ± 402.0 | -7.3 ± 25.3 | 1 of 2 |",
                "| planning 50 ahead every 25 (z: sample) | 200 | "
                "722.0 ± 451.7 | 757.9 ± 448.6 | -35.9 ± 26.5 | 0 of 2 |",
            ],
        ),
        (  # the second bfloat16 seed-0 run against the same float32 run
            "main_1206_bf16_s0b",
            "main_1206_fp32_s0",
            [
                "| C alone (z: sample) | 200 | 698.4 ± 395.7 | 677.8 ± 402.0 | +20.6 ± 28.4 | 1 of 2 |",
                "| planning 50 ahead every 25 (z: sample) | 200 | "
                "756.9 ± 461.4 | 757.9 ± 448.6 | -1.0 ± 23.7 | 1 of 2 |",
            ],
        ),
        (  # the float32 agent planning in bfloat16 against itself in float32: C alone reads frames in float32 both ways
            "main_1206_fp32_s0_as_bf16",
            "main_1206_fp32_s0",
            [
                "| C alone (z: sample) | 200 | 677.8 ± 402.0 | 677.8 ± 402.0 | +0.0 ± 0.0 | 0 of 2 |",
                "| planning 50 ahead every 25 (z: sample) | 200 | "
                "754.6 ± 436.5 | 757.9 ± 448.6 | -3.4 ± 26.1 | 1 of 2 |",
            ],
        ),
        (  # the bfloat16 main job with seed 1 against the float32 one of 2026-12-05
            "main_1206_bf16_s1",
            "s27_main_seed1",
            [
                "| C alone (z: sample) | 100 | 727.3 ± 426.5 | 615.9 ± 374.2 | +111.4 ± 41.7 | 1 of 1 |",
                "| planning 50 ahead every 25 (z: sample) | 100 | "
                "760.2 ± 446.0 | 763.2 ± 445.7 | -3.0 ± 26.6 | 0 of 1 |",
            ],
        ),
        (  # the chain iterated in bfloat16 against the three float32 chains (RESULTS, "The chain in bfloat16")
            "chain_bf16_it16",
            "chain_keep400k_it16",
            [
                "| C alone (z: sample) | 600 | 531.7 ± 327.0 | 718.7 ± 447.3 | -187.0 ± 19.9 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "903.5 ± 580.3 | 1065.6 ± 610.6 | -162.1 ± 28.6 | 0 of 6 |",
            ],
        ),
        (
            "chain_bf16_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 531.7 ± 327.0 | 735.3 ± 467.6 | -203.6 ± 19.7 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "903.5 ± 580.3 | 989.5 ± 608.6 | -86.0 ± 28.4 | 0 of 6 |",
            ],
        ),
        (
            "chain_bf16_it16",
            "chain_keep600k_it16",
            [
                "| C alone (z: sample) | 600 | 531.7 ± 327.0 | 536.8 ± 312.7 | -5.0 ± 15.7 | 4 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "903.5 ± 580.3 | 915.3 ± 549.0 | -11.7 ± 27.5 | 3 of 6 |",
            ],
        ),
        (  # the first measured pair of one chain's iterations 15 and 16 (kept agents)
            "chain_bf16_it16",
            "chain_bf16_it15",
            [
                "| C alone (z: sample) | 600 | 531.7 ± 327.0 | 510.2 ± 290.0 | +21.6 ± 14.3 | 4 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "903.5 ± 580.3 | 928.9 ± 558.9 | -25.4 ± 27.6 | 3 of 6 |",
            ],
        ),
        (  # the fourth float32 chain against the other three and the bfloat16 one (RESULTS, "A fourth float32 chain")
            "chain_fp32c_it16",
            "chain_keep400k_it16",
            [
                "| C alone (z: sample) | 600 | 573.2 ± 361.4 | 718.7 ± 447.3 | -145.5 ± 20.4 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "929.8 ± 545.4 | 1065.6 ± 610.6 | -135.8 ± 27.2 | 0 of 6 |",
            ],
        ),
        (
            "chain_fp32c_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 573.2 ± 361.4 | 735.3 ± 467.6 | -162.1 ± 20.1 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "929.8 ± 545.4 | 989.5 ± 608.6 | -59.7 ± 27.7 | 1 of 6 |",
            ],
        ),
        (
            "chain_fp32c_it16",
            "chain_keep600k_it16",
            [
                "| C alone (z: sample) | 600 | 573.2 ± 361.4 | 536.8 ± 312.7 | +36.4 ± 16.6 | 5 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "929.8 ± 545.4 | 915.3 ± 549.0 | +14.5 ± 27.3 | 4 of 6 |",
            ],
        ),
        (
            "chain_fp32c_it16",
            "chain_bf16_it16",
            [
                "| C alone (z: sample) | 600 | 573.2 ± 361.4 | 531.7 ± 327.0 | +41.5 ± 16.5 | 6 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "929.8 ± 545.4 | 903.5 ± 580.3 | +26.3 ± 28.4 | 4 of 6 |",
            ],
        ),
        (  # the V-focus chain against the float32 chains and bfloat16 (RESULTS, "A chain with V's hard-pixel focus")
            "chain_vaefocus_it16",
            "chain_keep400k_it16",
            [
                "| C alone (z: sample) | 600 | 559.0 ± 355.1 | 718.7 ± 447.3 | -159.7 ± 20.5 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "900.1 ± 548.9 | 1065.6 ± 610.6 | -165.5 ± 28.0 | 0 of 6 |",
            ],
        ),
        (
            "chain_vaefocus_it16",
            "chain_keep400k_rep_it16",
            [
                "| C alone (z: sample) | 600 | 559.0 ± 355.1 | 735.3 ± 467.6 | -176.2 ± 20.5 | 0 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "900.1 ± 548.9 | 989.5 ± 608.6 | -89.4 ± 28.7 | 0 of 6 |",
            ],
        ),
        (
            "chain_vaefocus_it16",
            "chain_keep600k_it16",
            [
                "| C alone (z: sample) | 600 | 559.0 ± 355.1 | 536.8 ± 312.7 | +22.3 ± 16.4 | 5 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "900.1 ± 548.9 | 915.3 ± 549.0 | -15.1 ± 27.6 | 2 of 6 |",
            ],
        ),
        (
            "chain_vaefocus_it16",
            "chain_fp32c_it16",
            [
                "| C alone (z: sample) | 600 | 559.0 ± 355.1 | 573.2 ± 361.4 | -14.2 ± 16.9 | 2 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "900.1 ± 548.9 | 929.8 ± 545.4 | -29.7 ± 26.9 | 2 of 6 |",
            ],
        ),
        (
            "chain_vaefocus_it16",
            "chain_bf16_it16",
            [
                "| C alone (z: sample) | 600 | 559.0 ± 355.1 | 531.7 ± 327.0 | +27.3 ± 16.7 | 6 of 6 |",
                "| planning 12 ahead every 3 (z: sample) | 600 | "
                "900.1 ± 548.9 | 903.5 ± 580.3 | -3.4 ± 27.7 | 4 of 6 |",
            ],
        ),
    ],
)
def test_paired_agents_reproduces_the_chains_published_pairings(capsys, a, b, lines):
    """README and RESULTS quote these paired differences of the chains' agents (iteration 16 unless named) on 600
    shared episodes (seeds 13000-18099), and of main jobs on the seeds-6000/7000 episodes: the committed result files
    say so."""
    results = BENCHMARKS / "results"
    files = [results / f"dream_planning_{name}_seeds*.json" for name in (a, b)]
    assert load_script("paired_agents").main(["--a", str(files[0]), "--b", str(files[1])]) == 0
    table = capsys.readouterr().out
    for line in lines:
        assert line in table


def test_episode_floor_counts_early_deaths_per_seed_against_independence():
    floor = load_script("episode_floor")
    p = np.array([0.2, 0.2, 0.2])
    dist = floor.poisson_binomial(p)
    assert dist.sum() == pytest.approx(1.0)
    assert dist == pytest.approx([0.8**3, 3 * 0.2 * 0.8**2, 3 * 0.2**2 * 0.8, 0.2**3])  # equal rates: the binomial
    assert floor.poisson_binomial(np.array([0.0, 1.0])) == pytest.approx([0.0, 1.0, 0.0])
    # three agents on four seeds: seed 0 kills two of them early (one lasts 900 there), seed 1 all three; the early
    # deaths on seeds 0 and 1 end on one frame for two agents
    returns = np.array(
        [
            [100.0, 150.0, 1000.0, 2100.0],
            [100.0, 150.0, 800.0, 700.0],
            [900.0, 250.0, 1200.0, 2100.0],
        ]
    )
    out = floor.floor(returns, early=300.0, long=1000.0, survived=600.0, cap=2100.0)
    assert [a["early_share"] for a in out["agents"]] == [0.5, 0.5, 0.25]
    assert [a["long_share"] for a in out["agents"]] == [0.5, 0.0, 0.5]
    assert [a["capped_share"] for a in out["agents"]] == [0.25, 0.0, 0.25]
    assert out["early_per_seed"]["observed"] == [2, 0, 1, 1]  # seeds 2, 3: none; seed 0: two; seed 1: three
    assert sum(out["early_per_seed"]["expected_if_independent"]) == pytest.approx(4.0, abs=0.2)
    assert out["hard_seeds"] == 2 and out["hard_survived_share"] == 0.5 and out["hard_best_median"] == 575.0
    assert out["hard_agent_means"] == [125.0, 125.0, 575.0]
    # early deaths: 100, 100 (same frame), 150, 150 (same frame), 250: 4 of 5; elsewhere 2100 twice of 7
    assert out["same_frame_share"] == pytest.approx(4 / 5) and out["same_frame_share_elsewhere"] == pytest.approx(2 / 7)
    seed_means = returns.mean(axis=0)
    assert out["seed_variance_share"] == pytest.approx(seed_means.var() / returns.var())
    pairs = [np.corrcoef(returns[i], returns[j])[0, 1] for i, j in ((0, 1), (0, 2), (1, 2))]
    assert out["episode_correlation"] == pytest.approx({"mean": np.mean(pairs), "min": min(pairs), "max": max(pairs)})
    with pytest.raises(ValueError, match="agents >= 2"):
        floor.floor(returns[:1])


def test_episode_floor_reads_each_agents_row_on_shared_seeds_and_refuses_bad_input(tmp_path, capsys):
    floor = load_script("episode_floor")
    c_alone = {"plan_horizon": 0, "decides_every": 6}
    planner = {"plan_horizon": 12, "decides_every": 3}
    _planning_result(
        tmp_path / "a.json", 100, [{**c_alone, "real_returns": [10, 400]}, {**planner, "real_returns": [20, 500]}]
    )
    _planning_result(
        tmp_path / "b.json", 100, [{**c_alone, "real_returns": [30, 600]}, {**planner, "real_returns": [40, 700]}]
    )
    _planning_result(tmp_path / "c.json", 100, [{**planner, "real_returns": [1, 2]}], frame_skip=1)
    out = tmp_path / "floor.json"
    argv = ["--agent", f"a={tmp_path / 'a.json'}", "--agent", f"b={tmp_path / 'b.json'}", "--out", str(out)]
    assert floor.main(argv) == 0
    import json

    result = json.loads(out.read_text())
    assert result["names"] == ["a", "b"] and result["seeds"] == [100, 101]
    assert [a["mean"] for a in result["agents"]] == [260.0, 370.0]  # the planner's row (--horizon 12)
    assert "| a | 260.0 ± 339.4 | 50.0% |" in capsys.readouterr().out
    assert floor.main([*argv, "--horizon", "0"]) == 0
    assert [a["mean"] for a in json.loads(out.read_text())["agents"]] == [205.0, 315.0]
    for bad, message in (
        (["--agent", f"a={tmp_path / 'a.json'}"], "two agents or more"),
        (["--agent", f"a={tmp_path / 'a.json'}", "--agent", f"a={tmp_path / 'b.json'}"], "named twice"),
        (["--agent", str(tmp_path / "a.json"), "--agent", f"b={tmp_path / 'b.json'}"], "write NAME=GLOB"),
        (["--agent", f"a={tmp_path / 'a.json'}", "--agent", f"c={tmp_path / 'c.json'}"], "different games"),
        ([*argv[:4], "--horizon", "24"], "0 rows with plan_horizon 24"),
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            floor.main(bad)
        assert message in capsys.readouterr().err


def test_episode_floor_reproduces_the_published_reading_of_the_chains(tmp_path):
    """RESULTS ("Where the early deaths are") quotes this reading of the nine chain agents' committed files."""
    results = BENCHMARKS / "results"
    names = [
        "it16",
        "keep400k_it16",
        "keep400k_rep_it16",
        "keep600k_it16",
        "bf16_it16",
        "keep400k_rep_ctl_it16",
        "keep400k_rep_hl100k_it16",
        "keep400k_rep_cont_it18",
        "bf16_it15",
    ]
    argv = [a for n in names for a in ("--agent", f"{n}={results}/dream_planning_chain_{n}_seeds1[3-8]000.json")]
    floor = load_script("episode_floor")
    import json

    for horizon in (12, 0):
        published = json.loads((results / f"episode_floor_chains_h{horizon}_seeds13000.json").read_text())
        assert floor.main([*argv, "--horizon", str(horizon), "--out", str(tmp_path / "floor.json")]) == 0
        out = json.loads((tmp_path / "floor.json").read_text())
        assert out["early_per_seed"] == published["early_per_seed"] and out["hard_seeds"] == published["hard_seeds"]
        assert out["seed_variance_share"] == pytest.approx(published["seed_variance_share"])


def test_chain_rows_compares_chains_with_the_references_range_per_iteration(tmp_path, capsys):
    """Per iteration the references' range and mean and each chain's difference from it; over the span each run's
    mean and where a chain lies below every reference; a leg re-run keeps its later file's row; bad input names the
    flag."""
    rows = load_script("chain_rows")

    def write(name: str, leg: int, scores: dict[int, float], plans: dict[int, int] | None = None) -> None:
        lines = []
        for i, s in scores.items():
            said = {} if plans is None else {rows.PLANNER: plans[i]}  # rows written before 2026-12-07 do not say
            lines.append(json.dumps({"iteration": i, rows.SCORE: s, "real_env_steps": 1000 * i, **said}))
        (tmp_path / f"{name}_leg{leg}_progress.jsonl").write_text("\n".join(lines) + "\n")

    write("a", 1, {1: 500.0, 2: 600.0})
    write("a", 2, {3: 700.0})
    write("b", 1, {1: 520.0, 2: 640.0, 3: 660.0})
    write("v", 1, {1: 510.0, 2: 590.0, 3: 999.0})
    write("v", 2, {3: 680.0}, plans={3: 12})  # iteration 3 re-run in leg 2 (by the planner): this row counts
    out = tmp_path / "cmp.json"
    glob_of = lambda n: f"{n}={tmp_path}/{n}_leg*_progress.jsonl"  # noqa: E731
    assert rows.main(["--chain", glob_of("v"), "--reference", glob_of("a"), glob_of("b"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["span"] == [2, 3]  # default: 2 to the last iteration every run has
    it3 = result["iterations"][2]
    assert (it3["reference_min"], it3["reference_max"], it3["reference_mean"], it3["v"]) == (660.0, 700.0, 680.0, 680.0)
    assert result["iterations"][1]["v_minus_reference_mean"] == pytest.approx(590.0 - 620.0)
    assert result["summary"]["v"]["mean"] == pytest.approx((590.0 + 680.0) / 2)
    assert result["summary"]["a"]["mean"] == pytest.approx(650.0)
    assert result["summary"]["v"]["below_every_reference"] == [2]  # at 3: 680 is below a (700), above b (660)
    assert result["summary"]["v"]["real_env_steps"] == 3000
    assert [e["v_agent"] for e in result["iterations"]] == [None, None, "planner"]  # leg 1's rows do not say
    table = capsys.readouterr().out
    assert "| 2 | 590.0 | 600.0-640.0 | 620.0 | -30.0 |" in table
    assert "| 3 | 680.0* | 660.0-700.0 | 680.0 | +0.0 |" in table and "*: the planning agent played" in table
    assert "v: 635.0 (to iteration 3, 3000 real steps; below every reference at 1 of 2 iterations [2])" in table
    assert rows.main(["--chain", glob_of("v"), "--reference", glob_of("a"), "--span", "1", "3"]) == 0
    for argv, message in (
        (["--chain", "v", "--reference", glob_of("a")], "write NAME=GLOB"),
        (["--chain", f"v={tmp_path}/none*.jsonl", "--reference", glob_of("a")], "matches no file"),
        (["--chain", glob_of("v"), "--reference", glob_of("a"), glob_of("a")], "given twice"),
        (["--chain", glob_of("a"), "--reference", glob_of("a")], "both name"),
        (["--chain", glob_of("v"), "--reference", glob_of("a"), "--span", "3", "2"], "must not be after"),
        (["--chain", glob_of("v"), "--reference", glob_of("a"), "--span", "1", "4"], "no row for iterations"),
    ):
        with pytest.raises(SystemExit):
            rows.main(argv)
        assert message in capsys.readouterr().err
