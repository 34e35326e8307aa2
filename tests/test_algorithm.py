"""The WorldModels algorithm on the tiny preset: every phase, real evaluation, Tune, checkpoints, validation."""

import hashlib
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rllib_worldmodel as rw
from rllib_worldmodel.precision import bf16_supported
from rllib_worldmodel.trainer import POINT_LOGVAR
from tests.conftest import run_in_fresh_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuned_examples"))
from tiny import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def trained(ray_session):
    """Two iterations on CartPole: the first acts randomly, the second with the controller."""
    algo = tiny_config().build_algo()
    results = [algo.train(), algo.train()]
    yield algo, results
    algo.stop()


def test_every_phase_runs_and_reports(trained):
    _, (r1, r2) = trained
    for key in (
        "world_model/vae_updates",
        "world_model/mdn_updates",
        "world_model/mdn_transitions",
        "world_model/vae_s",  # the fit's parts, timed (V with the replay's encoding, then M)
        "world_model/mdn_s",
        "dream/cma_fitness_mean",
        "dream/episode_return_mean",
        "real/collect_episode_len_mean",
    ):
        assert key in r2, key
    learner = r2["learners"]["default_policy"]
    assert np.isfinite(learner["world_model/vae_loss"]) and np.isfinite(learner["world_model/mdn_nll"])
    assert r1["real/acted_randomly"] == 1.0 and r2["real/acted_randomly"] == 0.0
    assert set(r2["timers"]) >= {"collect_real", "fit_world_model", "train_controller"}


def test_fit_epochs_count_the_whole_replay_or_only_the_new_steps(trained):
    """Default: V's and M's epochs are passes over the whole replay (a fit grows with it); fit_epochs_over="new":
    passes over the steps collected this iteration (a fixed training ratio). M's epochs count the transitions its
    windows really hold (windows cut by an episode's end count less), so M trains just past the asked-for number."""
    import math

    def assert_mdn_epochs(result, steps):
        target, seen = cfg.mdn_epochs_per_iteration * steps, result["world_model/mdn_transitions"]
        assert target <= seen < target + per_mdn  # the last window batch is the one that crossed the target
        assert result["world_model/mdn_updates"] >= math.ceil(target / per_mdn)

    cfg = tiny_config()
    per_vae, per_mdn = cfg.vae_batch_size, cfg.mdn_batch_size * cfg.mdn_seq_len
    _, (_, r2) = trained
    replay = r2["real/replay_num_env_steps"]
    assert r2["world_model/vae_updates"] == math.ceil(cfg.vae_epochs_per_iteration * replay / per_vae)
    assert_mdn_epochs(r2, replay)
    algo = tiny_config().world_model(fit_epochs_over="new").build_algo()
    try:
        n1, n2 = algo.train(), algo.train()
    finally:
        algo.stop()
    new = n2["real/num_env_steps_collected_lifetime"] - n1["real/num_env_steps_collected_lifetime"]
    assert 0 < new < n2["real/replay_num_env_steps"]
    assert n1["world_model/vae_updates"] == math.ceil(n1["real/replay_num_env_steps"] / per_vae)  # all of it is new
    assert n2["world_model/vae_updates"] == math.ceil(cfg.vae_epochs_per_iteration * new / per_vae)
    assert_mdn_epochs(n2, new)


def test_v_frozen_after_its_first_fit_keeps_its_weights_and_encodes_only_new_episodes(ray_session):
    """vae_epochs_per_iteration=0 with a warm-up: V is fitted once, then frozen; later fits reuse the stored
    episodes' latents (the very tensors) and encode only the new episodes, and M still trains on all of them."""
    algo = tiny_config().world_model(vae_epochs_per_iteration=0.0, vae_warmup_epochs=1.0).build_algo()
    try:
        r1 = algo.train()
        vae = {k: v.clone() for k, v in algo.world_model.vae.state_dict().items()}
        before = dict(algo._latents)
        r2 = algo.train()
        after = algo._latents
    finally:
        algo.stop()
    assert r1["world_model/vae_updates"] > 0 and r2["world_model/vae_updates"] == 0
    assert all(torch.equal(v, algo.world_model.vae.state_dict()[k]) for k, v in vae.items())
    assert set(before) < set(after) == {ep.id_ for ep in algo.replay.episodes}  # new episodes encoded too
    assert all(after[i] is before[i] for i in before)  # the old ones kept as they were
    assert r2["world_model/mdn_updates"] > 0


def test_a_full_replay_drops_its_oldest_episodes_counts_them_and_says_so(trained, caplog):
    _, (_, r2) = trained
    assert r2["real/replay_evicted_env_steps_lifetime"] == 0  # the default capacity holds everything here
    algo = tiny_config().world_model(replay_capacity=60).build_algo()
    try:
        with caplog.at_level(logging.WARNING, logger="rllib_worldmodel.algorithm"):
            algo.train()
            r2 = algo.train()
    finally:
        algo.stop()
    collected, kept = r2["real/num_env_steps_collected_lifetime"], r2["real/replay_num_env_steps"]
    assert r2["real/replay_evicted_env_steps_lifetime"] == collected - kept > 0
    assert 0 < kept <= 60  # the oldest whole episodes went
    warnings = [r.getMessage() for r in caplog.records if "replay is full" in r.getMessage()]
    assert len(warnings) == 1 and "replay_capacity=60" in warnings[0] and "--replay-capacity" in warnings[0]


