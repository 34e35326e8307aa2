"""The compute-precision helpers: the choices, the autocast context they open and the hardware check."""

import pytest
import torch

from rllib_worldmodel.precision import autocast, bf16_supported, check_precision, PRECISIONS


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
    with pytest.raises(ValueError, match=r"my_field=.*use one of \('fp32', 'bf16'\)"):
        check_precision(bad, "my_field")
    with pytest.raises(ValueError, match="precision="):
        autocast(bad, "cpu")


def test_every_choice_is_accepted_and_the_hardware_check_answers_for_any_device():
    assert [check_precision(p) for p in PRECISIONS] == ["fp32", "bf16"]
    assert isinstance(bf16_supported("cpu"), bool)
    assert bf16_supported("cuda") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert bf16_supported("meta") is False
