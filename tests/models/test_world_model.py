import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from rllib_worldmodel import CheckpointError, WorldModel, WorldModelConfig
from tests.conftest import make_image_world_model


def test_config_from_spaces():
    cfg = WorldModelConfig.from_spaces(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(3))
    assert (cfg.obs_kind, cfg.action_kind, cfg.action_dim) == ("image", "discrete", 3)
    cont = WorldModelConfig.from_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)))
    assert cont.action_kind == "continuous" and cont.action_low == (-1.0, -1.0)
    assert isinstance(cont.action_space(), gym.spaces.Box)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_shape": (96, 96, 3)}, "ImageObservation"),
        ({"obs_kind": "audio"}, "obs_kind"),
        ({"z_size": 0}, "z_size"),
        ({"loss_weights": {"mdn": 1.0}}, "loss_weights"),
        ({"action_kind": "continuous"}, "action_low"),
    ],
)
def test_config_validation_names_the_field(kwargs, match):
    base = dict(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_dim=3)
    with pytest.raises(ValueError, match=match):
        WorldModelConfig(**{**base, **kwargs})


def test_unsupported_spaces_are_rejected():
    with pytest.raises(ValueError, match="not a Box"):
        WorldModelConfig.from_spaces(gym.spaces.Discrete(4), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="not supported"):
        WorldModelConfig.from_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 2]))


def test_checkpoint_round_trip(tmp_path):
    model = make_image_world_model()
    path = model.save(tmp_path / "sub" / "wm.pt", metadata={"env": "test"})
    loaded = WorldModel.load(path)
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert not list(path.parent.glob("*.tmp")), "atomic save must not leave temp files"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        WorldModel.load(tmp_path / "nope.pt")


def test_corrupt_checkpoint(tmp_path):
    path = make_image_world_model().save(tmp_path / "wm.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldModel.load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldModel.load(tmp_path / "junk.pt")


def test_foreign_or_newer_checkpoint(tmp_path):
    torch.save({"some": "dict"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an rllib_worldmodel"):
        WorldModel.load(tmp_path / "other.pt")
    path = make_image_world_model().save(tmp_path / "wm.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99"):
        WorldModel.load(path)


def test_mismatched_architecture(tmp_path):
    path = make_image_world_model(z_size=8).save(tmp_path / "wm.pt")
    wanted = make_image_world_model(z_size=16).config
    with pytest.raises(CheckpointError, match="z_size: expected 16, checkpoint has 8"):
        WorldModel.load(path, expected_config=wanted)
    # Loss-only settings (V's focus) are not architecture: a checkpoint fitted without them still loads.
    focused = dataclasses.replace(make_image_world_model(z_size=8).config, vae_focus_fraction=0.02, vae_focus_weight=10)
    assert WorldModel.load(path, expected_config=focused).config.z_size == 8
    # A record that lies about the weights is caught too.
    payload = torch.load(path, weights_only=True)
    payload["config"]["rnn_size"] = 32
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        WorldModel.load(path)


def test_encode_action():
    model = make_image_world_model(n_actions=3)
    enc = model.encode_action(torch.tensor([0, 2]))
    torch.testing.assert_close(enc, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_batched_teacher_forcing_equals_one_episode_at_a_time():
    """Padding episodes of different lengths into one batch must not change any real step's done logits."""
    model = make_image_world_model(n_actions=3)
    gen = torch.Generator().manual_seed(0)
    episodes = []
    for t in (5, 17, 1, 9):
        actions = model.encode_action(torch.randint(0, 3, (t,), generator=gen))
        episodes.append((torch.randn(t + 1, model.config.z_size, generator=gen), actions))  # T+1 frames, T actions
    batched = model.teacher_forced_done_logits_of(episodes, batch_size=3)
    for (z, actions), logits in zip(episodes, batched):
        assert logits.shape == (model.config.num_heads, len(actions))
        torch.testing.assert_close(logits, model.teacher_forced_done_logits(z[: len(actions)], actions))
        out, _, _ = model.mdn_rnn(z[None, : len(actions)], actions[None])  # the plain forward, for reference
        torch.testing.assert_close(logits, out.done_logit[:, 0])


def test_encode_frames_in_chunks_equals_one_pass():
    model = make_image_world_model()
    frames = torch.randint(0, 256, (7, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mu, logvar = model.encode_frames(frames.numpy(), batch_size=3)
    want_mu, want_logvar = model.vae.encode(frames)
    torch.testing.assert_close(mu, want_mu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar, want_logvar, rtol=1e-5, atol=1e-5)