def test_a_replay_that_would_outgrow_the_machine_is_named_before_collecting(caplog, monkeypatch):
    """replay_capacity x one observation's bytes is checked against the machine's memory at setup: twice the frames
    (what a run holds, measured) over the total warns with the field and the flag; a fitting one stays quiet."""
    import gymnasium as gym

    from rllib_worldmodel.algorithm import _warn_if_replay_outgrows_memory

    frames = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)  # 12,288 bytes a step
    monkeypatch.setattr("os.sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2_000_000}[name])  # 8.2 GB
    with caplog.at_level(logging.WARNING, logger="rllib_worldmodel.algorithm"):
        assert not _warn_if_replay_outgrows_memory(300_000, frames)  # 3.7 GB of frames, 7.4 GB held
        assert _warn_if_replay_outgrows_memory(400_000, frames)  # 4.9 GB of frames, 9.8 GB held
        assert not _warn_if_replay_outgrows_memory(10**9, gym.spaces.Discrete(3))  # no shape: nothing to estimate
    (message,) = [r.getMessage() for r in caplog.records]
    assert "replay_capacity=400000" in message and "64x64x3 uint8" in message and "4.9 GB" in message
    assert "--replay-capacity" in message and "8.2 GB" in message


def test_m_windows_are_padded_to_the_longest_drawn_not_to_seq_len(trained):
    """A window holds at most seq_len steps and is cut by its episode's end; the batch is only as long as its longest
    window (the LSTM runs over the padding), and every window continues from its own episode prefix."""
    algo, _ = trained
    longest = max(len(ep) for ep in algo.replay.episodes)
    batch = algo._mdn_batch(16, 10 * longest)
    held = batch["mask"].sum(1)
    assert batch["z_in"].shape[1] == batch["a"].shape[1] == held.max() <= longest
    assert (held >= 1).all() and np.all(batch["mask"][:, : int(held.min())] == 1)
    short = algo._mdn_batch(16, 3)
    assert short["z_in"].shape[1] <= 3 and short["mask"].sum(1).max() <= 3


def test_fitted_done_logit_scale_reaches_the_dream_and_the_checkpoint(ray_session, tmp_path):
    """done_logit_scale="fit": after the fit, the scale is M's maximum-likelihood one on the replay's real deaths;
    the dream, the calibration after it, the exported world model and a restored checkpoint all use it."""
    from rllib_worldmodel.calibration import fit_done_logit_scale
    from rllib_worldmodel.models.world_model import read_checkpoint

    config = tiny_config().dream(done_mode="sample", calibrate_deaths=True, done_logit_scale="fit")
    algo = config.build_algo()
    fresh = config.build_algo()
    try:
        result = algo.train()
        want = fit_done_logit_scale(algo.world_model, algo._whole_episodes(), algo.dream_settings(scoring=True))
        assert result["dream/done_logit_scale"] == pytest.approx(want["scale"]) == algo.done_logit_scale
        assert result["world_model/done_scale_nll"] <= result["world_model/done_scale_nll_as_fitted"]
        assert algo.dream_settings().done_logit_scale == algo.done_logit_scale
        exported = read_checkpoint(algo.export_world_model(tmp_path / "wm.pt"))["metadata"]
        assert exported["done_logit_scale"] == algo.done_logit_scale
        assert exported["env_settings"] == config.env_config["real"]  # benchmarks replay the env M was fitted on
        fresh.restore_from_path(algo.save_to_path(str(tmp_path / "ckpt")))
        assert fresh.done_logit_scale == algo.done_logit_scale
        assert fresh.done_logit_offset == algo.done_logit_offset
    finally:
        algo.stop()
        fresh.stop()


def test_controller_input_options_run_in_the_dream_and_the_real_evaluation(ray_session):
    """include_prev_action and include_hidden=False: CMA-ES's dreams, the dream score and the real evaluation all
    feed C the same input ([z, previous action], no h)."""
    algo = tiny_config().dream(include_prev_action=True, include_hidden=False).build_algo()
    try:
        result = algo.train()
        module = algo.local_module
        assert module.controller.input_size == 4 + 2  # z and the one-hot of CartPole's two actions; no h
        settings = algo.dream_settings()
        assert settings.include_prev_action and not settings.include_hidden
        ev = result["evaluation"]
        assert ev["real/num_episodes"] >= 4 and np.isfinite(ev["dream_real_gap"])
    finally:
        algo.stop()


def test_evaluation_is_on_the_real_env_with_dream_gap(trained):
    _, (_, r2) = trained
    ev = r2["evaluation"]
    assert ev["real/num_episodes"] >= 4
    assert ev["real/episode_return_min"] <= ev["real/episode_return_mean"] <= ev["real/episode_return_max"]
    assert ev["real/episode_return_std"] >= 0
    assert ev["dream_real_gap"] == pytest.approx(ev["dream/episode_return_mean"] - ev["real/episode_return_mean"])
    # which agent played: C alone, deciding at its action repeat (1 in tiny_config)
    assert (ev["real/plan_horizon"], ev["real/decision_every"]) == (0, 1)
    # RLlib's own evaluation stats of the same episodes, where Tune users look for them
    assert ev["env_runners"]["num_episodes"] == ev["real/num_episodes"]
    assert ev["env_runners"]["episode_return_max"] >= ev["real/episode_return_min"]


def test_dream_steps_are_never_counted_as_real(trained):
    algo, (r1, r2) = trained
    kept = r2["real/num_env_steps_collected_lifetime"]
    # every real step is counted, the dropped ones' (stepped beside the collected episodes) too; no dream step is
    assert r2["env_runners"]["num_env_steps_sampled_lifetime"] == r2["real/num_env_steps_sampled_lifetime"] >= kept
    assert r2["dream/num_env_steps_sampled_lifetime"] > 0
    assert algo.replay.get_num_timesteps() == kept


def test_controller_weights_reach_the_env_runner(trained):
    algo, _ = trained
    runner_state = algo.env_runner.module.get_state()
    local = algo.local_module.controller.state_dict()
    for k, v in local.items():
        np.testing.assert_allclose(np.asarray(runner_state[f"controller.{k}"]), v.numpy(), rtol=1e-6)
    np.testing.assert_allclose(algo.local_module.controller.get_flat(), algo.cma.mean_params(), rtol=1e-5, atol=1e-6)


def test_a_new_algorithm_dreams_searches_and_evaluates_one_agent(ray_session):
    """The local module (dreams, CMA-ES's start) starts as the Learner's, which the EnvRunners play: one random
    init, not two."""
    algo = tiny_config().build_algo()
    try:
        learner = algo.learner_group.get_weights()["default_policy"]
        for k, v in algo.local_module.state_dict().items():
            np.testing.assert_array_equal(v.cpu().numpy(), np.asarray(learner[k]), err_msg=k)
        evaluator = algo._synced_evaluation_group().local_env_runner.module
        np.testing.assert_array_equal(evaluator.controller.get_flat(), algo.local_module.controller.get_flat())
        np.testing.assert_array_equal(algo.cma.mean_params(), algo.local_module.controller.get_flat())
    finally:
        algo.stop()


def test_agent_changes_reach_the_env_runner_without_a_learner_update(trained):
    # An EnvRunner skips syncs whose WEIGHTS_SEQ_NO is not newer than its own; set_weights does not bump it, so
    # a second change between two Learner updates (end of the random phase, the explorer's weights) must still land.
    algo, _ = trained
    runner = algo.env_runner.module
    assert float(runner.random_only) == 0.0  # iteration 2 acted with the controller, not at random
    deployed = algo.local_module.controller.get_flat()
    other = deployed + 1.0
    algo._set_agent_state(controller=algo._controller_state(other))
    np.testing.assert_allclose(runner.controller.get_flat(), other, rtol=1e-6)
    algo._set_agent_state(random_only=True)
    assert float(runner.random_only) == 1.0
    algo._set_agent_state(random_only=False, controller=algo._controller_state(deployed))
    np.testing.assert_allclose(runner.controller.get_flat(), deployed, rtol=1e-6)


def test_planning_switched_on_after_training_acts_is_scored_in_the_dream_and_anchors_nothing(trained):
    algo, _ = trained
    controller_alone, anchor = dict(algo.dream_score), algo._policy_anchor
    runner = algo.env_runner.module
    try:
        score = algo.set_planning(4, samples=2, dream_episodes=3)
        assert score == algo.dream_score and set(score) == {"mean", "std", "min", "max"}
        # the switch and the run's calibrated dream reach the EnvRunner that plays the evaluation
        assert int(runner.plan_horizon) == 4 and int(runner.plan_samples) == 2
        assert float(runner.plan_done_offset) == algo.done_logit_offset
        assert runner.plan_settings() == algo.local_module.plan_settings()
        ev = algo.evaluate_real(3)
        assert ev["real/num_episodes"] >= 3
        assert (ev["real/plan_horizon"], ev["real/decision_every"]) == (4, 1)  # the planner played, not C
        assert ev["dream/episode_return_mean"] == score["mean"]  # the planning agent's own dream score
        assert algo._policy_anchor is anchor  # the planner's real score is not C's calibration anchor
        with pytest.raises(ValueError, match="plan_samples=0"):
            algo.set_planning(4, samples=0)
        algo.set_planning(4, samples=2, dream_episodes=3, rollouts="parallel", terminal_value=50.0)
        assert runner.plan_settings().rollouts == "parallel" == algo.local_module.plan_settings().rollouts
        assert runner.plan_settings().terminal_value == 50.0 == algo.local_module.plan_settings().terminal_value
        # a change after an evaluation reaches the evaluation EnvRunner too (no Learner update between: an RLlib
        # weight sync alone would skip it, and the next evaluation would play the agent evaluated before)
        evaluator = algo._synced_evaluation_group().local_env_runner.module
        assert evaluator is not runner and evaluator.plan_settings() == algo.local_module.plan_settings()
        assert np.isfinite(algo.dream_score["mean"])  # the parallel planner scored in the dream
        # a collecting planner of its own, finer than the deployed one, reaches the collecting EnvRunner
        algo.set_planning(4, samples=2, dream_episodes=3, collect=True, collect_horizon=3, collect_every=1)
        assert runner.plan_settings().collection() == algo.local_module.plan_settings().collection()
        assert (runner.plan_settings().collection().horizon, runner.planner(collect=True).interval) == (3, 1)
    finally:
        algo.set_planning(0)
    assert int(runner.plan_horizon) == 0 and runner.plan_settings().rollouts == "controller"
    assert runner.plan_settings().terminal_value == 0.0  # the config's again
    assert not runner.plan_settings().collect and int(runner.plan_collect_horizon) == 0  # the config's: C collects
    assert algo.eval_env_runner_group.local_env_runner.module.plan_settings() == runner.plan_settings()
    assert algo.dream_score == controller_alone  # C alone again, on the same dreams


def test_reading_real_frames_as_means_reaches_every_env_runner_and_stays_with_the_saved_agent(trained, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    algo, _ = trained
    evaluator = algo._synced_evaluation_group().local_env_runner.module
    assert algo.config.real_z == "sample" == evaluator.real_z
    try:
        algo.set_real_z("mean")
        # the collecting and the evaluating EnvRunner, between two Learner updates (no RLlib sync would carry it)
        assert algo.local_module.real_z == algo.env_runner.module.real_z == evaluator.real_z == "mean"
        path = Path(algo.save_to_path(str(tmp_path / "ckpt")))
        saved = RLModule.from_checkpoint(str(path / "learner_group" / "learner" / "rl_module" / "default_policy"))
        assert saved.real_z == "mean"  # the config says "sample"; the saved agent reads as it was switched
        with pytest.raises(ValueError, match="real_z='median'"):
            algo.set_real_z("median")
    finally:
        algo.set_real_z("sample")
    assert algo.env_runner.module.real_z == evaluator.real_z == "sample"


def test_a_kept_agent_is_deployed_on_every_copy_with_its_own_calibrated_dream(trained, tmp_path):
    """`save_agent` keeps the acting agent alone (no replay); `load_agent` puts it back on the Learner, the local
    module and every EnvRunner, with the done-logit offset its dream was calibrated with, and re-scores it."""
    algo, _ = trained
    offset = algo.done_logit_offset
    first = algo.save_agent(tmp_path / "agents" / "iteration_002")
    assert sorted(p.name for p in first.iterdir()) == ["agent", "world_model.pt"]
    assert not first.with_name("iteration_002.partial").exists()
    kept_c = {k: v.clone() for k, v in algo.local_module.controller.state_dict().items()}
    # another agent: C moved, its dream calibrated elsewhere
    algo._set_agent_state(controller={k: v + 1.0 for k, v in kept_c.items()})
    algo.done_logit_offset = offset + 1.0
    other = algo.save_agent(tmp_path / "agents" / "iteration_003")

    def learner_c():
        out = algo.learner_group.foreach_learner(
            lambda learner: learner.module["default_policy"].controller.net.weight.detach().clone()
        )
        return [w.get() if hasattr(w, "get") else w for w in out][0]

    evaluator = algo._synced_evaluation_group().local_env_runner.module
    try:
        score = algo.load_agent(first)
        assert algo.done_logit_offset == offset and set(score) >= {"mean", "std"} and score == algo.dream_score
        for module_c in (
            learner_c(),
            algo.local_module.controller.net.weight,
            algo.env_runner.module.controller.net.weight,
            evaluator.controller.net.weight,
        ):
            torch.testing.assert_close(module_c, kept_c["net.weight"])
        algo.load_agent(other)
        assert algo.done_logit_offset == offset + 1.0
        torch.testing.assert_close(evaluator.controller.net.weight, kept_c["net.weight"] + 1.0)
        with pytest.raises(FileNotFoundError, match="not a kept agent's folder"):
            algo.load_agent(tmp_path / "agents")
    finally:
        algo.load_agent(first)  # the fixture's agent, as it was
    torch.testing.assert_close(algo.env_runner.module.controller.net.weight, kept_c["net.weight"])


def test_bf16_precision_reaches_every_copy_of_the_agent_and_a_planning_run_trains_on_it(ray_session):
    """`world_model(precision="bf16")`: the Learner fits, the local module dreams and the EnvRunners' planners look
    ahead in bfloat16; losses and scores stay finite float32 numbers, and the weights stay float32."""
    config = tiny_config(takecover=True).world_model(precision="bf16").controller(plan_horizon=3, plan_samples=2)
    algo = config.build_algo()
    try:
        algo.train()
        r = algo.train()  # the second iteration collects with C and evaluates the planning agent
        evaluating = algo.eval_env_runner_group.local_env_runner.module
        learner_precision = algo.learner_group.foreach_learner(
            lambda learner: learner.module["default_policy"].world_model.precision
        )
        assert [p.get() if hasattr(p, "get") else p for p in learner_precision] == ["bf16"]
        assert [m.world_model.precision for m in (algo.local_module, algo.env_runner.module, evaluating)] == [
            "bf16"
        ] * 3
        assert {p.dtype for p in algo.local_module.parameters()} == {torch.float32}
        # set on a built (e.g. restored) algorithm: every copy again; "auto" resolves on each copy's own device
        algo.set_precision("auto")
        learner_precision = algo.learner_group.foreach_learner(
            lambda learner: learner.module["default_policy"].world_model.resolved_precision()
        )
        expected = "bf16" if bf16_supported("cpu") else "fp32"
        assert [p.get() if hasattr(p, "get") else p for p in learner_precision] == [expected]
        copies = (algo.local_module, algo.env_runner.module, evaluating)
        assert [(m.world_model.precision, m.world_model.resolved_precision()) for m in copies] == [
            ("auto", expected)
        ] * 3
        with pytest.raises(ValueError, match="precision='fp16'"):
            algo.set_precision("fp16")
    finally:
        algo.stop()
    learner = r["learners"]["default_policy"]
    assert learner["world_model/bf16"] == 1.0  # what the Learner computed at
    assert np.isfinite(learner["world_model/vae_loss"]) and np.isfinite(learner["world_model/mdn_nll"])
    assert np.isfinite(r["dream/cma_fitness_mean"]) and np.isfinite(r["evaluation"]["dream/episode_return_mean"])
    assert r["evaluation"]["real/num_episodes"] >= 4


def test_a_run_configured_to_plan_evaluates_the_planning_agent_and_scores_it_in_the_dream(ray_session):
    """... and, with distill_states, deploys C fitted to the planner's choices while CMA-ES keeps its own mean; the
    fitted C decides at the planner's interval when it acts alone, a searched C at C's action_repeat again."""
    algo = (
        tiny_config()
        .controller(
            plan_horizon=3, plan_samples=2, plan_every=2, plan_dream_episodes=2, distill_states=12, distill_epochs=3
        )
        .build_algo()
    )

    def intervals() -> list[int]:  # C's interval alone in the dream, the collecting and the evaluating agent
        evaluating = algo.eval_env_runner_group.local_env_runner.module
        return [m.controller_interval() for m in (algo.local_module, algo.env_runner.module, evaluating)]

    try:
        algo.train()
        r = algo.train()
        deployed = algo.local_module.controller.get_flat()
        np.testing.assert_allclose(algo.env_runner.module.controller.get_flat(), deployed, rtol=1e-6)
        assert not np.allclose(deployed, algo.cma.mean_params())  # the fitted C, not CMA-ES's mean
        assert intervals() == [2, 2, 2]  # the planner's interval, everywhere
        again = algo.distill_controller()  # also callable on a restored agent; re-scores it in the dream
        algo._set_agent_state(controller=algo._controller_state(algo.cma.mean_params()))  # as after a CMA-ES search
        assert intervals() == [1, 1, 1]  # C's action_repeat
    finally:
        algo.stop()
    assert algo.env_runner.module.plan_settings().horizon == 3
    assert np.isfinite(r["dream/controller_return_mean"])  # C alone, beside the planning agent's dream score
    assert r["dream/episode_return_mean"] == r["evaluation"]["dream/episode_return_mean"]
    assert r["evaluation"]["real/num_episodes"] >= 4
    assert r["dream/distill_states"] == 12 and np.isfinite(r["dream/distill_regret_after"])
    assert again["dream/distill_states"] == 12


def fitted_alone_config(**controller) -> rw.WorldModelsConfig:
    """The tiny preset planning 3 steps ahead every 2, C fitted to it at 12 states and deployed alone."""
    return tiny_config().controller(
        plan_horizon=3,
        plan_samples=2,
        plan_every=2,
        distill_states=12,
        distill_epochs=3,
        distill_deploy="alone",
        **controller,
    )


def test_a_fitted_c_deployed_alone_plays_without_planning_and_is_refitted_by_the_configs_planner(ray_session):
    """distill_deploy="alone": the planner labels C's states, then planning is off where the agent acts without
    exploration (its fitted C decides alone at the planner's interval), the collecting planner keeps collecting,
    and the next iteration's fit is labelled by the config's planner (the agent no longer plans)."""
    algo = fitted_alone_config(plan_collect=True).build_algo()
    try:
        first = algo.train()
        second = algo.train()
        evaluating = algo.eval_env_runner_group.local_env_runner.module
        modules = (algo.local_module, algo.env_runner.module, evaluating)
        assert [m.plan_settings().enabled for m in modules] == [False] * 3  # deployed alone, everywhere
        assert [m.controller_interval() for m in modules] == [2, 2, 2]  # at the planner's interval
        collecting = algo.env_runner.module.plan_settings()
        assert collecting.collect and (collecting.collection().horizon, collecting.collection().every) == (3, 2)
        deployed = algo.local_module.controller.get_flat()
        assert not np.allclose(deployed, algo.cma.mean_params())  # the fitted C, not CMA-ES's mean
        np.testing.assert_allclose(evaluating.controller.get_flat(), deployed, rtol=1e-6)
        score = algo.deploy_searched_controller()  # CMA-ES's mean back, at C's action_repeat, everywhere
        assert score == algo.dream_score and [m.controller_interval() for m in modules] == [1, 1, 1]
        np.testing.assert_allclose(evaluating.controller.get_flat(), algo.cma.mean_params(), rtol=1e-6)
    finally:
        algo.stop()
    for r in (first, second):
        assert r["dream/distill_states"] == 12 and np.isfinite(r["dream/distill_regret_after"])
        assert (r["dream/distill_plan_horizon"], r["dream/distill_plan_every"]) == (3, 2)  # the config's planner
        assert "dream/controller_return_mean" not in r  # the dream score is C alone's: no planning agent beside it
        assert r["evaluation"]["real/num_episodes"] >= 4


def test_a_fit_checked_in_the_real_game_deploys_the_c_that_plays_better(ray_session, monkeypatch):
    """distill_check_episodes: after the fit, the fitted C and CMA-ES's searched C each play real episodes without
    exploration on the training EnvRunners; the better real mean is deployed everywhere (at its own interval), the
    steps are counted as sampled real steps, and the episodes are not stored."""
    from rllib_worldmodel import algorithm as algorithm_module
    from rllib_worldmodel.distill import DistillSettings

    algo = fitted_alone_config(distill_check_episodes=3).build_algo()
    evaluating = algo.eval_env_runner_group.local_env_runner.module
    modules = (algo.local_module, algo.env_runner.module, evaluating)
    try:
        r = algo.train()
        kept = r["real/distill_check_kept_fitted"]
        assert kept in (0.0, 1.0) and r["real/distill_check_env_steps"] >= 3 * 2  # 3 real episodes each
        assert (r["real/distill_check_fitted_mean"] >= r["real/distill_check_searched_mean"]) == bool(kept)
        collected = r["real/num_env_steps_collected_lifetime"]
        assert r["real/num_env_steps_sampled_lifetime"] >= collected + r["real/distill_check_env_steps"]
        assert r["real/replay_num_env_steps"] == collected  # the check's episodes are not stored
        is_searched = np.allclose(algo.local_module.controller.get_flat(), algo.cma.mean_params())
        assert is_searched != bool(kept)
        assert [m.controller_interval() for m in modules] == ([2] * 3 if kept else [1] * 3)

        # Constructed outcomes: the real returns follow which C the training EnvRunner plays.
        def played_by(searched_wins: bool):
            def fake(group, num_episodes):
                assert group is algo.env_runner_group  # never the evaluation EnvRunners
                searched = np.allclose(group.local_env_runner.module.controller.get_flat(), algo.cma.mean_params())
                mean = 20.0 if searched == searched_wins else 10.0
                return np.full(num_episodes, 5.0), np.array([mean - 1.0, mean + 1.0] * num_episodes)[:num_episodes], []

            return fake

        settings = DistillSettings(states=12, epochs=3, deploy="alone", check_episodes=2)
        monkeypatch.setattr(algorithm_module, "evaluation_episodes", played_by(searched_wins=True))
        m = algo.distill_controller(settings)
        assert (m["real/distill_check_searched_mean"], m["real/distill_check_fitted_mean"]) == (20.0, 10.0)
        assert m["real/distill_check_kept_fitted"] == 0.0 and m["real/distill_check_env_steps"] == 20.0
        for module in modules:  # the searched C, at C's action_repeat, everywhere
            np.testing.assert_allclose(module.controller.get_flat(), algo.cma.mean_params(), rtol=1e-6)
            assert module.controller_interval() == 1 and not module.plan_settings().enabled
        monkeypatch.setattr(algorithm_module, "evaluation_episodes", played_by(searched_wins=False))
        m = algo.distill_controller(settings)
        assert m["real/distill_check_kept_fitted"] == 1.0 and m["real/distill_check_fitted_mean"] == 20.0
        deployed = algo.local_module.controller.get_flat()
        assert not np.allclose(deployed, algo.cma.mean_params())  # the fitted C is back ...
        for module in modules:  # ... everywhere, at the planner's interval
            np.testing.assert_allclose(module.controller.get_flat(), deployed, rtol=1e-6)
            assert module.controller_interval() == 2
    finally:
        algo.stop()


def test_exported_world_model_drives_the_dream_env(trained, tmp_path):
    algo, _ = trained
    path = algo.export_world_model(tmp_path / "wm.pt")
    env = rw.DreamEnv(path, max_episode_steps=10)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 + 16,)
    # the dream the controller was trained in, as the export records it (offset and scale)
    from rllib_worldmodel.models.world_model import read_checkpoint

    settings = rw.DreamSettings.exported(read_checkpoint(path)["metadata"], temperature=0.5)
    assert settings.done_logit_offset == algo.done_logit_offset and settings.done_logit_scale == algo.done_logit_scale
    assert (settings.done_mode, settings.temperature) == ("sample", 0.5)
    assert rw.DreamSettings.exported({}).done_logit_offset == 0.0
    with pytest.raises(ValueError, match="unknown dream setting"):
        rw.DreamSettings.exported({}, temprature=0.5)


def test_checkpoint_restores_exactly_and_resumes_in_a_fresh_process(trained, tmp_path):
    algo, _ = trained
    ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    out = run_in_fresh_process(
        f"""
        from ray.rllib.algorithms.algorithm import Algorithm
        algo = Algorithm.from_checkpoint({str(ckpt)!r})
        import hashlib
        digest = hashlib.sha1(b"".join(e.get_observations().tobytes() for e in algo.replay.episodes)).hexdigest()
        out = {{"iteration": algo.iteration, "replay": algo.replay.get_num_timesteps(), "frames": digest,
               "generation": algo.cma.generation, "controller": algo.local_module.controller.get_flat().tolist()}}
        r = algo.train()
        out["after"] = r["training_iteration"]
        out["replay_after"] = algo.replay.get_num_timesteps()
        algo.stop()
        """,
        cwd=tmp_path,
    )
    assert out["iteration"] == algo.iteration == 2
    assert out["replay"] == algo.replay.get_num_timesteps()
    # every frame the replay held comes back (the checkpoint holds it lz4-packed, `data.pack_replay_state`)
    frames = b"".join(e.get_observations().tobytes() for e in algo.replay.episodes)
    assert out["frames"] == hashlib.sha1(frames).hexdigest()
    assert out["generation"] == algo.cma.generation
    np.testing.assert_allclose(out["controller"], algo.local_module.controller.get_flat(), rtol=1e-6)
    assert out["after"] == 3 and out["replay_after"] > out["replay"]


def test_a_checkpoint_without_the_sampled_step_count_resumes_it_from_the_kept_steps(trained):
    """Checkpoints written before every real step was counted hold only the kept steps: a resumed run counts on from
    them, not from 0 (the CLI prints this count as "real steps")."""
    algo, _ = trained
    state = algo.get_state()
    kept = algo.metrics.peek("real/num_env_steps_collected_lifetime")
    assert algo.metrics.peek("real/num_env_steps_sampled_lifetime") >= kept > 0
    del state["metrics_logger"]["stats"]["real/num_env_steps_sampled_lifetime"]
    fresh = tiny_config().build_algo()
    try:
        fresh.set_state(state)
        assert fresh.metrics.peek("real/num_env_steps_sampled_lifetime") == kept
    finally:
        fresh.stop()


def test_restoring_a_replay_bigger_than_the_capacity_says_so_before_anything_is_dropped(trained, caplog):
    """A run resumed with a smaller replay_capacity than its checkpoint's replay holds keeps every restored step until
    the next collection: the warning comes at restore, names both numbers and the setting that keeps them."""
    algo, _ = trained
    state = algo.get_state()
    held = algo.replay.get_num_timesteps()
    assert held > 60
    fresh = tiny_config().world_model(replay_capacity=60).build_algo()
    try:
        with caplog.at_level(logging.WARNING, logger="rllib_worldmodel.algorithm"):
            fresh.set_state(state)
        assert fresh.replay.get_num_timesteps() == held  # nothing dropped yet
        warnings = [r.getMessage() for r in caplog.records if "restored replay" in r.getMessage()]
        assert len(warnings) == 1
        assert f"holds {held} real steps" in warnings[0] and "replay_capacity=60" in warnings[0]
        assert f"replay_capacity >= {held}" in warnings[0] and "--replay-capacity" in warnings[0]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rllib_worldmodel.algorithm"):
            algo.set_state(state)  # the capacity it was saved with: nothing to say
        assert not [r for r in caplog.records if "restored replay" in r.getMessage()]
    finally:
        fresh.stop()


def test_registered_trainable_under_tune(ray_session, tmp_path):
    from ray import tune

    tuner = tune.Tuner(
        "WorldModels",
        param_space=tiny_config(),
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0),
    )
    result = tuner.fit().get_best_result(metric="evaluation/real/episode_return_mean", mode="max")
    assert result.error is None
    assert np.isfinite(result.metrics["evaluation"]["real/episode_return_mean"])


