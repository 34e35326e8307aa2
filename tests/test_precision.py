"""The compute-precision helpers: the choices, the autocast context they open and the hardware check."""

import pytest
import torch

from rllib_worldmodel.precision import autocast, bf16_supported, check_precision, PRECISIONS, resolve_precision


def test_fp32_computes_in_float32_and_bf16_in_bfloat16_from_float32_inputs():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        out = a @ b
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), a @ b, atol=0.1, rtol=0.02)  # bfloat16 keeps ~3 significant digits


@pytest.mark.parametrize("bad", ["fp16", "float32", "BF16", None])
def test_an_unknown_precision_names_the_field_and_the_choices(bad):
    with pytest.raises(ValueError, match=r"my_field=.*use one of \('fp32', 'bf16', 'auto'\)"):
        check_precision(bad, "my_field")
    with pytest.raises(ValueError, match="precision="):
        autocast(bad, "cpu")


def test_every_choice_is_accepted_and_the_hardware_check_answers_for_any_device():
    assert [check_precision(p) for p in PRECISIONS] == ["fp32", "bf16", "auto"]
    assert isinstance(bf16_supported("cpu"), bool)
    cuda_bf16 = torch.cuda.is_available() and (bool(torch.version.hip) or torch.cuda.get_device_capability()[0] >= 8)
    assert bf16_supported("cuda") == cuda_bf16
    assert bf16_supported("meta") is False


@pytest.mark.parametrize("device", ["cpu", "meta", "cuda"])
def test_auto_resolves_per_device_to_bf16_only_where_it_runs_in_hardware(device):
    expected = "bf16" if bf16_supported(device) else "fp32"
    assert resolve_precision("auto", device) == expected
    assert resolve_precision("fp32", device) == "fp32" and resolve_precision("bf16", device) == "bf16"
    if device == "cpu":  # autocast opens the context the resolved precision says
        a = torch.randn(2, 3)
        with autocast("auto", device):
            assert (a @ a.T).dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_auto_on_a_cpu_follows_the_hardware_check(monkeypatch):
    import rllib_worldmodel.precision as precision

    for has_units, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "_cpu_bf16", lambda has_units=has_units: has_units)
        assert resolve_precision("auto", "cpu") == expected
