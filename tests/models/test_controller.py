import argparse

import gymnasium as gym
import numpy as np
import pytest
import torch

from rllib_worldmodel import ControllerInput, DreamSettings, WorldModelConfig, WorldModelsConfig


def _cfg() -> WorldModelConfig:
    return WorldModelConfig.from_spaces(
        gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(3), z_size=4, rnn_size=6
    )


@pytest.mark.parametrize(
    "spec, size, layout, text",
    [
        (ControllerInput(), 10, ["z"] * 4 + ["h"] * 6, "z, h"),
        (ControllerInput(cell=True), 16, ["z"] * 4 + ["h"] * 6 + ["c"] * 6, "z, h, c"),
        (ControllerInput(hidden=False), 4, ["z"] * 4, "z"),
        (ControllerInput(hidden=False, prev_action=True), 7, ["z"] * 4 + ["a"] * 3, "z, previous action"),
        (
            ControllerInput(cell=True, prev_action=True),
            19,
            ["z"] * 4 + ["h"] * 6 + ["c"] * 6 + ["a"] * 3,
            "z, h, c, previous action",
        ),
    ],
)
def test_controller_input_size_layout_and_description_agree(spec, size, layout, text):
    """Each part lands where `size` says, in the order z, h, c, previous action, for every combination."""
    cfg = _cfg()
    tag = {"z": 1.0, "h": 2.0, "c": 3.0, "a": 4.0}
    b = 2
    z, h, c, a = (torch.full((b, n), tag[k]) for k, n in (("z", 4), ("h", 6), ("c", 6), ("a", 3)))
    x = spec.build(z, h, c, a)
    assert spec.size(cfg) == size and x.shape == (b, size)
    np.testing.assert_array_equal(x[0].numpy(), [tag[k] for k in layout])
    assert spec.describe() == text


def test_controller_input_never_aliases_the_state_it_reads():
    """z alone is still copied: an observation handed to RLlib must not change when the simulator steps in place."""
    z = torch.zeros(2, 4)
    x = ControllerInput(hidden=False).build(z, torch.zeros(2, 6), torch.zeros(2, 6), torch.zeros(2, 3))
    z += 1.0
    assert float(x.sum()) == 0.0


def test_controller_input_reads_the_same_flags_from_settings_configs_arguments_and_model_configs():
    spec = ControllerInput(hidden=False, prev_action=True)
    assert ControllerInput.from_flags(spec.flags()) == spec
    assert DreamSettings(**spec.flags()).controller_input == spec
    assert ControllerInput.from_flags(WorldModelsConfig().dream(**spec.flags())) == spec
    assert ControllerInput.from_flags(argparse.Namespace(**spec.flags())) == spec
    # absent keys take the paper's defaults ([z, h]); an RLModule's model_config may name none of them
    assert ControllerInput.from_flags({}) == ControllerInput() == DreamSettings().controller_input
    assert ControllerInput.from_flags({"include_cell": True}) == ControllerInput(cell=True)