def test_one_iteration_on_real_takecover(ray_session):
    """With a frame skip of 2 (the EnvRunners build the env from env_config): the score stays frames survived."""
    config = tiny_config(takecover=True)
    config.environment(env_config={"real": {"frame_cap": 120, "frame_skip": 2}}).dream(max_episode_steps=60)
    algo = config.build_algo()
    try:
        r = algo.train()
    finally:
        algo.stop()
    ev = r["evaluation"]
    assert ev["real/num_episodes"] >= 4
    assert ev["real/episode_len_mean"] <= 60  # 120 frames are 60 steps of 2 tics
    assert ev["real/episode_return_mean"] > 1.5 * ev["real/episode_len_mean"]  # +1 per tic: 2 a step, less at death
    assert r["learners"]["default_policy"]["world_model/vae_recon"] > 0


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: c.dream(temperature=0.0), "temperature"),
        (lambda c: c.controller(cma_population=1), "cma_population"),
        (lambda c: c.controller(trainer="ga"), "controller trainer"),
        (lambda c: c.collection(random_hold_prob=1.5), "random_hold_prob"),
        (lambda c: c.collection(random_hold_steps=(10, 1)), "random_hold_steps"),
        (lambda c: c.collection(random_hold_steps=(0, 10)), "random_hold_steps"),
        (lambda c: c.collection(random_iterations=0), "random_iterations"),
        (lambda c: c.world_model(mdn_seq_len=0), "mdn_seq_len"),
        (lambda c: c.world_model(fit_epochs_over="all"), "fit_epochs_over"),
        (lambda c: c.world_model(vae_epochs_per_iteration=-1.0), "vae_epochs_per_iteration"),
        (lambda c: c.world_model(vae_epochs_per_iteration=0.0, vae_warmup_epochs=0.0), "would never train V"),
        (lambda c: c.dream(done_logit_scale=-1.0), "done_logit_scale"),
        (lambda c: c.dream(done_logit_scale="sharp"), "done_logit_scale"),
        (lambda c: c.dream(done_logit_scale="fit", done_mode="threshold"), "done_mode"),
        (lambda c: c.dream(calibrate_deaths="controller"), "calibrate_deaths"),
        (lambda c: c.world_model(wm_loss_weights={"mdn": 1.0}), "wm_loss_weights"),
        (lambda c: c.evaluation(evaluation_duration_unit="timesteps"), "evaluation_duration_unit"),
        (lambda c: c.world_model(precision="fp16"), "precision='fp16'"),
    ],
)
def test_config_validation_says_what_to_change(change, match):
    config = change(tiny_config())
    with pytest.raises(ValueError, match=match):
        config.validate()


