"""Analytic checks of the world-model losses."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence, Normal

from rllib_worldmodel.losses import done_loss, gaussian_kl, mdn_log_prob, mdn_nll, reward_loss, vae_loss, weighted_sum


def test_kl_is_zero_at_standard_normal():
    assert gaussian_kl(torch.zeros(4, 8), torch.zeros(4, 8)).abs().max().item() < 1e-7


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 6), torch.randn(5, 6)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def test_vae_loss_free_bits_floor():
    z = 16
    recon = target = torch.zeros(3, 10)
    # Posterior equal to the prior: KL = 0 but the floor charges kl_tolerance * Z nats.
    loss, m = vae_loss(recon, target, torch.zeros(3, z), torch.zeros(3, z), kl_tolerance=0.5)
    assert loss.item() == pytest.approx(0.5 * z)
    assert m["world_model/vae_kl"] == pytest.approx(0.0, abs=1e-7)
    loss0, _ = vae_loss(recon, target, torch.zeros(3, z), torch.zeros(3, z), kl_tolerance=0.0)
    assert loss0.item() == pytest.approx(0.0, abs=1e-7)


def test_vae_loss_recon_is_summed_squared_error():
    recon, target = torch.full((2, 3, 4, 4), 0.5), torch.zeros(2, 3, 4, 4)
    mu = torch.full((2, 4), 3.0)  # large KL so the floor does not apply
    loss, m = vae_loss(recon, target, mu, torch.zeros(2, 4), kl_tolerance=0.5)
    assert m["world_model/vae_recon"] == pytest.approx(48 * 0.25)
    assert loss.item() == pytest.approx(48 * 0.25 + 4 * 9 / 2)
    with pytest.raises(ValueError, match="shape"):
        vae_loss(recon, target[:, :2], mu, torch.zeros(2, 4))


def test_vae_focus_counts_the_worst_values_again():
    target = torch.zeros(2, 3, 4, 4)  # 48 values per sample
    recon = torch.zeros(2, 3, 4, 4)
    recon[:, 0, 0, :2] = 1.0  # two values with error 1: the "small object"
    recon[:, 1] = 0.1  # 16 values with error 0.01: the "background"
    mu = torch.full((2, 4), 3.0)  # KL 18 per sample, above the floor
    plain, m0 = vae_loss(recon, target, mu, torch.zeros(2, 4))
    assert plain.item() == pytest.approx(2 + 0.16 + 18)
    assert "world_model/vae_focus" not in m0
    # top ceil(0.05 * 48) = 3 values: the two 1's and one 0.01, counted again 10 times
    focused, m = vae_loss(recon, target, mu, torch.zeros(2, 4), focus_fraction=0.05, focus_weight=10.0)
    assert m["world_model/vae_focus"] == pytest.approx(2.01)
    assert m["world_model/vae_recon"] == pytest.approx(2.16)  # the reported recon stays the plain error
    assert focused.item() == pytest.approx(2.16 + 10 * 2.01 + 18)


def test_one_component_mixture_equals_gaussian_nll():
    b, t, z = 2, 5, 3
    mu, logsigma, x = torch.randn(b, t, z, 1), torch.randn(b, t, z, 1) * 0.3, torch.randn(b, t, z)
    logpi = torch.zeros(b, t, z, 1)  # log(1)
    expected = -Normal(mu[..., 0], logsigma[..., 0].exp()).log_prob(x)
    torch.testing.assert_close(-mdn_log_prob(logpi, mu, logsigma, x), expected)
    loss, m = mdn_nll(logpi, mu, logsigma, x)
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)
    assert m["world_model/mdn_nll"] == pytest.approx(loss.item())


def test_identical_components_collapse_to_one():
    mu, logsigma, x = torch.randn(1, 4, 2, 1), torch.zeros(1, 4, 2, 1), torch.randn(1, 4, 2)
    k = 5
    logpi = F.log_softmax(torch.randn(1, 4, 2, k), dim=-1)
    mixed = mdn_log_prob(logpi, mu.expand(-1, -1, -1, k), logsigma.expand(-1, -1, -1, k), x)
    torch.testing.assert_close(mixed, mdn_log_prob(torch.zeros(1, 4, 2, 1), mu, logsigma, x))


def test_two_component_mixture_matches_manual_density():
    logpi = torch.log(torch.tensor([0.3, 0.7])).view(1, 1, 1, 2)
    mu, sigma = torch.tensor([-1.0, 2.0]).view(1, 1, 1, 2), torch.tensor([0.5, 1.5]).view(1, 1, 1, 2)
    x = torch.tensor(0.4).view(1, 1, 1)
    pdf = lambda m, s: math.exp(-0.5 * ((0.4 - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    expected = math.log(0.3 * pdf(-1.0, 0.5) + 0.7 * pdf(2.0, 1.5))
    assert mdn_log_prob(logpi, mu, sigma.log(), x).item() == pytest.approx(expected, rel=1e-6)


def test_mdn_nll_mask_ignores_padding():
    logpi, mu, logsigma = torch.zeros(1, 4, 2, 1), torch.zeros(1, 4, 2, 1), torch.zeros(1, 4, 2, 1)
    x = torch.zeros(1, 4, 2)
    x[0, 2:] = 1e3  # garbage in the padded part
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    loss, _ = mdn_nll(logpi, mu, logsigma, x, mask)
    assert loss.item() == pytest.approx(0.5 * math.log(2 * math.pi), rel=1e-6)


def test_done_loss_positive_weight_and_metrics():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss, m = done_loss(logits, targets, pos_weight=10.0)
    sp = F.softplus
    manual = (10 * sp(-logits[0, 0]) + sp(logits[0, 1]) + sp(logits[0, 2]) + 10 * sp(-logits[0, 3])) / 4
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    assert m["world_model/done_recall"] == pytest.approx(0.5)  # predicted: idx 0, 2; positives: idx 0, 3
    assert m["world_model/done_precision"] == pytest.approx(0.5)
    _, m_none = done_loss(torch.full((1, 3), -5.0), torch.zeros(1, 3))
    assert math.isnan(m_none["world_model/done_recall"]) and math.isnan(m_none["world_model/done_precision"])


def test_reward_loss_masked_mse():
    pred, target = torch.tensor([[1.0, 2.0, 100.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    loss, m = reward_loss(pred, target, torch.tensor([[1, 1, 0]]))
    assert loss.item() == pytest.approx(2.5)
    assert m["world_model/reward_mse"] == pytest.approx(2.5)


def test_weighted_sum_requires_matching_keys():
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
    assert weighted_sum(losses, {"a": 1.0, "b": 0.5}).item() == pytest.approx(2.0)
    with pytest.raises(KeyError, match="do not match"):
        weighted_sum(losses, {"a": 1.0})


def test_mdn_rnn_loss_is_the_weighted_sum_of_its_parts():
    from rllib_worldmodel.losses import mdn_rnn_loss
    from rllib_worldmodel.models.mdn_rnn import MDNOutput

    b, t, z, k = 2, 3, 4, 2
    pred = MDNOutput(
        F.log_softmax(torch.randn(b, t, z, k), -1),
        torch.randn(b, t, z, k),
        torch.zeros(b, t, z, k),
        torch.randn(b, t),
        torch.randn(b, t),
    )
    z_next, r, done = torch.randn(b, t, z), torch.randn(b, t), torch.zeros(b, t)
    done[0, -1] = 1.0
    weights = {"mdn": 1.0, "reward": 0.5, "done": 2.0}
    total, m = mdn_rnn_loss(pred, z_next, r, done, None, loss_weights=weights, done_pos_weight=10.0)
    expected = (
        mdn_nll(pred.logpi, pred.mu, pred.logsigma, z_next)[0]
        + 0.5 * reward_loss(pred.reward, r)[0]
        + 2.0 * done_loss(pred.done_logit, done, pos_weight=10.0)[0]
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert m["world_model/mdn_total_loss"] == pytest.approx(total.item())


def test_mdn_rnn_loss_on_the_valid_steps_alone_equals_the_masked_padded_batch():
    """The learner and the trainer score M only at the valid steps (`MDNRNN.forward_valid`): same loss, metrics and
    gradients as the padded batch with its mask, ensemble bootstrap weights included."""
    from rllib_worldmodel.losses import mdn_rnn_loss
    from rllib_worldmodel.models.mdn_rnn import MDNOutput

    torch.manual_seed(0)
    e, b, t, z, k = 3, 4, 5, 6, 2
    raw = [torch.randn(e, b, t, z, k, requires_grad=True) for _ in range(3)] + [
        torch.randn(e, b, t, requires_grad=True) for _ in range(2)
    ]
    pred = MDNOutput(F.log_softmax(raw[0], -1), raw[1], raw[2].clamp(-2, 2), raw[3], raw[4])
    z_next, r, done = torch.randn(b, t, z), torch.randn(b, t), torch.zeros(b, t)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    done[1, 1] = done[2, 2] = 1.0
    weights_E_B = torch.tensor([[1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    kw = {"loss_weights": {"mdn": 1.0, "reward": 0.5, "done": 2.0}, "done_pos_weight": 10.0}
    padded, m_padded = mdn_rnn_loss(pred, z_next, r, done, mask, member_weights_E_B=weights_E_B, **kw)
    valid = mask > 0
    flat = MDNOutput(*(x[:, valid] for x in pred))
    rows = valid.nonzero()[:, 0]
    packed, m_packed = mdn_rnn_loss(
        flat, z_next[valid], r[valid], done[valid], None, member_weights_E_B=weights_E_B[:, rows], **kw
    )
    assert packed.item() == pytest.approx(padded.item(), rel=1e-6)
    for key, value in m_padded.items():
        assert m_packed[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
    grads_padded = torch.autograd.grad(padded, raw, retain_graph=True)  # pred is shared by both losses
    for g_pad, g_flat in zip(grads_padded, torch.autograd.grad(packed, raw)):
        torch.testing.assert_close(g_pad, g_flat)
