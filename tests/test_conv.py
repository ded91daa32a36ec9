import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from videogen_lite import conv as conv_module
from videogen_lite.conv import Downsample, SamePadConv3d, SamePadConvTranspose3d, Upsample, stride_schedule

sizes = st.integers(1, 9)
kernels = st.integers(1, 5)
strides = st.integers(1, 3)


@settings(max_examples=40, deadline=None)
@given(t=sizes, h=sizes, w=sizes, k=kernels, s=strides)
def test_same_conv_output_is_ceil_of_input_over_stride(t, h, w, k, s):
    conv = SamePadConv3d(2, 3, k, s)
    y = conv(torch.randn(1, 2, t, h, w))
    assert y.shape == (1, 3, math.ceil(t / s), math.ceil(h / s), math.ceil(w / s))


@settings(max_examples=25, deadline=None)
@given(t=sizes, h=sizes, k=st.integers(2, 5), s=st.integers(1, 2))
def test_transposed_conv_multiplies_by_stride_and_is_the_adjoint(t, h, k, s):
    if k < s:
        return
    torch.manual_seed(0)
    conv = SamePadConv3d(2, 3, k, s, bias=False)
    convt = SamePadConvTranspose3d(3, 2, k, s, bias=False)
    convt.convt.weight.data.copy_(conv.conv.weight.data)  # both weights are [3, 2, k, k, k]
    x = torch.randn(1, 2, t * s, h * s, 2 * s)
    y = torch.randn(1, 3, t, h, 2)
    assert convt(y).shape == x.shape
    # <conv(x), y> == <x, convt(y)>: the transposed conv is exactly the adjoint of the same conv
    assert torch.allclose((conv(x) * y).sum(), (x * convt(y)).sum(), rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(t=sizes, k=st.integers(2, 5), s=st.integers(1, 3))
def test_transposed_conv_equals_the_full_transposed_conv_cropped(t, k, s):
    """Even surpluses k - s are cropped by the layer's own padding, odd ones after the full convolution: both
    must equal the full transposed convolution with (k - s) // 2 cropped before and the rest after."""
    if k < s:
        return
    torch.manual_seed(0)
    kernel, stride = (k, 4, 3), (s, 2, 2)  # one axis of each kind: surplus k - s, 2 (even), 1 (odd)
    layer = SamePadConvTranspose3d(3, 2, kernel, stride).double()
    full = torch.nn.ConvTranspose3d(3, 2, kernel, stride).double()
    full.load_state_dict(layer.convt.state_dict())
    x = torch.randn(2, 3, t, 3, 4, dtype=torch.float64)
    y = full(x)
    (a, b, c) = ((kk - ss) // 2 for kk, ss in zip(kernel, stride))
    expected = y[:, :, a : a + t * s, b : b + 3 * 2, c : c + 4 * 2]
    assert layer.padding[1] == 1 and layer.padding[2] == 0
    assert torch.allclose(layer(x), expected, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5), cout=st.sampled_from([1, 3, 8]),
       bias=st.booleans(), channels_last=st.booleans())
def test_the_eight_phase_form_equals_the_stride_2_transposed_conv(t, h, w, cout, bias, channels_last):
    """Kernel 4, stride 2, few output channels: on a CPU the layer runs as one stride-1 convolution over its
    eight output phases. Output and gradients equal PyTorch's transposed convolution (float64: to 1e-12)."""
    torch.manual_seed(0)
    layer = SamePadConvTranspose3d(5, cout, 4, 2, bias=bias).double()
    x = torch.randn(2, 5, t, h, w, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    g = torch.randn(2, cout, 2 * t, 2 * h, 2 * w, dtype=torch.float64)
    calls = []
    layer.convt.register_forward_hook(lambda m, args, out, seen=calls: seen.append(1))
    assert layer.by_phases_pays(x)
    ours = layer(x)
    assert calls == []  # the transposed convolution itself never ran
    reference = layer.convt(x)  # padding 1 is the whole crop at kernel 4, stride 2
    assert ours.shape == reference.shape == (2, cout, 2 * t, 2 * h, 2 * w)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    inputs = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(ours, inputs, g), torch.autograd.grad(reference, inputs, g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_the_phase_form_is_taken_only_where_it_was_measured_to_pay(monkeypatch):
    x = torch.randn(1, 4, 2, 2, 2)
    assert SamePadConvTranspose3d(4, 8, 4, 2).by_phases_pays(x)
    assert not SamePadConvTranspose3d(4, 16, 4, 2).by_phases_pays(x)  # many output channels: oneDNN's is faster
    assert not SamePadConvTranspose3d(4, 3, 4, (1, 2, 2)).by_phases_pays(x)  # not stride 2 on every axis
    assert not SamePadConvTranspose3d(4, 3, (3, 4, 4), 2).by_phases_pays(x)  # not kernel 4 on every axis
    assert not SamePadConvTranspose3d(4, 3, 4, 2).by_phases_pays(x[0])  # an unbatched input
    monkeypatch.setattr(conv_module, "CPU_PHASE_MAX_CHANNELS", 0)
    assert not SamePadConvTranspose3d(4, 1, 4, 2).by_phases_pays(x)


def test_same_padding_keeps_a_centered_impulse_centered():
    conv = SamePadConv3d(1, 1, 3, 1, bias=False)
    conv.conv.weight.data.zero_()
    conv.conv.weight.data[0, 0, 1, 1, 1] = 1.0  # identity kernel
    x = torch.randn(1, 1, 4, 5, 6)
    assert torch.equal(conv(x), x)


def test_stride_schedule_per_axis():
    assert stride_schedule((4, 4, 4)) == [(2, 2, 2), (2, 2, 2)]
    assert stride_schedule((2, 4, 4)) == [(2, 2, 2), (1, 2, 2)]
    assert stride_schedule((1, 1, 1)) == []


def test_down_and_up_stacks_shapes():
    x = torch.randn(2, 3, 16, 32, 32)
    down = Downsample(3, 8, (2, 4, 4))
    z = down(x)
    assert z.shape == (2, 8, 8, 8, 8)
    up = Upsample(8, 3, (2, 4, 4))
    assert up(z).shape == x.shape


def test_upsampling_without_gradients_runs_channels_last_and_gives_the_same_numbers():
    torch.manual_seed(0)
    up = Upsample(24, 3, (2, 4, 4), kernel_size=4).eval()
    x = torch.randn(3, 24, 4, 4, 4)
    layouts = []
    up[0].register_forward_pre_hook(lambda m, args: layouts.append(args[0].is_contiguous()))
    with_grad = up(x)  # the usual NCDHW path (gradients on)
    with torch.no_grad():
        decoded = up(x)  # channels-last inside
    assert layouts == [True, False]
    assert decoded.shape == (3, 3, 8, 16, 16) and decoded.is_contiguous()
    assert torch.equal(decoded, with_grad.detach())


def test_slices_of_the_stacks_are_their_layers():
    down, up = Downsample(3, 8, (2, 4, 4)), Upsample(8, 3, (2, 4, 4))
    for stack in (down, up):
        head = stack[:2]
        assert isinstance(head, torch.nn.Sequential) and list(head) == list(stack)[:2]  # the same modules
        assert stack[-1] is list(stack)[-1]
    x = torch.randn(1, 3, 4, 8, 8)
    torch.testing.assert_close(down[1:](down[0](x)), down(x))


def test_in_place_relus_of_the_stacks_change_no_number():
    torch.manual_seed(0)
    down, up = Downsample(3, 8, (2, 4, 4)), Upsample(8, 3, (2, 4, 4))
    x = torch.randn(2, 3, 8, 16, 16)
    relus = [m for m in [*down, *up] if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 3 and all(r.inplace for r in relus)  # two after strided convs, one between transposed
    results = []
    for inplace in (True, False):
        for r in relus:
            r.inplace = inplace
        down.zero_grad(set_to_none=True)
        up.zero_grad(set_to_none=True)
        y = up(down(x))
        y.square().sum().backward()
        results.append([y.detach()] + [p.grad.clone() for p in [*down.parameters(), *up.parameters()]])
    assert all(torch.equal(a, b) for a, b in zip(*results))