def test_a_dream_longer_than_the_frame_skipped_real_episode_is_refused():
    config = tiny_config(takecover=True).environment(env_config={"real": {"frame_cap": 2100, "frame_skip": 4}})
    config.dream(max_episode_steps=525).validate()  # 2100 frames at 4 tics a step
    with pytest.raises(ValueError, match=r"max_episode_steps=525\)"):
        config.dream(max_episode_steps=2100).validate()


def test_rllib_controller_trainer_ppo_in_the_dream(ray_session):
    """Trainer (b): stock PPO on DreamVectorEnv EnvRunners; its policy weights become the acting controller."""
    from ray.rllib.algorithms.ppo import PPOConfig

    ppo = (
        PPOConfig()
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=2)
    )
    config = (
        tiny_config()
        .controller(trainer="rllib", dream_algo_config=ppo, dream_algo_iterations=2, dream_num_envs=8)
        .dream(temperature=[1.2, 0.9], done_mode="sample", calibrate_deaths=True, reward_range=(0.0, 1.0))
    )
    algo = config.build_algo()
    try:
        r1 = algo.train()
        r2 = algo.train()
        inner = algo.dream_trainer.algo.get_module("default_policy").pi.state_dict()
        for k, v in algo.local_module.controller.state_dict().items():
            np.testing.assert_allclose(v.numpy(), inner[k].numpy(), rtol=1e-6)
        # The inner dream envs train in this iteration's dream: tau schedule, calibrated offset, reward clipping.
        sim = algo.dream_trainer.algo.env_runner.env.unwrapped.sim
        want = algo.dream_settings()
        assert sim.temperature == 0.9 and sim.settings.done_logit_offset == want.done_logit_offset
        assert (sim.settings.done_mode, sim.settings.reward_range) == ("sample", (0.0, 1.0))
    finally:
        algo.stop()
    assert r2["dream/num_env_steps_sampled_lifetime"] > r1["dream/num_env_steps_sampled_lifetime"] >= 2 * 256
    assert r2["env_runners"]["num_env_steps_sampled_lifetime"] == r2["real/num_env_steps_sampled_lifetime"]
    assert np.isfinite(r2["dream/rllib/episode_return_mean"])
    assert "dream_real_gap" in r2["evaluation"]


