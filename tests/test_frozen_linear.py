"""frozen_linear: F.linear's values and input gradients through oneDNN, F.linear itself elsewhere."""
import pytest
import torch
import torch.nn.functional as F

from mutual_prompt.clip import frozen_linear as module
from mutual_prompt.clip.frozen_linear import frozen_linear, onednn_linear_enabled, set_onednn_linear

needs_onednn = pytest.mark.skipif(not module.onednn_linear_available(), reason="this PyTorch build has no oneDNN")


@pytest.fixture
def weights():
    torch.manual_seed(0)
    return torch.randn(96, 48) / 7, torch.randn(96)


@pytest.fixture(autouse=True)
def restore_switch():
    enabled = module._enabled
    yield
    set_onednn_linear(enabled)


@needs_onednn
@pytest.mark.parametrize("shape", [(5, 48), (2, 7, 48), (3, 2, 4, 48)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_input_gradient_equal_f_linear(weights, shape, with_bias):
    weight, bias = weights
    bias = bias if with_bias else None
    x = torch.randn(shape, requires_grad=True)
    reference = x.detach().clone().requires_grad_()
    grad = torch.randn(*shape[:-1], 96)

    out = frozen_linear(x, weight, bias)
    expected = F.linear(reference, weight, bias)
    assert type(out.grad_fn).__name__ == "_OneDNNFrozenLinearBackward"
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, reference.grad, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_non_contiguous_input_and_no_grad(weights):
    weight, bias = weights
    x = torch.randn(6, 3, 48).transpose(0, 1)
    with torch.no_grad():
        out = frozen_linear(x, weight, bias)
    assert out.grad_fn is None and out.shape == (3, 6, 96)
    torch.testing.assert_close(out, F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["switched off", "mkldnn disabled", "trainable weight", "float64", "bfloat16",
                                  "1-d input"])
def test_falls_back_to_f_linear_exactly(weights, case):
    """The input requires a gradient, so the node that computed the output names the path taken."""
    weight, bias = weights
    x = torch.randn(4, 48)
    if case == "switched off":
        set_onednn_linear(False)
        assert not onednn_linear_enabled()
    elif case == "trainable weight":
        weight = weight.clone().requires_grad_()
    elif case == "float64":
        x, weight, bias = x.double(), weight.double(), bias.double()
    elif case == "bfloat16":
        x, weight, bias = x.bfloat16(), weight.bfloat16(), bias.bfloat16()
    elif case == "1-d input":
        x = x[0]
    x.requires_grad_()
    torch.backends.mkldnn.enabled = case != "mkldnn disabled"
    try:
        out = frozen_linear(x, weight, bias)
    finally:
        torch.backends.mkldnn.enabled = True
    assert type(out.grad_fn).__name__ != "_OneDNNFrozenLinearBackward"
    assert torch.equal(out, F.linear(x, weight, bias))
    if case == "trainable weight":
        out.sum().backward()
        assert weight.grad is not None and weight.grad.abs().sum() > 0


@needs_onednn
def test_cpu_autocast_lowers_the_precision_as_it_does_for_f_linear(weights):
    weight, bias = weights
    x = torch.randn(4, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frozen_linear(x, weight, bias)
        expected = F.linear(x, weight, bias)
    assert out.dtype == torch.bfloat16 and type(out.grad_fn).__name__ != "_OneDNNFrozenLinearBackward"
    assert torch.equal(out, expected)


def test_an_operator_that_fails_or_disagrees_is_not_used(monkeypatch):
    def fails(*args):
        raise RuntimeError("unknown schema")

    monkeypatch.setattr(module, "_onednn", fails)
    module.onednn_linear_available.cache_clear()
    try:
        assert not module.onednn_linear_available() and not onednn_linear_enabled()
        x, weight = torch.randn(2, 4), torch.randn(3, 4)
        assert torch.equal(frozen_linear(x, weight), F.linear(x, weight))
        monkeypatch.setattr(module, "_onednn", lambda x, weight, bias: F.linear(x, weight, bias) + 1)
        module.onednn_linear_available.cache_clear()
        assert not module.onednn_linear_available()
    finally:
        monkeypatch.undo()
        module.onednn_linear_available.cache_clear()


def test_switch_is_read_from_the_environment(monkeypatch):
    import importlib

    monkeypatch.setenv(module.ENV_SWITCH, "0")
    reloaded = importlib.reload(module)
    try:
        assert not reloaded.onednn_linear_enabled()
    finally:
        monkeypatch.delenv(module.ENV_SWITCH)
        importlib.reload(module)
    assert module.onednn_linear_enabled() == module.onednn_linear_available()
