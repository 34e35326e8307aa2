import pytest
import torch

from rllib_worldmodel.models.vae import ConvVAE, MLPVAE


def test_conv_vae_shapes_and_paper_parameter_count():
    vae = ConvVAE(z_size=64)
    # paper / WorldModelsExperiments: Doom VAE has 4,446,915 parameters; CarRacing (z=32) 4,348,547.
    assert sum(p.numel() for p in vae.parameters()) == 4_446_915
    assert sum(p.numel() for p in ConvVAE(z_size=32).parameters()) == 4_348_547
    obs = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    mu, logvar = vae.encode(obs)
    assert mu.shape == logvar.shape == (5, 64)
    recon = vae.decode(mu)
    assert recon.shape == (5, 3, 64, 64)
    assert 0.0 <= recon.min().item() and recon.max().item() <= 1.0
    frames = vae.to_observation(recon)
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == torch.uint8


def test_conv_vae_rejects_wrong_frame_shape():
    with pytest.raises(ValueError, match="ImageObservation"):
        ConvVAE(z_size=8).encode(torch.zeros(2, 96, 96, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\)"):
        ConvVAE(z_size=8).encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


def test_mlp_vae_shapes_and_errors():
    vae = MLPVAE(obs_dim=4, z_size=3)
    mu, logvar = vae.encode(torch.randn(7, 4))
    assert mu.shape == logvar.shape == (7, 3)
    assert vae.decode(mu).shape == (7, 4)
    with pytest.raises(ValueError, match="VectorObservation"):
        vae.encode(torch.randn(7, 5))