def test_world_model_fits_on_two_remote_learners(ray_session):
    """num_learners=2: V and M batches are split across two Learner actors and their weights stay in sync."""
    config = tiny_config().learners(num_learners=2).evaluation(evaluation_interval=None)
    algo = config.build_algo()
    try:
        r = algo.train()
        states = algo.learner_group.foreach_learner(lambda learner: learner.module["default_policy"].get_state())
        states = [s.get() if hasattr(s, "get") else s for s in states]
    finally:
        algo.stop()
    assert np.isfinite(r["learners"]["default_policy"]["world_model/mdn_nll"])
    a, b = states
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-6, err_msg=k)


def lever_config():
    """Tiny preset with every issue-4 lever switched on."""
    return (
        tiny_config()
        .world_model(
            num_heads=3,
            done_bias_init=-3.0,
            vae_warmup_epochs=1.0,
            death_window_fraction=1.0,
            mdn_recency_half_life=40,
            done_refit_horizon=10,
            done_refit_every=3,
            done_refit_steps=20,
        )
        .collection(surprise_exploration=0.5, curiosity=[0.0, 1.0], curiosity_bonus="disagreement")
        .dream(
            temperature=("linear", 1.2, 1.0, 2),
            pessimism=0.5,
            done_ensemble="max",
            initial_noise=0.1,
            calibrate_deaths=True,
        )
        .exploit_guard(enabled=True, gap_ratio=1e-9, temperature_step=0.05, pessimism_step=0.25, extra_episodes=2)
        .controller(action_repeat=2)
    )


