import pytest
import torch

from rllib_worldmodel.models.mdn_rnn import MDNRNN, sample_mixture


def test_sequence_model_and_cell_agree():
    torch.manual_seed(0)
    m = MDNRNN(z_size=6, action_dim=3, hidden_size=16, num_mixtures=4)
    z, a = torch.randn(2, 7, 6), torch.randn(2, 7, 3)
    seq_out, h_seq, (hn, cn) = m(z, a)
    state = m.initial_state(2)
    for t in range(7):
        state = m.step(z[:, t], a[:, t], state)
        torch.testing.assert_close(state[0], h_seq[:, t], atol=1e-6, rtol=1e-5)
        step_out = m.heads(state[0])
        for a_seq, a_step in zip(seq_out, step_out):
            torch.testing.assert_close(a_seq[:, :, t], a_step, atol=1e-5, rtol=1e-5)  # (E, B, T, ...) vs (E, B, ...)
    torch.testing.assert_close(state[0], hn, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state[1], cn, atol=1e-6, rtol=1e-5)


def test_state_carries_across_chunks():
    torch.manual_seed(1)
    m = MDNRNN(z_size=2, action_dim=2, hidden_size=8, num_mixtures=2)
    z, a = torch.randn(1, 10, 2), torch.randn(1, 10, 2)
    _, h_full, _ = m(z, a)
    _, h1, s = m(z[:, :4], a[:, :4])
    _, h2, _ = m(z[:, 4:], a[:, 4:], s)
    torch.testing.assert_close(torch.cat([h1, h2], 1), h_full)


def test_heads_shapes_and_stability():
    m = MDNRNN(z_size=5, action_dim=2, hidden_size=8, num_mixtures=3, logsigma_min=-4.0, logsigma_max=2.0)
    with torch.no_grad():
        m.mdn_head.bias.fill_(100.0)
    out = m.heads(torch.randn(4, 8))
    assert out.logpi.shape == out.mu.shape == out.logsigma.shape == (1, 4, 5, 3)  # member axis first (E = 1)
    assert out.reward.shape == out.done_logit.shape == (1, 4)
    torch.testing.assert_close(out.logpi.exp().sum(-1), torch.ones(1, 4, 5))
    assert out.logsigma.max().item() <= 2.0


def test_ensemble_heads_share_the_lstm_and_differ():
    torch.manual_seed(0)
    m = MDNRNN(z_size=5, action_dim=2, hidden_size=8, num_mixtures=3, num_heads=4, done_bias_init=-5.0)
    out, h, _ = m(torch.randn(2, 6, 5), torch.randn(2, 6, 2))
    assert out.mu.shape == (4, 2, 6, 5, 3) and out.done_logit.shape == (4, 2, 6) and h.shape == (2, 6, 8)
    assert not torch.allclose(out.mu[0], out.mu[1])  # independently initialised members
    torch.testing.assert_close(m.done_head.bias, torch.full((4,), -5.0))
    with pytest.raises(ValueError, match="num_heads"):
        MDNRNN(z_size=5, action_dim=2, num_heads=0)


def test_bad_inputs_are_rejected():
    m = MDNRNN(z_size=4, action_dim=3, hidden_size=8)
    with pytest.raises(ValueError, match="last dim 4"):
        m(torch.randn(2, 5, 3), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="actions shaped"):
        m.step(torch.randn(2, 4), torch.randn(2, 2), m.initial_state(2))
    with pytest.raises(ValueError, match="logsigma_min"):
        MDNRNN(4, 3, logsigma_min=1.0, logsigma_max=0.0)


def _mixture(b=20000):
    logpi = torch.log_softmax(torch.tensor([1.0, 0.0, -1.0]), -1).expand(b, 1, 3)
    mu = torch.tensor([0.0, 3.0, -3.0]).expand(b, 1, 3)
    logsigma = torch.log(torch.tensor([0.5, 0.5, 0.5])).expand(b, 1, 3)
    return logpi, mu, logsigma


def test_temperature_to_zero_gives_the_mode():
    logpi, mu, logsigma = _mixture(1000)
    z = sample_mixture(logpi, mu, logsigma, temperature=1e-8, generator=torch.Generator().manual_seed(0))
    # The most probable component is 0 (mean 0.0); noise shrinks by sqrt(tau) = 1e-4.
    assert z.abs().max().item() < 1e-3


def test_higher_temperature_means_more_variance():
    logpi, mu, logsigma = _mixture()
    stds = [
        sample_mixture(logpi, mu, logsigma, t, torch.Generator().manual_seed(0)).std().item()
        for t in (0.1, 0.5, 1.0, 1.5)
    ]
    assert stds == sorted(stds) and stds[-1] > 2 * stds[0]


def test_component_frequencies_follow_tempered_softmax():
    logpi, mu, logsigma = _mixture()
    for tau in (1.0, 2.0):
        z = sample_mixture(logpi, mu, logsigma, tau, torch.Generator().manual_seed(3))[:, 0]
        freq = torch.stack([(z.abs() < 1.5).float().mean(), (z > 1.5).float().mean(), (z < -1.5).float().mean()])
        expected = torch.softmax(logpi[0, 0] / tau, -1)
        torch.testing.assert_close(freq, expected, atol=0.02, rtol=0)


@pytest.mark.parametrize("closed_loop", [0.0, 0.5])
def test_forward_valid_is_forward_at_the_valid_steps(closed_loop):
    torch.manual_seed(3)
    m = MDNRNN(z_size=4, action_dim=3, hidden_size=8, num_mixtures=2, num_heads=3)
    z, a = torch.randn(3, 6, 4), torch.randn(3, 6, 3)
    state = (torch.randn(3, 8), torch.randn(3, 8))
    valid = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    full, _, (hn, cn) = m(z, a, state, closed_loop, torch.Generator().manual_seed(7), 2)
    part, (hv, cv) = m.forward_valid(z, a, valid, state, closed_loop, torch.Generator().manual_seed(7), 2)
    for f, p in zip(full, part):  # (E, B, T, ...) at the valid (b, t) in row-major order is (E, N, ...)
        assert p.shape[:2] == (3, int(valid.sum()))
        torch.testing.assert_close(f[:, valid], p)
    torch.testing.assert_close((hn, cn), (hv, cv))  # the state after all T steps, padding included (chunk carry)
