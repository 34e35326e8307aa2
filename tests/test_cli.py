"""`rllib-worldmodel` end to end on the real TakeCover game, tiny sizes."""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ray.rllib.core.rl_module.rl_module import RLModule

from rllib_worldmodel import cli, WorldModel
from rllib_worldmodel.cli import build_parser, main, save_checkpoint_atomically
from rllib_worldmodel.envs.vizdoom import takecover_view
from rllib_worldmodel.models.world_model import read_checkpoint


def test_fit_refuses_a_closed_loop_share_outside_0_1_before_collecting(tmp_path, capsys):
    assert main(["fit", "--env", "takecover", "--closed-loop", "2", "--out", str(tmp_path / "run")]) == 2
    assert "--closed-loop 2.0: a probability in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run" / "episodes").exists()


def test_fit_refuses_a_closed_loop_horizon_below_1_before_collecting(tmp_path, capsys):
    args = ["fit", "--env", "takecover", "--closed-loop", "0.5", "--closed-loop-horizon", "0"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "--closed-loop-horizon 0: an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run" / "episodes").exists()


def test_fit_refuses_a_negative_done_refit_horizon_before_collecting(tmp_path, capsys):
    assert main(["fit", "--env", "takecover", "--done-refit-horizon", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "--done-refit-horizon -1: an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "run" / "episodes").exists()


def test_fit_refuses_a_fresh_m_without_a_checkpoint_before_collecting(tmp_path, capsys):
    assert main(["fit", "--env", "takecover", "--fresh-m", "--out", str(tmp_path / "run")]) == 2
    assert "--fresh-m keeps the V of --init-from" in capsys.readouterr().err
    assert not (tmp_path / "run" / "episodes").exists()


def test_fit_refuses_a_bad_hold_range_before_collecting(tmp_path, capsys):
    assert main(["fit", "--env", "takecover", "--hold", "10", "1", "--out", str(tmp_path / "run")]) == 2
    assert "--hold 10 1: need 1 <= MIN <= MAX" in capsys.readouterr().err
    assert not (tmp_path / "run" / "episodes").exists()


def test_train_refuses_a_bad_hold_range_before_starting_ray(tmp_path, capsys):
    assert main(["train", "--env", "takecover", "--hold", "0", "5", "--out", str(tmp_path / "run")]) == 2
    assert "random_hold_steps=(0, 5) must be (min, max) integers" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the output folder, and so before Ray, was touched


def test_train_refuses_zero_iterations_and_a_missing_resume_folder(tmp_path, capsys):
    assert main(["train", "--env", "takecover", "--iterations", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--iterations 0: need at least 1" in capsys.readouterr().err
    assert main(["train", "--env", "takecover", "--until-iteration", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--until-iteration 0: need at least 1" in capsys.readouterr().err
    # An interrupted save leaves the previous checkpoint beside the target: the error says to resume from that.
    (tmp_path / "ckpt.previous").mkdir()
    (tmp_path / "ckpt.previous" / "algorithm_state.pkl").write_bytes(b"x")
    assert main(["train", "--env", "takecover", "--resume", str(tmp_path / "ckpt"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "is not an RLlib checkpoint folder" in err and "ckpt.previous" in err
    assert not (tmp_path / "r").exists()


class _FolderWriter:
    """Stands in for an algorithm: `save_to_path` writes files one by one, optionally crashing half-way."""

    def __init__(self, content: str, crash: bool = False):
        self.content, self.crash = content, crash

    def save_to_path(self, path: str) -> str:
        Path(path).mkdir(parents=True)
        (Path(path) / "algorithm_state.pkl").write_text(self.content)
        if self.crash:
            raise OSError("disk full")
        (Path(path) / "learner_group").write_text(self.content)
        return path


def test_train_controller_input_flags_reach_the_dream_and_the_acting_module():
    """--include-prev-action / --include-cell / --no-hidden shape C's input in the dream and in the real-env agent
    alike."""
    from rllib_worldmodel.cli import build_parser, train_config

    args = build_parser().parse_args(["train", "--env", "takecover", "--include-prev-action", "--include-cell"])
    cfg = train_config(args)
    cfg.validate()
    assert cfg.include_prev_action and cfg.include_cell
    assert cfg.model_config["include_prev_action"] and cfg.model_config["include_cell"]
    default = train_config(build_parser().parse_args(["train", "--env", "takecover"]))
    assert not default.include_prev_action and not default.model_config["include_prev_action"]
    assert default.include_hidden and default.model_config["include_hidden"]
    v_only = train_config(build_parser().parse_args(["train", "--env", "takecover", "--no-hidden"]))
    assert not v_only.include_hidden and not v_only.model_config["include_hidden"]


def test_train_fit_budget_flags_reach_the_config():
    """--mdn-epochs / --seq-len set M's fit in the loop as `fit` sets it offline; the defaults are the config's."""
    from rllib_worldmodel.cli import build_parser, train_config
    from rllib_worldmodel.config import WorldModelsConfig

    parse = build_parser().parse_args
    cfg = train_config(parse(["train", "--env", "takecover", "--mdn-epochs", "20", "--seq-len", "500"]))
    cfg.validate()
    assert cfg.mdn_epochs_per_iteration == 20.0 and cfg.mdn_seq_len == 500
    default, plain = train_config(parse(["train", "--env", "takecover"])), WorldModelsConfig()
    for key in ("mdn_epochs_per_iteration", "mdn_seq_len", "replay_capacity", "precision"):
        assert getattr(default, key) == getattr(plain, key), key
    bf16 = train_config(parse(["train", "--env", "takecover", "--precision", "bf16"]))
    bf16.validate()
    assert bf16.precision == "bf16" and bf16.model_config["precision"] == "bf16"  # what every module copy reads
    assert train_config(parse(["train", "--env", "takecover", "--replay-capacity", "800000"])).replay_capacity == 800000
    assert default.mdn_recency_half_life is None
    recent = train_config(parse(["train", "--env", "takecover", "--mdn-recency-half-life", "100000"]))
    recent.validate()
    assert recent.mdn_recency_half_life == 100000


def test_the_planners_terminal_value_flag_reaches_the_config_and_defaults_to_zero():
    from rllib_worldmodel.cli import build_parser, train_config

    parse = build_parser().parse_args
    base = ["train", "--env", "takecover", "--plan-horizon", "12", "--plan-every", "3"]
    cfg = train_config(parse([*base, "--plan-terminal-value", "100"]))
    cfg.validate()
    assert cfg.plan_terminal_value == 100.0 and cfg.model_config["plan_terminal_value"] == 100.0
    assert train_config(parse(base)).plan_terminal_value == 0.0  # the dreamed steps only, as the planner was tuned
    with pytest.raises(ValueError, match="plan_terminal_value=-1.0 must be a finite number >= 0"):
        train_config(parse([*base, "--plan-terminal-value", "-1"])).validate()


def test_frame_skip_reaches_the_real_env_and_the_dream_cap():
    """--frame-skip k: the real env steps k tics at a time, and the dream is capped at the same 60 game seconds."""
    from rllib_worldmodel.cli import build_parser, make_env, train_config

    parse = build_parser().parse_args
    cfg = train_config(parse(["train", "--env", "takecover", "--frame-skip", "4"]))
    cfg.validate()
    assert cfg.env_config["real"]["frame_skip"] == 4 and cfg.dream_max_episode_steps == 525
    capped = train_config(parse(["train", "--env", "takecover", "--frame-skip", "4", "--frame-cap", "1000"]))
    assert capped.dream_max_episode_steps == 250
    default = train_config(parse(["train", "--env", "takecover"]))
    assert "frame_skip" not in default.env_config["real"] and default.dream_max_episode_steps == 2100
    with pytest.raises(ValueError, match="--frame-skip 0"):
        train_config(parse(["train", "--env", "takecover", "--frame-skip", "0"]))
    with pytest.raises(ValueError, match="TakeCover setting"):
        make_env("CartPole-v1", frame_skip=2)


def test_a_world_model_is_played_with_the_frame_skip_it_was_fitted_on():
    metadata = {"env_settings": {"frame_skip": 4, "render_hud": True}}
    assert takecover_view(argparse.Namespace(), metadata) == {"render_hud": True, "frame_skip": 4}
    assert takecover_view(argparse.Namespace(frame_skip=4), metadata)["frame_skip"] == 4
    assert takecover_view(argparse.Namespace(frame_skip=1), {}) == {}  # 1 is the env's default: not passed
    with pytest.raises(ValueError, match="fitted on 4 tics per step"):
        takecover_view(argparse.Namespace(frame_skip=2), metadata)


def test_train_done_logit_scale_is_a_number_or_fit(capsys):
    from rllib_worldmodel.cli import build_parser, train_config

    parse = build_parser().parse_args
    base = ["train", "--env", "takecover", "--done-mode", "sample", "--done-logit-scale"]
    assert train_config(parse([*base, "3"])).done_logit_scale == 3.0
    fitted = train_config(parse([*base, "fit"]))
    fitted.validate()
    assert fitted.done_logit_scale == "fit"
    with pytest.raises(SystemExit):
        parse([*base, "sharp"])
    assert "neither a number nor 'fit'" in capsys.readouterr().err


def test_train_calibrate_deaths_takes_an_optional_anchor(capsys):
    from rllib_worldmodel.cli import build_parser, train_config

    parse = build_parser().parse_args
    base = ["train", "--env", "takecover", "--done-mode", "sample"]
    assert train_config(parse(base)).calibrate_deaths is False
    # alone (also when another option follows) it keeps its old meaning: the random-hold anchor
    alone = train_config(parse([*base, "--calibrate-deaths", "--done-refit-horizon", "25"]))
    assert alone.calibrate_deaths == "behaviour" and alone.done_refit_horizon == 25
    policy = train_config(parse([*base, "--calibrate-deaths", "policy"]))
    policy.validate()
    assert policy.calibrate_deaths == "policy"
    # the main job's script passes the flag alone and extra arguments after it: the last one wins
    assert train_config(parse([*base, "--calibrate-deaths", "--calibrate-deaths", "policy"])).calibrate_deaths == (
        "policy"
    )
    with pytest.raises(SystemExit):
        parse([*base, "--calibrate-deaths", "controller"])
    assert "invalid choice: 'controller'" in capsys.readouterr().err


def test_train_plan_flags_reach_the_config_and_evaluate_keeps_the_checkpoints_agent_unless_given():
    from rllib_worldmodel.cli import build_parser, train_config

    parse = build_parser().parse_args
    base = ["train", "--env", "takecover", "--done-mode", "sample", "--action-repeat", "6"]
    assert train_config(parse(base)).plan_horizon == 0  # off by default: C acts alone
    plan = ["--plan-horizon", "24", "--plan-samples", "8", "--plan-every", "3", "--plan-dream-episodes", "4"]
    cfg = train_config(parse([*base, *plan]))
    cfg.validate()
    assert (cfg.plan_horizon, cfg.plan_samples, cfg.plan_every, cfg.plan_dream_episodes) == (24, 8, 3, 4)
    assert not cfg.plan_collect and train_config(parse([*base, *plan, "--plan-collect"])).plan_collect
    assert cfg.plan_rollouts == "controller"
    fine = ["--plan-collect", "--plan-collect-horizon", "12", "--plan-collect-every", "3"]
    collecting = train_config(parse([*base, *plan, *fine]))
    collecting.validate()
    assert (collecting.plan_collect_horizon, collecting.plan_collect_every) == (12, 3)
    assert (cfg.plan_collect_horizon, cfg.plan_collect_every) == (0, 0)
    assert train_config(parse([*base, *plan, "--plan-rollouts", "parallel"])).plan_rollouts == "parallel"
    assert parse(["evaluate", "--checkpoint", "x"]).plan_horizon is None
    assert parse(["evaluate", "--checkpoint", "x", "--plan-horizon", "24"]).plan_horizon == 24
    distill = ["--distill-states", "500", "--distill-every", "5", "--distill-epochs", "50"]
    cfg = train_config(parse([*base, *plan, *distill]))
    cfg.validate()
    assert (cfg.distill_states, cfg.distill_every, cfg.distill_epochs) == (500, 5, 50)
    assert cfg.distill_deploy == "planner"  # the agent plans on the fitted C unless told to deploy it alone
    assert train_config(parse([*base, *plan, *distill, "--distill-deploy", "alone"])).distill_deploy == "alone"
    assert train_config(parse(base)).distill_states == 0  # off by default
    assert cfg.distill_check_episodes == 0  # the fit is deployed unchecked unless asked
    checked = train_config(parse([*base, *plan, *distill, "--distill-check-episodes", "50"]))
    checked.validate()
    assert checked.distill_settings().check_episodes == 50


def test_real_z_follows_the_m_latents_unless_given_and_a_mismatch_names_the_flag():
    from rllib_worldmodel.cli import build_parser, train_config

    parse = build_parser().parse_args
    base = ["train", "--env", "takecover"]
    assert train_config(parse(base)).real_z == "sample"  # the paper
    assert train_config(parse([*base, "--mdn-latents", "mean"])).real_z == "mean"  # as M was fitted
    assert train_config(parse([*base, "--real-z", "mean"])).real_z == "mean"  # M on draws, the agent on means
    with pytest.raises(ValueError, match="--real-z mean"):
        train_config(parse([*base, "--mdn-latents", "mean", "--real-z", "sample"])).validate()
    assert parse(["evaluate", "--checkpoint", "x"]).real_z is None  # the checkpoint's agent reads as it did
    assert parse(["distill", "--checkpoint", "x", "--out", "y", "--real-z", "mean"]).real_z == "mean"
    # the compute precision: the checkpoint's config's unless given; "auto" is bf16 only where the hardware has it
    assert parse(["evaluate", "--checkpoint", "x"]).precision is None
    assert parse(["distill", "--checkpoint", "x", "--out", "y", "--precision", "auto"]).precision == "auto"
    assert train_config(parse([*base, "--precision", "auto"])).model_config["precision"] == "auto"


def test_a_resumed_run_plans_as_its_flags_say_and_a_c_fitted_to_deploy_alone_acts_alone():
    from rllib_worldmodel.cli import _plan_as_resumed, build_parser

    class Recorder:  # stands in for WorldModels: what set_planning was asked
        def set_planning(self, horizon, **kwargs):
            self.asked = {"horizon": horizon, **kwargs}

    base = ["train", "--env", "takecover", "--resume", "x", "--plan-horizon", "12", "--plan-every", "3"]
    fit = ["--distill-states", "8000"]
    asked = {}
    for name, extra in {
        "planner": fit,
        "alone": [*fit, "--distill-deploy", "alone"],
        "alone, collecting": [*fit, "--distill-deploy", "alone", "--plan-collect"],
        "alone, collecting finer": [*fit, "--distill-deploy", "alone", "--plan-collect", "--plan-collect-every", "1"],
    }.items():
        algo = Recorder()
        _plan_as_resumed(algo, build_parser().parse_args([*base, *extra]))
        asked[name] = algo.asked
    # deployed on the planner: the flags' planner acts
    assert asked["planner"]["horizon"] == 12 and asked["planner"]["every"] == 3 and not asked["planner"]["collect"]
    # the flags name the planner C is fitted to: the agent acts as C alone until (and after) the fit ...
    assert asked["alone"]["horizon"] == 0 and not asked["alone"]["collect"]
    assert (asked["alone"]["collect_horizon"], asked["alone"]["collect_every"]) == (0, 0)
    # ... and a collecting planner, asked for, plans in collection with the flags' look-ahead
    collecting = asked["alone, collecting"]
    assert collecting["horizon"] == 0 and collecting["collect"]
    assert (collecting["collect_horizon"], collecting["collect_every"]) == (12, 3)
    assert (asked["alone, collecting finer"]["collect_horizon"], asked["alone, collecting finer"]["collect_every"]) == (
        12,
        1,
    )


def test_the_score_line_says_when_a_planner_played():
    ev = {"real/episode_return_mean": 950.0, "real/episode_return_std": 560.0, "real/num_episodes": 100}
    alone = {**ev, "real/plan_horizon": 0, "real/decision_every": 25}
    planned = {**ev, "real/plan_horizon": 12, "real/decision_every": 3, "dream/episode_return_mean": 990.0}
    planned["dream_real_gap"] = 40.0
    assert cli._score_line(ev) == cli._score_line(alone) == "real 950.0 ± 560.0 over 100 episodes"
    assert cli._score_line(planned) == (
        "real 950.0 ± 560.0 over 100 episodes (planning 12 ahead every 3) | dream 990.0 | gap +40.0"
    )


def test_train_refuses_distillation_without_planning_before_starting_ray(tmp_path, capsys):
    assert main(["train", "--env", "takecover", "--distill-states", "100", "--out", str(tmp_path / "run")]) == 2
    assert "distill_states=100 fits C to the planner's choices: set plan_horizon > 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_checkpoint_save_replaces_the_old_one_and_a_crash_mid_save_keeps_it(tmp_path):
    target = tmp_path / "checkpoint"
    save_checkpoint_atomically(_FolderWriter("iteration 1"), target)
    save_checkpoint_atomically(_FolderWriter("iteration 2"), target)
    assert (target / "learner_group").read_text() == "iteration 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no .partial / .previous left behind
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint_atomically(_FolderWriter("iteration 3", crash=True), target)
    assert (target / "learner_group").read_text() == "iteration 2"  # the complete older checkpoint is untouched
    save_checkpoint_atomically(_FolderWriter("iteration 3"), target)  # the half-written leftover is cleared
    assert (target / "algorithm_state.pkl").read_text() == "iteration 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_fit_on_takecover_writes_checkpoint_metrics_and_gifs(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "fit",
        "--env",
        "takecover",
        "--episodes",
        "3",
        "--frame-cap",
        "40",
        "--vae-epochs",
        "0.5",
        "--mdn-epochs",
        "2",
        "--z-size",
        "8",
        "--rnn-size",
        "16",
        "--video-steps",
        "12",
        "--render-hud",
        "--closed-loop",
        "0.5",
        "--closed-loop-horizon",
        "5",
        "--mdn-latents",
        "mean",
        "--precision",
        "bf16",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 3 and summary["real_steps"] > 0
    assert (summary["closed_loop"], summary["closed_loop_horizon"], summary["mdn_latents"]) == (0.5, 5, "mean")
    assert summary["precision"] == summary["precision_used"] == "bf16"  # fitted in bfloat16; the weights stay float32
    model = WorldModel.load(summary["checkpoint"])
    assert model.config.obs_shape == (64, 64, 3) and model.config.action_dim == 3
    assert {p.dtype for p in model.parameters()} == {torch.float32} and model.precision == "fp32"  # a runtime setting
    assert model.initial_states.shape[0] == 3
    # every 10th real state is a branch point for dreams started mid-episode
    lengths = [len(np.load(f)["actions"]) for f in sorted((out / "episodes").glob("episode_*.npz"))]
    assert model.branch_states.shape[0] == sum((n + 9) // 10 for n in lengths)
    # The real env's settings travel with the checkpoint, so benchmarks replay the env V was fitted on.
    metadata = read_checkpoint(summary["checkpoint"])["metadata"]
    assert metadata["env_settings"] == {"frame_cap": 40, "render_hud": True}
    assert metadata["mdn_latents"] == "mean"  # so benchmarks read real frames as M was trained (posterior means)
    assert (model.initial_states[:, 1] == -30.0).all()
    assert takecover_view(argparse.Namespace(screen_flashes=True), metadata) == {
        "screen_flashes": True,
        "render_hud": True,
    }
    # HUD on: the status bar fills the bottom rows of every recorded frame
    # (colored digits and face; without it the bottom rows are grey floor, channel spread exactly 0)
    bottom = np.load(sorted((out / "episodes").glob("episode_*.npz"))[0])["obs"][:, -8:].astype(int)
    assert np.abs(np.diff(bottom, axis=-1)).mean(axis=(1, 2, 3)).min() > 4.0
    gif = Image.open(summary["comparison_gif"])
    assert gif.n_frames == 13  # the first frame plus 12 steps
    assert np.asarray(gif.convert("RGB")).std() > 1.0
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 3
    assert len(list((out / "episodes").glob("episode_*.npz"))) == 3
    # Re-running with more episodes reuses the stored ones and collects only the difference.
    assert main(args[:4] + ["4"] + args[5:]) == 0
    assert json.loads((out / "summary.json").read_text())["episodes"] == 4
    assert len(list((out / "episodes").glob("episode_*.npz"))) == 4
    # ... but never mixes in episodes recorded under other settings (here: without the HUD)
    capsys.readouterr()
    assert main([a for a in args if a != "--render-hud"]) == 2
    assert "recorded with" in capsys.readouterr().err
    # Fine-tuning: --init-from keeps the checkpoint's architecture; --vae-epochs 0 trains M only.
    base = WorldModel.load(out / "world_model.pt")
    tune = ["fit", "--env", "takecover", "--frame-cap", "40", "--render-hud", "--data-dir", str(out / "episodes")]
    tune += ["--episodes", "4", "--init-from", str(out / "world_model.pt"), "--vae-epochs", "0", "--mdn-epochs", "1"]
    tune += ["--closed-loop", "0.5", "--video-steps", "4", "--out", str(tmp_path / "tuned")]
    assert main(tune) == 0
    tuned = WorldModel.load(tmp_path / "tuned" / "world_model.pt")
    assert tuned.config == base.config
    for k, v in base.vae.state_dict().items():
        torch.testing.assert_close(tuned.vae.state_dict()[k], v)
    assert not torch.equal(tuned.mdn_rnn.mdn_head.weight, base.mdn_rnn.mdn_head.weight)
    assert json.loads((tmp_path / "tuned" / "summary.json").read_text())["vae_first"] is None
    # Only the done refit (V and M kept): 40-step episodes end by the frame cap, so there is no death to learn
    # from and the head stays as it was; the summary says so
    refit = [a for a in tune if a not in ("--closed-loop", "0.5")]
    refit[refit.index("--mdn-epochs") + 1] = "0"
    refit[-1] = str(tmp_path / "refit")
    assert main([*refit, "--done-refit-horizon", "10"]) == 0
    summary = json.loads((tmp_path / "refit" / "summary.json").read_text())
    assert summary["mdn_first"] is None and summary["done_refit_horizon"] == 10
    assert summary["done_refit"]["world_model/done_refit_skipped"] == 1.0
    kept = WorldModel.load(tmp_path / "refit" / "world_model.pt")
    for k, v in base.state_dict().items():
        torch.testing.assert_close(kept.state_dict()[k], v)
    # --fresh-m: the checkpoint's V, an M started afresh (here left at its new weights: --mdn-epochs 0)
    assert main([*refit[:-1], str(tmp_path / "fresh"), "--fresh-m", "--seed", "3"]) == 0
    fresh = WorldModel.load(tmp_path / "fresh" / "world_model.pt")
    for k, v in base.vae.state_dict().items():
        torch.testing.assert_close(fresh.vae.state_dict()[k], v)
    assert not torch.equal(fresh.mdn_rnn.lstm.weight_hh_l0, base.mdn_rnn.lstm.weight_hh_l0)
    assert json.loads((tmp_path / "fresh" / "summary.json").read_text())["fresh_m"] is True
    capsys.readouterr()
    assert main(tune + ["--z-size", "4"]) == 2
    assert "--z-size 4 but the checkpoint has 8" in capsys.readouterr().err

    dream_gif = tmp_path / "d.gif"
    assert main(["dream", "--checkpoint", summary["checkpoint"], "--out", str(dream_gif), "--steps", "5"]) == 0
    assert Image.open(dream_gif).n_frames == 6


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    assert main(["dream", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["dream", "--checkpoint", "x.pt", "--temperature", "0"]) == 2


def test_train_then_evaluate_on_real_takecover(tmp_path, capsys):
    out = tmp_path / "train"
    args = [
        "train",
        "--env",
        "takecover",
        "--frame-cap",
        "30",
        "--iterations",
        "2",
        "--until-gap",
        "1e9",  # any gap counts as closed: stops after the first iteration
        "--screen-flashes",
        "--render-hud",
        "--num-heads",
        "2",
        "--pessimism",
        "1.0",
        "--done-mode",
        "expected",
        "--calibrate-deaths",
        "--closed-loop",
        "0.5",
        "--dream-start",
        "branch",
        "--branch-horizon",
        "5",
        "--branch-focus",
        "0.5",
        "--hold",
        "1",
        "100",
        "--episodes-per-iteration",
        "3",
        "--eval-episodes",
        "2",
        "--cma-generations",
        "1",
        "--z-size",
        "4",
        "--rnn-size",
        "8",
        "--num-envs-per-env-runner",
        "1",
        "--num-cpus",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[iteration 1] real 30.0 ± 0.0 over 2 episodes" in printed  # 30-step cap: nobody dies that fast
    assert "gap closed" in printed and "[iteration 2]" not in printed
    assert (out / "checkpoint" / "algorithm_state.pkl").exists() and (out / "world_model.pt").exists()
    assert not (out / "checkpoint.partial").exists() and not (out / "checkpoint.previous").exists()
    assert Image.open(out / "real_vs_dream.gif").n_frames > 1
    row = json.loads((out / "progress.jsonl").read_text().splitlines()[-1])
    # every iteration's agent is kept (the whole checkpoint holds only the last): the same module, loadable alone
    kept = sorted(p.name for p in (out / "agents").iterdir())
    assert kept == [f"iteration_{i:03d}" for i in range(1, row["iteration"] + 1)]
    assert (out / "agents" / kept[-1] / "world_model.pt").exists()
    last_agent = RLModule.from_checkpoint(str(out / "agents" / kept[-1] / "agent"))
    learner_module = RLModule.from_checkpoint(
        str(out / "checkpoint" / "learner_group" / "learner" / "rl_module" / "default_policy")
    )
    assert last_agent.state_dict().keys() == learner_module.state_dict().keys()
    for name, value in learner_module.state_dict().items():
        torch.testing.assert_close(last_agent.state_dict()[name], value)
    assert row["real/num_episodes"] == 2
    # the training phases' own numbers travel beside the evaluation's, under "training"
    training = row["training"]
    assert training["world_model/mdn_updates"] > 0 and training["real/num_env_steps_collected_lifetime"] == 90
    # real steps as printed: every step the env took, those of the last sampling call past the third episode too
    assert row["real_env_steps"] == training["real/num_env_steps_sampled_lifetime"] >= 90
    assert np.isfinite(training["dream/episode_return_mean"]) and training["timers/fit_world_model_s"] > 0
    # an earlier iteration's kept agent, played on the run's checkpoint (its env settings, evaluation EnvRunners)
    first = str(out / "agents" / "iteration_001")
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "checkpoint"),
                "--agent",
                first,
                "--episodes",
                "3",
                "--num-cpus",
                "2",
            ]
        )
        == 0
    )
    assert "over 3 episodes" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint"), "--agent", str(out), "--num-cpus", "2"]) == 2
    assert "not a kept agent's folder" in capsys.readouterr().err

    # Run again after a crash between iteration 2's row and its checkpoint: the same command with --resume from the
    # run's own checkpoint and --until-iteration runs only what is left, and the orphaned row is moved aside.
    orphan = {**row, "iteration": 2}
    with (out / "progress.jsonl").open("a") as f:
        f.write(json.dumps(orphan) + "\n")
    gap = args.index("--until-gap")
    again = [*args[:gap], *args[gap + 2 :], "--iterations", "5", "--resume", str(out / "checkpoint")]
    assert main([*again, "--until-iteration", "1"]) == 0
    assert "at iteration 1 already (--until-iteration 1)" in capsys.readouterr().out
    assert [json.loads(line)["iteration"] for line in (out / "progress.jsonl").read_text().splitlines()] == [1]
    assert json.loads((out / "progress.superseded.jsonl").read_text()) == json.loads(json.dumps(orphan))
    assert main([*again, "--until-iteration", "2"]) == 0  # 5 iterations allowed, one left to iteration 2
    printed = capsys.readouterr().out
    assert "[iteration 2]" in printed and "[iteration 3]" not in printed
    assert [json.loads(line)["iteration"] for line in (out / "progress.jsonl").read_text().splitlines()] == [1, 2]
    # the same checkpoint's agent, planning each decision in its dream
    plan = ["--plan-horizon", "4", "--plan-samples", "2", "--plan-dream-episodes", "2"]
    # the same checkpoint's agent, planning each decision in its dream and reading real frames as V's means, its V
    # and M computing in bfloat16 (the run trained at fp32)
    means = ["--real-z", "mean"]
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "checkpoint"),
                "--episodes",
                "3",
                "--num-cpus",
                "2",
                *plan,
                *means,
                "--precision",
                "bf16",
            ]
        )
        == 0
    )
    assert "real 30.0 ± 0.0 over 3 episodes" in capsys.readouterr().out
    # resumed with planning flags its checkpoint's agent did not have: this run's flags decide how the agent acts
    # (restoring alone would bring back the checkpoint's planning buffers, horizon 0)
    resumed = tmp_path / "resumed"
    again = [
        *args[: args.index("--out")],
        "--resume",
        str(out / "checkpoint"),
        *plan,
        "--plan-collect",
        "--real-z",
        "mean",
    ]
    assert main([*again, "--out", str(resumed)]) == 0
    assert "[iteration 3] real 30.0 ± 0.0 over 2 episodes" in capsys.readouterr().out  # out's checkpoint is at 2
    module = RLModule.from_checkpoint(
        str(resumed / "checkpoint" / "learner_group" / "learner" / "rl_module" / "default_policy")
    )
    assert (float(module.plan_horizon), float(module.plan_samples), float(module.plan_collect)) == (4, 2, 1)
    assert module.real_z == "mean"  # the flag, over the checkpoint's "sample"
    # C fitted to the planner's choices on a restored agent, written as a new agent beside it (no new real steps)
    distilled = tmp_path / "distilled"
    source = ["--checkpoint", str(out / "checkpoint"), "--num-cpus", "2"]
    assert main(["distill", *source, "--out", str(tmp_path / "nope")]) == 2  # that agent does not plan
    assert "--plan-horizon" in capsys.readouterr().err
    assert main(["distill", *source, "--out", str(distilled), "--states", "0"]) == 2
    assert "--states 0" in capsys.readouterr().err
    assert main(["distill", *source, "--out", str(distilled), "--states", "40", *plan, "--eval-episodes", "2"]) == 0
    printed = capsys.readouterr().out
    assert "C fitted to the planner's choices at" in printed and "real 30.0 ± 0.0 over 2 episodes" in printed
    assert "the planner's labels, drawn twice, agree on" in printed  # the ceiling of the agreement it printed
    assert (distilled / "checkpoint" / "algorithm_state.pkl").exists() and (distilled / "world_model.pt").exists()
    policy = Path("learner_group", "learner", "rl_module", "default_policy")
    fitted = RLModule.from_checkpoint(str(distilled / "checkpoint" / policy))
    before = RLModule.from_checkpoint(str(out / "checkpoint" / policy))
    assert float(fitted.plan_horizon) == 4  # it deploys the planner it learned from, and the fitted C ...
    assert int(fitted.controller_every) == fitted.plan_settings().interval(fitted.action_repeat)  # ... at its interval
    assert int(before.controller_every) == 0  # a C searched by CMA-ES: its action_repeat
    assert not torch.equal(fitted.controller.net.weight, before.controller.net.weight)
    # ... or the fitted C alone: the written agent does not plan, and its C decides at the planner's interval
    alone = tmp_path / "alone"
    # (checked in the real game first: this env scores every C alike, and a tie keeps the fit)
    check = ["--distill-deploy", "alone", "--distill-check-episodes", "2"]
    assert main(["distill", *source, "--out", str(alone), "--states", "40", *plan, *check]) == 0
    checked = (
        "checked in the real game over 2 episodes each: fitted C 30.0, searched C 30.0 -> the fitted C is deployed"
    )
    assert checked in capsys.readouterr().out
    fitted_alone = RLModule.from_checkpoint(str(alone / "checkpoint" / policy))
    assert float(fitted_alone.plan_horizon) == 0 and int(fitted_alone.controller_every) == int(fitted.controller_every)


def test_the_help_lists_every_command_it_has():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    listed = re.findall(r"^  (\w+) ", cli.__doc__.split("Commands:")[1], re.MULTILINE)  # two spaces in: a command
    assert sorted(listed) == sorted(commands)