@pytest.fixture(scope="module")
def levers(ray_session):
    algo = lever_config().build_algo()
    results = [algo.train(), algo.train(), algo.train()]
    yield algo, results
    algo.stop()


def test_levers_report_their_metrics(levers):
    _, (r1, r2, r3) = levers
    assert r1["dream/temperature"] == pytest.approx(1.2) and r1["dream/curiosity"] == 0.0
    assert np.isfinite(r1["dream/done_logit_offset"]) and r1["real/behaviour_episode_len_mean"] > 0
    for key in ("dream/cma_extrinsic_mean", "dream/cma_disagreement_mean", "dream/cma_penalty_mean"):
        assert key in r2 and np.isfinite(r2[key]), key
    # curiosity is 0 in round 1 (no explorer), 1.0 from round 2: the explorer trains, then collects in round 3
    assert "dream/explorer_fitness_mean" not in r1 and "dream/explorer_intrinsic_mean" in r2
    assert r3["real/explorer_episodes"] == round(6 * 0.5)
    ev = r2["evaluation"]
    assert {"guard/gap_ratio", "guard/triggered", "guard/temperature_offset", "guard/pessimism_offset"} <= set(ev)


def test_done_head_is_refitted_on_dreams_and_reaches_the_learners(levers):
    algo, results = levers
    for r in results:
        assert r["world_model/done_refit_skipped"] == 0.0 and r["world_model/done_refit_deaths"] > 0
        assert np.isfinite(r["world_model/done_refit_val_loss_after"])
    learner = algo.learner_group.get_weights(module_ids=["default_policy"])["default_policy"]
    local = algo.world_model.mdn_rnn.done_head
    np.testing.assert_allclose(np.asarray(learner["world_model.mdn_rnn.done_head.weight"]), local.weight.detach())
    assert not torch.allclose(local.weight[0], local.weight[1])  # members refitted on their own resamples


