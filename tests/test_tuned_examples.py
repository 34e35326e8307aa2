"""The tuned examples build and run (tiny budgets): stock PPO in the dream evaluated on the real game."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuned_examples"))
from tiny import tiny_config  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _main_job_args() -> list[str]:
    """`train` and its arguments as scripts/run_main.sh passes them to `rllib-worldmodel` (without "$@")."""
    main_job = (SCRIPTS / "run_main.sh").read_text()
    command = main_job[main_job.index("rllib_worldmodel.cli train") :].split('"$@"')[0]
    return command.replace("\\\n", " ").split()[1:]


def test_dream_ppo_trains_in_pixels_dream_and_evaluates_on_real_takecover(ray_session, image_checkpoint):
    from dream_ppo import dream_ppo_config

    config = dream_ppo_config(str(image_checkpoint), eval_episodes=2, real={"frame_cap": 25})
    config.env_runners(num_envs_per_env_runner=4).training(
        train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1
    )
    algo = config.build_algo()
    try:
        r = algo.train()
    finally:
        algo.stop()
    assert r["env_runners"]["num_env_steps_sampled_lifetime"] >= 128  # dream steps, for this stock PPO
    ev = r["evaluation"]["env_runners"]
    assert ev["num_episodes"] >= 2 and ev["episode_len_max"] <= 25  # the real game's frame cap


def test_takecover_and_car_racing_configs_validate():
    from car_racing import car_racing_config
    from vizdoom_takecover import takecover_config

    takecover_config().validate()
    car_racing_config().validate()


def test_tune_search_selects_on_the_real_score(ray_session, tmp_path):
    """Two trials (two temperatures) under ASHA; the winner is the trial with the best REAL evaluation return."""
    from ray import tune

    from rllib_worldmodel.examples import REAL_RETURN
    from rllib_worldmodel.tuning import run_search, summarize

    config = tiny_config().dream(temperature=tune.grid_search([0.8, 1.3]))
    results, best = run_search(config, num_samples=1, max_iterations=2, storage_path=str(tmp_path), verbose=0)
    assert len(results) == 2 and not results.errors
    rows = summarize(results, ("temperature",))
    assert {row["temperature"] for row in rows} == {0.8, 1.3}
    reals = [r.metrics["evaluation"]["real/episode_return_mean"] for r in results]
    assert best.metrics["evaluation"]["real/episode_return_mean"] == max(reals)
    assert rows[0]["real_mean"] == max(reals)  # summary sorted by the real score
    assert REAL_RETURN == "evaluation/real/episode_return_mean"


def test_tune_takecover_search_space_builds_a_valid_config():
    from tune_takecover import search_space

    config = search_space(tiny_config(takecover=True))
    assert config.num_heads == 5
    resolved = config.copy(copy_frozen=False)
    resolved.temperature, resolved.pessimism, resolved.curiosity = 1.15, 1.0, 0.5  # one sample of the space
    resolved.validate()


def test_takecover_levers_preset_is_valid():
    from vizdoom_takecover import takecover_levers_config

    config = takecover_levers_config(eval_episodes=5, screen_flashes=True)
    config.validate()
    assert config.env_config["real"]["screen_flashes"] is True and config.num_heads == 5


def test_takecover_refit_repeat_preset_is_valid():
    """The best configuration at one tic a step (the main job until 2026-12-02)."""
    from vizdoom_takecover import takecover_refit_repeat_config

    preset = takecover_refit_repeat_config()
    preset.validate()
    assert preset.action_repeat == 50 and "frame_skip" not in preset.env_config["real"]


def test_takecover_skip4_preset_matches_the_main_job():
    """The preset and the command of scripts/run_main.sh (which its docstring quotes) are the same configuration."""
    from vizdoom_takecover import takecover_skip4_config

    from rllib_worldmodel import cli

    preset = takecover_skip4_config()
    preset.validate()
    cfg = cli.train_config(cli.build_parser().parse_args(_main_job_args()))
    cfg.validate()
    for key in (
        "random_hold_steps",
        "num_heads",
        "done_bias_init",
        "vae_warmup_epochs",
        "done_mode",
        "calibrate_deaths",
        "done_refit_horizon",
        "action_repeat",
        "plan_horizon",
        "plan_every",
        "distill_states",
        "distill_deploy",
        "distill_check_episodes",
        "cma_population",
        "cma_rollouts",
        "cma_generations_per_iteration",
        "temperature",
        "real_episodes_per_iteration",
        "mdn_epochs_per_iteration",
        "mdn_seq_len",
        "vae_epochs_per_iteration",
        "dream_max_episode_steps",
    ):
        assert getattr(cfg, key) == getattr(preset, key), key
    from rllib_worldmodel.envs.vizdoom import DEFAULT_SKILL, FRAME_CAP

    # the command leaves skill and frame cap at make_takecover's defaults; the preset names them
    assert {"skill": DEFAULT_SKILL, "frame_cap": FRAME_CAP, **cfg.env_config["real"]} == preset.env_config["real"]


def _chain_dry_run(out: Path, *args: str, **env: str):
    """scripts/run_chain.sh into `out` with CHAIN_DRY_RUN set and `env` added: the finished process, not checked."""
    import os
    import subprocess

    return subprocess.run(
        ["bash", str(SCRIPTS / "run_chain.sh"), str(out), *args],
        env={**os.environ, **env, "CHAIN_DRY_RUN": "1"},
        capture_output=True,
        text=True,
    )


def _chain_commands(out: Path, *args: str, **env: str) -> list[list[str]]:
    """The commands scripts/run_chain.sh would run into `out` as things stand there (its CHAIN_DRY_RUN), as argument
    lists for `rllib-worldmodel` (run_main.sh's command line prepended, as that script passes it), and its notes."""
    import shlex

    done = _chain_dry_run(out, *args, **env)
    done.check_returncode()
    printed = done.stdout.splitlines()
    commands = []
    for line in printed:
        words = shlex.split(line)
        if words[:2] == ["bash", "scripts/run_main.sh"]:
            commands.append(_main_job_args() + words[2:])
        elif "rllib_worldmodel.cli" in words:
            commands.append(words[words.index("rllib_worldmodel.cli") + 1 :])
        else:
            commands.append(line)  # a note: "leg N: finished earlier ..."
    return commands


def test_the_chain_script_legs_are_valid_configs_each_resuming_the_last(tmp_path):
    """scripts/run_chain.sh from scratch: every leg's flags on top of the main job's command build a valid config
    with the leg's decision interval and death anchor, each leg resumes from the one before and runs up to its
    iteration of the chain, and the distill step parses."""
    from rllib_worldmodel import cli
    from rllib_worldmodel.config import WorldModelsConfig

    out = tmp_path / "my chain"  # a space in the path survives the script's quoting
    *legs, distill = _chain_commands(out)
    parser = cli.build_parser()
    parsed = [parser.parse_args(leg) for leg in legs]
    for a in parsed:
        cli.train_config(a).validate()
    assert [(a.iterations, a.action_repeat, a.calibrate_deaths, a.plan_horizon, a.plan_collect) for a in parsed] == [
        (8, 12, "behaviour", 0, False),
        (3, 12, "policy", 0, False),
        (3, 6, "policy", 0, False),
        (2, 6, "behaviour", 12, True),
    ]
    assert [a.until_iteration for a in parsed] == [8, 11, 14, 16]  # the legs' iterations, summed
    assert [a.out for a in parsed] == [str(out / f"leg{n}") for n in (1, 2, 3, 4)]
    # every leg keeps the product's default replay (400,000 steps; REPLAY_CAPACITY=200000 runs the original chain)
    assert {a.replay_capacity for a in parsed} == {WorldModelsConfig().replay_capacity} == {400_000}
    assert {parser.parse_args(leg).replay_capacity for leg in _chain_commands(out, REPLAY_CAPACITY="200000")[:-1]} == {
        200_000
    }
    assert parsed[0].resume is None
    assert [a.resume for a in parsed[1:]] == [f"{a.out}/checkpoint" for a in parsed[:-1]]
    # float32 unless PRECISION says otherwise, then in every training leg (distill plays the checkpoint's)
    assert {a.precision for a in parsed} == {"fp32"}
    bf16 = [parser.parse_args(leg) for leg in _chain_commands(tmp_path / "bf16", PRECISION="bf16")[:-1]]
    assert {a.precision for a in bf16} == {"bf16"} and len(bf16) == 4
    d = parser.parse_args(distill)
    assert d.func is cli.cmd_distill and d.checkpoint == f"{parsed[-1].out}/checkpoint" and d.states == 16000
    # CHAIN_FLAGS: a variant chain, its flags on every training leg after the leg's own (so they win); distill as is
    *variant, variant_distill = _chain_commands(tmp_path / "variant", CHAIN_FLAGS="--seed 7 --include-cell")
    variant = [parser.parse_args(leg) for leg in variant]
    assert [(a.seed, a.include_cell) for a in variant] == [(7, True)] * 4 and {a.seed for a in parsed} == {0}
    assert [a.action_repeat for a in variant] == [a.action_repeat for a in parsed]
    assert variant_distill == _chain_commands(tmp_path / "variant")[-1]
    overridden = _chain_commands(tmp_path / "variant", CHAIN_FLAGS="--action-repeat 25")[:-1]
    assert {parser.parse_args(leg).action_repeat for leg in overridden} == {25}


@pytest.mark.parametrize(
    "var, file, started, same, other, read",
    [
        ("REPLAY_CAPACITY", "replay_capacity", "600000", "600000", "400000", lambda a: a.replay_capacity == 600_000),
        ("CHAIN_FLAGS", "chain_flags", "--seed 7", " --seed   7", "--seed 8", lambda a: a.seed == 7),
        ("CHAIN_FLAGS", "chain_flags", "", "", "--seed 8", lambda a: a.seed == 0),  # started with none
    ],
)
def test_the_chain_keeps_the_settings_it_was_started_with(tmp_path, var, file, started, same, other, read):
    """A chain run again uses the replay capacity and the train flags kept in its folder and refuses others (a
    resumed leg with a smaller capacity would drop collected episodes, one with other flags would go on silently as
    another recipe); a dry run writes nothing."""
    from rllib_worldmodel import cli

    _chain_commands(tmp_path, **{var: other})
    assert not (tmp_path / file).exists()  # CHAIN_DRY_RUN: no side effects
    (tmp_path / file).write_text(started + "\n")  # as a real first run leaves it
    *legs, _ = _chain_commands(tmp_path)
    assert all(read(cli.build_parser().parse_args(leg)) for leg in legs) and len(legs) == 4
    assert _chain_commands(tmp_path, **{var: same}) == [*legs, _]  # the same one (spacing aside) is fine
    refused = _chain_dry_run(tmp_path, **{var: other})
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"{var}={other}" in refused.stderr and f"started with {started or 'none'} ({tmp_path / file})" in (
        refused.stderr
    )


def _fake_checkpoint(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "algorithm_state.pkl").write_bytes(b"x")


def test_the_chain_script_run_again_goes_on_from_where_it_stopped(tmp_path):
    """A chain stopped in leg 2 (leg 1 finished, leg 2's last save interrupted): the same command skips leg 1,
    resumes leg 2 from its own complete checkpoint, and the later legs from leg 2's as it will save it."""
    from rllib_worldmodel import cli

    _fake_checkpoint(tmp_path / "leg1" / "checkpoint")
    (tmp_path / "leg1" / "world_model.pt").write_bytes(b"x")  # written once a leg's iterations are all done
    _fake_checkpoint(tmp_path / "leg2" / "checkpoint.previous")  # a save cut off after moving the old one aside
    note, *legs, distill = _chain_commands(tmp_path)
    assert note == f"leg 1: finished earlier ({tmp_path / 'leg1'}), skipped"
    parsed = [cli.build_parser().parse_args(leg) for leg in legs]
    assert [(a.out, a.resume, a.until_iteration) for a in parsed] == [
        (str(tmp_path / "leg2"), str(tmp_path / "leg2" / "checkpoint.previous"), 11),
        (str(tmp_path / "leg3"), str(tmp_path / "leg2" / "checkpoint"), 14),
        (str(tmp_path / "leg4"), str(tmp_path / "leg3" / "checkpoint"), 16),
    ]
    # FIRST_LEG 4 starts at leg 4 from leg 3's checkpoint as found; a finished distilled agent is not redone
    (tmp_path / "distilled").mkdir()
    (tmp_path / "distilled" / "world_model.pt").write_bytes(b"x")
    leg4, note = _chain_commands(tmp_path, "4")
    assert cli.build_parser().parse_args(leg4).resume == str(tmp_path / "leg3" / "checkpoint")
    assert note == f"leg 5: finished earlier ({tmp_path / 'distilled'}), skipped"


def test_the_chain_script_stops_after_last_leg_and_refuses_a_bad_leg(tmp_path):
    """LAST_LEG (the third argument) leaves the later legs out, so a chain can stop at iteration 16's planning agent
    without the distill step and go on later; a leg outside 1-5, or FIRST_LEG after LAST_LEG, is refused up front
    with the argument named and nothing run."""
    from rllib_worldmodel import cli

    parser = cli.build_parser()
    legs = _chain_commands(tmp_path, "1", "4")  # no distill
    assert [parser.parse_args(leg).until_iteration for leg in legs] == [8, 11, 14, 16]
    assert all(parser.parse_args(leg).func is cli.cmd_train for leg in legs)
    middle = [parser.parse_args(leg) for leg in _chain_commands(tmp_path, "2", "3")]
    assert [(a.out, a.resume) for a in middle] == [
        (str(tmp_path / "leg2"), str(tmp_path / "leg1" / "checkpoint")),
        (str(tmp_path / "leg3"), str(tmp_path / "leg2" / "checkpoint")),
    ]
    # a later LAST_LEG after a stop at 4: the finished legs are skipped and only distill runs
    for n in (1, 2, 3, 4):
        _fake_checkpoint(tmp_path / f"leg{n}" / "checkpoint")
        (tmp_path / f"leg{n}" / "world_model.pt").write_bytes(b"x")
    *notes, distill = _chain_commands(tmp_path, "1", "5")
    assert notes == [f"leg {n}: finished earlier ({tmp_path / f'leg{n}'}), skipped" for n in (1, 2, 3, 4)]
    assert parser.parse_args(distill).func is cli.cmd_distill
    for args, named in (
        (("0",), "FIRST_LEG=0"),
        (("1", "6"), "LAST_LEG=6"),
        (("1", "four"), "LAST_LEG=four"),
        (("4", "2"), "FIRST_LEG=4 is after LAST_LEG=2"),
    ):
        refused = _chain_dry_run(tmp_path / "bad", *args)
        assert refused.returncode == 2 and refused.stdout == "" and named in refused.stderr, (args, refused.stderr)
