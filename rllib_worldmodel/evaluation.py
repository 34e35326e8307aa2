"""Evaluation on the REAL env, reported beside the same controller's dream score.

Installed as the `custom_evaluation_function` of every WorldModelsConfig, so RLlib's own evaluation machinery
(evaluation EnvRunners, `evaluation_interval`, parallel evaluation, weight sync before evaluating) drives it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TYPE_CHECKING

import numpy as np
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EVALUATION_RESULTS
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

if TYPE_CHECKING:
    from ray.rllib.env.env_runner_group import EnvRunnerGroup


def sample_episodes(group: EnvRunnerGroup, num_episodes: int, explore: bool) -> tuple[list, int, list[dict]]:
    """At least `num_episodes` whole real episodes from an EnvRunnerGroup (split over its remote EnvRunners, or on the
    local one when it has none): on each, the first to START, each played to its end (`first_started_episodes`, not
    RLlib's `sample(num_episodes=N)`, which keeps the first to finish: the short ones); the env steps that took in
    all (theirs and those of the episodes stepped alongside and dropped); and each EnvRunner's metrics of that
    sampling (RLlib's `env_runners/...` stats)."""
    results = _on_runners(group, num_episodes, lambda er, n: first_started_episodes(er, n, explore))
    return (
        [ep for (eps, _), _ in results for ep in eps],
        sum(steps for (_, steps), _ in results),
        [m for _, m in results],
    )


def _on_runners(group: EnvRunnerGroup, num_episodes: int, play: Callable[[Any, int], Any]) -> list[tuple[Any, dict]]:
    """`play(env_runner, n)` and the runner's metrics after it, on each remote EnvRunner with an equal share n of
    `num_episodes` (rounded up), or on the local one with all of them when the group has no remote ones."""
    if group.num_remote_env_runners() > 0:
        per = math.ceil(num_episodes / group.num_remote_env_runners())
        return group.foreach_env_runner(lambda er: (play(er, per), er.get_metrics()), local_env_runner=False)
    er = group.local_env_runner
    return [(play(er, num_episodes), er.get_metrics())]


def _play_first_started(
    env_runner, num_episodes: int, explore: bool, chunk: int, take: Callable[[int, Any], None]
) -> int:
    """Play the first `num_episodes` episodes to START on this EnvRunner, each to its end, handing every chunk of
    them to `take(i, chunk)` (i: the episode's place in start order; chunks arrive in time order). Returns the env
    steps sampled in all.

    `EnvRunner.sample(num_episodes=N)` over E vector envs stops at the N-th episode to FINISH and drops the E - 1
    still running, the longest ones: evaluated returns read low (TakeCover, 8 envs, 100 episodes: about 25 frames
    of ~950, simulated on measured returns) and collected data under-represents long episodes. Here the envs are
    stepped in `chunk` x E timestep calls (the first resets them), which carry episodes over from call to call,
    until every selected episode has ended. Selection never looks at an episode's own length: the episodes that
    start within one call are taken in the order of their random ids. Episodes that start after the selection is
    full are stepped alongside (the vector envs step together) and dropped unseen; their steps are counted.
    """
    place: dict[str, int] = {}
    ended, first, steps = 0, True, 0
    while len(place) < num_episodes or ended < len(place):
        chunks = env_runner.sample(num_timesteps=chunk * env_runner.num_envs, explore=explore, force_reset=first)
        first = False
        steps += sum(len(ep) for ep in chunks)
        new = sorted({ep.id_ for ep in chunks if ep.t_started == 0 and ep.id_ not in place})
        for i in new[: num_episodes - len(place)]:
            place[i] = len(place)
        for ep in chunks:
            if ep.id_ in place:
                take(place[ep.id_], ep)
                ended += bool(ep.is_done)
    return steps


def first_started_episodes(env_runner, num_episodes: int, explore: bool = False, chunk: int = 8) -> tuple[list, int]:
    """The first `num_episodes` episodes to START on this EnvRunner, each played to its end, as whole episodes
    (`_play_first_started`: no bias toward short episodes); what collection keeps.

    Args:
        env_runner: A SingleAgentEnvRunner (local, or inside `foreach_env_runner` on a remote one).
        num_episodes: Episodes to play.
        explore: Act with exploration (collection: True; evaluation: False).
        chunk: Vector steps per `sample` call (the last call can overrun the last selected episode's end by up
            to chunk - 1 steps of every env: small keeps that waste small, large saves calls).

    Returns:
        The episodes (SingleAgentEpisode), in the order they started, each terminated or truncated; and the env
        steps sampled in all (theirs plus those of the episodes stepped alongside and dropped).
    """
    parts: list[list] = [[] for _ in range(num_episodes)]
    steps = _play_first_started(env_runner, num_episodes, explore, chunk, lambda i, ep: parts[i].append(ep))
    whole = []
    for episode, *rest in parts:
        for part in rest:  # each chunk continues where the last one stopped
            episode.concat_episode(part)
        whole.append(episode)
    return whole, steps


def played_to_the_end(env_runner, num_episodes: int, explore: bool = False, chunk: int = 8) -> np.ndarray:
    """(lengths, returns) as a (2, num_episodes) array of the same episodes `first_started_episodes` plays, summed
    chunk by chunk: what evaluation needs, without holding (or shipping back from a remote EnvRunner) their frames."""
    played = np.zeros((2, num_episodes))

    def take(i: int, ep) -> None:
        played[0, i] += len(ep)
        played[1, i] += float(ep.get_return())

    _play_first_started(env_runner, num_episodes, explore, chunk, take)
    return played


def evaluation_episodes(group: EnvRunnerGroup, num_episodes: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Lengths and returns of `num_episodes` real episodes played without exploration, each to its end
    (`played_to_the_end`: no bias toward short episodes), split over the group's remote EnvRunners (or played on
    its local one), and the EnvRunners' metrics of that sampling."""
    results = _on_runners(group, num_episodes, played_to_the_end)
    played = np.concatenate([r for r, _ in results], axis=1)
    return played[0], played[1], [m for _, m in results]


def evaluate_real_and_dream(
    algo, eval_group, num_episodes: int | None = None, react: bool = True
) -> tuple[dict[str, Any], int, int]:
    """RLlib custom evaluation: N real episodes on the evaluation EnvRunners (no exploration) plus the dream score.

    Returns `real/episode_return_{mean,std,min,max}`, `real/num_episodes`, which agent played them
    (`real/plan_horizon`: the planner's look-ahead, 0 for C alone; `real/decision_every`: its decision interval in
    steps), `dream/episode_return_{...}` (the same agent in the dream) and `dream_real_gap` (dream mean - real
    mean), under `evaluation/` in the results; RLlib's own EnvRunner stats of the same episodes go to
    `evaluation/env_runners/...` (their `episode_return_mean` is smoothed over RLlib's
    `metrics_num_episodes_for_smoothing` last episodes, which can span evaluations; `evaluation/real/...` is this
    evaluation's alone).
    With `react` the algorithm's exploit guard sees the gap and its reaction is reported under `guard/...`.
    """
    n = num_episodes or algo.config.evaluation_duration
    lengths, returns, runner_metrics = evaluation_episodes(eval_group, n)
    # RLlib's own evaluation stats (evaluation/env_runners/episode_return_mean, ...), which Tune users and RLlib's
    # "no evaluation results" check look for, beside ours.
    algo.metrics.aggregate(runner_metrics, key=(EVALUATION_RESULTS, ENV_RUNNER_RESULTS))
    steps = int(lengths.sum())
    results: dict[str, Any] = {
        "real/episode_return_mean": float(returns.mean()),
        "real/episode_return_std": float(returns.std()),
        "real/episode_return_min": float(returns.min()),
        "real/episode_return_max": float(returns.max()),
        "real/episode_len_mean": float(lengths.mean()),
        "real/num_episodes": len(returns),
        "real/num_env_steps": steps,
    }
    module = getattr(algo, "local_module", None)
    if hasattr(module, "plan_settings"):
        # Which agent played these episodes: the planner's look-ahead in steps (0: C alone) and the interval the
        # agent decided at. A run's progress rows then say it where it changes (a chain's last legs plan where its
        # first ones evaluate C; `set_planning` before `evaluate_real`). The EnvRunners play the local module's
        # settings (`_set_agent_state` syncs them).
        results["real/plan_horizon"] = module.plan_settings().horizon
        results["real/decision_every"] = module.deployed_interval()
    if hasattr(algo, "record_real_evaluation"):  # the anchor of calibrate_deaths="policy"
        algo.record_real_evaluation(returns)
    if algo.dream_score:
        results.update({f"dream/episode_return_{k}": v for k, v in algo.dream_score.items()})
        results["dream_real_gap"] = algo.dream_score["mean"] - results["real/episode_return_mean"]
        if react and hasattr(algo, "exploit_guard"):
            results.update(algo.exploit_guard(algo.dream_score["mean"], results["real/episode_return_mean"]))
    # On the new API stack RLlib reads evaluation results from the metrics logger (as aggregated stats), not from
    # this return value: log into a child logger and aggregate it, as EnvRunner metrics are.
    child = MetricsLogger()
    for k, v in results.items():
        child.log_value(k, v, window=1)
    algo.metrics.aggregate([child.reduce()], key=EVALUATION_RESULTS)
    return results, steps, steps