def test_m_batches_oversample_deaths_and_bootstrap_members(levers):
    algo, _ = levers
    batch = algo._mdn_batch(16, 8)
    assert (batch["done"].sum(1) == 1).all()  # death_window_fraction=1: every window holds its episode's death
    assert batch["member_weights"].shape == (16, 3) and (batch["member_weights"] >= 0).all()


class _RecordingLatents(dict):
    """The algorithm's latents dict, recording which episodes `_mdn_batch` reads."""

    def __init__(self, latents):
        super().__init__(latents)
        self.read = []

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)


def test_m_windows_are_drawn_by_the_recency_weights(levers):
    """mdn_recency_half_life=40: each episode is drawn by length x 2^(-steps stored after it / 40), death windows by
    the weight alone; the metric reports the drawn steps' mean age, below the uniform draw's."""
    algo, results = levers
    episodes = list(algo.replay.episodes)
    lengths = np.array([len(ep) for ep in episodes], float)
    weights = rw.data.recency_weights(lengths, 40)
    deaths = [i for i, ep in enumerate(episodes) if ep.is_terminated]
    p_death = np.zeros(len(episodes))
    p_death[deaths] = weights[deaths] / weights[deaths].sum()
    assert lengths.sum() > 4 * 40  # old episodes weigh far less than new ones
    recorder, latents = _RecordingLatents(algo._latents), algo._latents
    algo._latents = recorder
    try:
        algo._mdn_batch(2000, 4)  # death_window_fraction=1: every window is a death window
    finally:
        algo._latents = latents
    index = {ep.id_: i for i, ep in enumerate(episodes)}
    counts = np.bincount([index[k] for k in recorder.read], minlength=len(episodes))
    expected = 2000 * p_death
    assert np.abs(counts - expected).max() <= 5 * np.sqrt(expected.max()) + 1
    newest, oldest = deaths[-1], deaths[0]
    assert counts[newest] > counts[oldest]
    age = results[-1]["world_model/mdn_sample_age_steps"]
    uniform_age = np.sum(lengths / lengths.sum() * (rw.data.steps_stored_after(lengths) + (lengths - 1) / 2))
    assert 0 < age < uniform_age and age == pytest.approx(algo._mdn_sample_age())


def test_guard_reacts_to_a_constructed_gap(levers):
    algo, _ = levers
    before = dict(algo.guard_state)
    out = algo.exploit_guard(dream_mean=1000.0, real_mean=100.0)
    assert out["guard/triggered"] == 1.0 and out["guard/gap_ratio"] == pytest.approx(9.0)
    assert algo.guard_state["temperature_offset"] == pytest.approx(before["temperature_offset"] + 0.05)
    assert algo.guard_state["pessimism_offset"] == pytest.approx(before["pessimism_offset"] + 0.25)
    assert algo.guard_state["extra_episodes"] == 2
    knobs = algo.current_dream_knobs()
    assert knobs["pessimism"] == pytest.approx(0.5 + algo.guard_state["pessimism_offset"])
    assert knobs["temperature"] <= algo.config.guard_temperature_max
    algo.config._is_frozen = False
    algo.config.guard_gap_ratio = 100.0
    assert algo.exploit_guard(dream_mean=150.0, real_mean=100.0)["guard/triggered"] == 0.0  # gap 0.5 < 100


def test_guard_state_survives_a_checkpoint(levers, tmp_path):
    algo, _ = levers
    path = algo.save_to_path(str(tmp_path / "ckpt"))
    fresh = lever_config().build_algo()
    try:
        fresh.restore_from_path(path)
        assert fresh.guard_state == algo.guard_state
        np.testing.assert_array_equal(fresh._explorer_params, algo._explorer_params)
        assert fresh.explorer.generation == algo.explorer.generation
        torch.testing.assert_close(  # the refitted done head is in the learners' weights, so in the checkpoint
            fresh.world_model.mdn_rnn.done_head.weight, algo.world_model.mdn_rnn.done_head.weight
        )
    finally:
        fresh.stop()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: c.dream(pessimism=-0.1), "pessimism"),
        (lambda c: c.dream(pessimism=1.0), "num_heads"),
        (lambda c: c.collection(curiosity=-1.0), "curiosity"),
        (lambda c: c.collection(curiosity=1.0), "num_heads"),  # default bonus: disagreement
        (lambda c: c.collection(curiosity_bonus="fun"), "curiosity_bonus"),
        (lambda c: c.world_model(num_heads=0), "num_heads"),
        (lambda c: c.collection(surprise_exploration=-1.0), "surprise_exploration"),
        (lambda c: c.collection(explorer_fraction=2.0), "explorer_fraction"),
        (lambda c: c.dream(temperature=("linear", 1.0, 0.0, 3)), "temperature"),
        (lambda c: c.dream(done_ensemble="min"), "done_ensemble"),
        (lambda c: c.exploit_guard(enabled=True, pessimism_step=0.5), "num_heads"),
        (lambda c: c.exploit_guard(gap_ratio=0.0), "gap_ratio"),
        (lambda c: c.world_model(vae_focus_fraction=1.5), "vae_focus_fraction"),
        (lambda c: c.world_model(vae_focus_weight=-1.0), "vae_focus_weight"),
        (lambda c: c.environment(env_config={"real": {"damage_penalty": 1.0}}), "damage_penalty"),
        (lambda c: c.dream(reward_range=(1.0, -1.0)), "reward_range"),
        (lambda c: c.world_model(closed_loop=1.5), "closed_loop"),
        (lambda c: c.world_model(closed_loop=0.5, closed_loop_horizon=0), "closed_loop_horizon"),
        (lambda c: c.world_model(mdn_latents="mode"), "mdn_latents"),
        (lambda c: c.world_model(mdn_latents="mean"), "real_z='mean'"),
        (lambda c: c.world_model(done_refit_horizon=-1), "done_refit_horizon"),
        (lambda c: c.world_model(done_refit_horizon=10, done_refit_every=0), "done_refit_every"),
        (lambda c: c.world_model(done_refit_steps=0), "done_refit_steps"),
        (lambda c: c.world_model(done_refit_max_starts=0), "done_refit_max_starts"),
        (lambda c: c.world_model(mdn_recency_half_life=0), "mdn_recency_half_life"),
        (lambda c: c.world_model(mdn_recency_half_life=2.5), "mdn_recency_half_life"),
        (lambda c: c.world_model(mdn_recency_half_life=True), "mdn_recency_half_life"),
        (lambda c: c.controller(action_repeat=0), "action_repeat"),
        (lambda c: c.controller(action_repeat=4, trainer="rllib"), "action_repeat=4 needs trainer='cma'"),
        (lambda c: c.dream(start="middle"), "start"),
        (lambda c: c.dream(branch_focus=0.5), "branch_focus.*start='branch'"),
        (lambda c: c.dream(start="branch", branch_horizon=0), "branch_horizon"),
        (lambda c: c.dream(start="branch", branch_every=0), "branch_every"),
        (lambda c: c.dream(start="branch").controller(trainer="rllib"), "trainer='cma'"),
    ],
)
def test_lever_settings_fail_at_config_time(change, match):
    config = change(tiny_config())
    with pytest.raises(ValueError, match=match):
        config.validate()


