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
    # the state after all T steps where a row is valid at the last one (what a next chunk continues)
    torch.testing.assert_close((hn[0], cn[0]), (hv[0], cv[0]))


def test_hidden_by_length_is_hidden_at_every_valid_step_with_the_same_gradients():
    torch.manual_seed(4)
    m = MDNRNN(z_size=4, action_dim=3, hidden_size=8, num_mixtures=2)
    z, a = torch.randn(5, 7, 4), torch.randn(5, 7, 3)
    state = (torch.randn(5, 8), torch.randn(5, 8))
    lengths = torch.tensor([7, 2, 0, 5, 1])  # one row without any valid step
    valid = torch.arange(7)[None] < lengths[:, None]
    full, (hn, cn) = m.hidden(z, a, state)
    grouped, (hg, cg) = m.hidden_by_length(z, a, valid, state, groups=2)
    torch.testing.assert_close(grouped[valid], full[valid])
    torch.testing.assert_close((hg[0], cg[0]), (hn[0], cn[0]))  # valid to the end: the state after all T steps
    grads_full = torch.autograd.grad(full[valid].pow(2).sum(), list(m.lstm.parameters()))
    grads_grouped = torch.autograd.grad(grouped[valid].pow(2).sum(), list(m.lstm.parameters()))
    for g_full, g_grouped in zip(grads_full, grads_grouped):
        torch.testing.assert_close(g_full, g_grouped)


def test_state_after_is_each_rows_own_state_after_its_length_in_any_order():
    torch.manual_seed(5)
    m = MDNRNN(z_size=4, action_dim=3, hidden_size=8, num_mixtures=2)
    z, a = torch.randn(6, 9, 4), torch.randn(6, 9, 3)
    lengths = torch.tensor([5, 0, 9, 2, 5, 1])  # unsorted, a tie, a row without steps, one full length
    h, c = m.state_after(z, a, lengths)
    for b, n in enumerate(lengths.tolist()):  # each row alone, run exactly its own steps
        want = m.initial_state(1) if n == 0 else m.hidden(z[b : b + 1, :n], a[b : b + 1, :n])[1]
        torch.testing.assert_close((h[b], c[b]), (want[0][0], want[1][0]))
    assert not h.requires_grad  # context only: nothing trains through a prefix
    zero_h, zero_c = m.state_after(z, a, torch.zeros(6, dtype=torch.long))
    assert zero_h.eq(0).all() and zero_c.eq(0).all()


def test_sample_next_draws_what_all_members_heads_would_give_from_the_same_draws():
    from rllib_worldmodel.models.mdn_rnn import sample_mixture

    torch.manual_seed(5)
    m = MDNRNN(z_size=4, action_dim=3, hidden_size=8, num_mixtures=3, num_heads=4)
    h = torch.randn(64, 8)
    got = m.sample_next(h, 1.15, torch.Generator().manual_seed(9))
    # the rule spelled out on every member's outputs: a uniform member per row, then its mixture sampled
    gen, out, rows = torch.Generator().manual_seed(9), m.heads(h), torch.arange(64)
    member = torch.randint(0, 4, (64,), generator=gen)
    want = sample_mixture(out.logpi[member, rows], out.mu[member, rows], out.logsigma[member, rows], 1.15, gen)
    torch.testing.assert_close(got, want)
    assert len(set(member.tolist())) == 4  # every member was drawn for some row
