"""The tuned examples build and run (tiny budgets): stock PPO in the dream evaluated on the real game."""

import sys
from pathlib import Path

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


def test_the_chain_script_legs_are_valid_configs_each_resuming_the_last():
    """scripts/run_chain.sh: every leg's flags on top of the main job's command build a valid config with the leg's
    decision interval and death anchor, each leg resumes from the one before, and the distill step parses."""
    import re
    import shlex

    from rllib_worldmodel import cli
    from rllib_worldmodel.config import WorldModelsConfig

    base = _main_job_args()
    chain = (SCRIPTS / "run_chain.sh").read_text().replace("\\\n", " ")
    for name, words in re.findall(r"^([A-Z]+)=\((.*)\)$", chain, re.M):  # the script's flag arrays, expanded
        chain = chain.replace(f'"${{{name}[@]}}"', words)
    chain = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", chain)  # environment overrides (REPLAY_CAPACITY) at their defaults

    def args(line: str) -> list[str]:
        words = shlex.split(line.replace("$OUT", "OUT"))
        runs_main = [i for i, w in enumerate(words) if w.endswith("run_main.sh")]
        return words[runs_main[0] + 1 :] if runs_main else words

    legs = [args(line) for line in chain.splitlines() if line.strip().startswith("bash scripts/run_main.sh")]
    parser = cli.build_parser()
    parsed = [parser.parse_args(base + leg) for leg in legs]
    for a in parsed:
        cli.train_config(a).validate()
    assert [(a.iterations, a.action_repeat, a.calibrate_deaths, a.plan_horizon, a.plan_collect) for a in parsed] == [
        (8, 12, "behaviour", 0, False),
        (3, 12, "policy", 0, False),
        (3, 6, "policy", 0, False),
        (2, 6, "behaviour", 12, True),
    ]
    # every leg keeps the product's default replay (400,000 steps; REPLAY_CAPACITY=200000 runs the original chain)
    assert {a.replay_capacity for a in parsed} == {WorldModelsConfig().replay_capacity} == {400_000}
    assert parsed[0].resume is None
    assert [a.resume for a in parsed[1:]] == [f"{a.out}/checkpoint" for a in parsed[:-1]]
    distill = args(chain[chain.index("rllib_worldmodel.cli distill") :].splitlines()[0])[1:]
    d = parser.parse_args(distill)
    assert d.func is cli.cmd_distill and d.checkpoint == f"{parsed[-1].out}/checkpoint" and d.states == 16000