def test_branched_dreams_closed_loop_m_and_expected_deaths(ray_session, tmp_path):
    """Training dreams start at real mid-episode states; M trains on its own samples; deaths are expected values;
    the dream score beside the real one still comes from whole dreams from episode starts."""
    config = (
        tiny_config()
        .world_model(closed_loop=0.5, closed_loop_horizon=4, mdn_latents="mean")
        .controller(real_z="mean")
        .dream(start="branch", branch_horizon=8, branch_focus=0.5, branch_every=3, done_mode="expected")
        .dream(calibrate_deaths=True)
    )
    algo = config.build_algo()
    try:
        r1, r2 = algo.train(), algo.train()
        wm = algo.world_model
        stored = sum(len(ep) for ep in algo.replay.episodes)
        assert 0 < r2["dream/branch_points"] == wm.branch_states.shape[0] <= stored
        assert np.isfinite(r2["learners"]["default_policy"]["world_model/mdn_nll"])
        batch = algo._mdn_batch(4, 8)
        assert (batch["closed_loop"] == 0.5).all() and (batch["closed_loop_horizon"] == 4).all()
        assert all((lat[1] == POINT_LOGVAR).all() for lat in algo._latents.values())  # M reads posterior means
        train, scoring = algo.dream_settings(), algo.dream_settings(scoring=True)
        assert (train.start, train.max_episode_steps, train.branch_focus) == ("branch", 8, 0.5)
        assert (scoring.start, scoring.max_episode_steps) == ("episode", config.dream_max_episode_steps)
        assert np.isfinite(r2["dream/episode_return_mean"]) and np.isfinite(r1["dream/done_logit_offset"])
        assert "dream_real_gap" in r2["evaluation"]
        with pytest.raises(ValueError, match="mdn_latents='mean'"):  # M never saw V's draws
            algo.set_real_z("sample")
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        fresh = config.build_algo()
        try:  # branch points are rebuilt from the restored replay and M, exactly
            fresh.restore_from_path(path)
            torch.testing.assert_close(fresh.world_model.branch_states, wm.branch_states)
            torch.testing.assert_close(fresh.world_model.branch_outcomes, wm.branch_outcomes)
        finally:
            fresh.stop()
    finally:
        algo.stop()


def test_calibrate_deaths_true_is_the_random_hold_anchor_by_name():
    assert tiny_config().dream(calibrate_deaths=True).calibrate_deaths == "behaviour"
    assert tiny_config().dream(calibrate_deaths=False).calibrate_deaths is False


def test_deaths_calibrated_to_the_last_evaluated_controller(ray_session, tmp_path):
    """calibrate_deaths="policy": the first fit anchors to the random holds (no controller yet); every real
    evaluation records the deployed controller and its real mean, and the next fit bisects the offset until that
    controller's dream return matches it. A checkpoint keeps the anchor; a state without one (a checkpoint from
    before the option) measures the deployed controller on the real env before the fit."""
    from rllib_worldmodel.calibration import controller_dream_return

    config = tiny_config().dream(done_mode="sample", calibrate_deaths="policy")
    algo = config.build_algo()
    try:
        r1 = algo.train()
        assert r1["dream/calibration_anchor"] == 0.0 and "dream/calibrated_behaviour_survival" in r1
        anchor = algo._policy_anchor
        assert anchor["real_return_mean"] == r1["evaluation"]["real/episode_return_mean"]
        assert anchor["real_return_std"] == pytest.approx(r1["evaluation"]["real/episode_return_std"])
        assert anchor["num_episodes"] == r1["evaluation"]["real/num_episodes"]
        assert anchor["action_repeat"] == config.action_repeat
        np.testing.assert_array_equal(anchor["params"], algo.local_module.controller.get_flat())
        r2 = algo.train()
        assert r2["dream/calibration_anchor"] == 1.0
        assert r2["real/policy_return_mean"] == anchor["real_return_mean"]
        assert r2["real/policy_return_std"] == anchor["real_return_std"]
        assert "dream/behaviour_survival" in r2 and "real/behaviour_episode_len_mean" in r2
        # the reported calibrated return is that controller's, in this dream, at the chosen offset
        settings = algo.dream_settings(scoring=True)
        assert settings.done_logit_offset == r2["dream/done_logit_offset"]
        replayed = controller_dream_return(
            algo.world_model,
            settings,
            algo.local_module.controller,
            anchor["params"],
            seed=config.seed + 11,
            action_repeat=anchor["action_repeat"],
        )
        assert replayed == pytest.approx(r2["dream/calibrated_policy_return"])
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        fresh = config.build_algo()
        try:
            fresh.restore_from_path(path)
            assert fresh._policy_anchor["real_return_mean"] == algo._policy_anchor["real_return_mean"]
            np.testing.assert_array_equal(fresh._policy_anchor["params"], algo._policy_anchor["params"])
            del fresh._policy_anchor["real_return_std"]  # as the first checkpoints with an anchor kept it
            assert fresh.train()["dream/calibration_anchor"] == 1.0  # calibrates on it all the same
            assert fresh._policy_anchor["real_return_std"] >= 0  # and the next evaluation records a full anchor
            fresh._policy_anchor = None  # as restored from a checkpoint written before the option existed
            r3 = fresh.train()
            assert r3["real/policy_anchor_measured_episodes"] == config.evaluation_duration
            assert r3["dream/calibration_anchor"] == 1.0
        finally:
            fresh.stop()
    finally:
        algo.stop()


def test_novelty_curiosity_works_without_an_ensemble():
    tiny_config().collection(curiosity=0.5, curiosity_bonus="novelty").validate()
