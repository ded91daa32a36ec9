import pytest
import torch
import torch.nn.functional as F

from videogen_lite.attention import AxialAttention, MultiHeadAttention, PositionEmbedding


def test_multi_head_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(3, 5, 8)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = lambda t: t.view(3, 5, 2, 4).transpose(1, 2)  # noqa: E731  [N, heads, L, d]
    q, k, v = heads(q), heads(k), heads(v)
    weights = F.softmax(q @ k.transpose(-1, -2) / 4**0.5, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(3, 5, 8))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_axial_attention_only_mixes_along_axes():
    torch.manual_seed(0)
    attn = AxialAttention(8, 2).eval()
    x = torch.randn(1, 3, 4, 5, 8)
    y = attn(x)
    x2 = x.clone()
    x2[0, 2, 3, 4] += 1.0  # a position that shares no row, column or time line with (0, 0, 0)
    assert torch.allclose(attn(x2)[0, 0, 0, 0], y[0, 0, 0, 0], atol=1e-6)
    x3 = x.clone()
    x3[0, 0, 0, 4] += 1.0  # same (t, h) row
    assert not torch.allclose(attn(x3)[0, 0, 0, 0], y[0, 0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("kind", ["spatiotemporal", "spatial", "temporal", "sincos", "none"])
def test_position_embeddings_shape_and_broadcast(kind):
    emb = PositionEmbedding(kind, (2, 3, 4), 6)()
    assert emb.shape == (2, 3, 4, 6)
    if kind == "spatial":  # the same at every time step
        assert torch.equal(emb[0], emb[1])
    if kind == "temporal":  # the same at every pixel of a frame
        assert torch.equal(emb[:, 0, 0], emb[:, 2, 3])
    if kind == "spatiotemporal":  # a sum of per-axis tables: emb[t,h,w] - emb[0,h,w] depends on t only
        assert torch.allclose(emb[1, 0, 0] - emb[0, 0, 0], emb[1, 2, 3] - emb[0, 2, 3], atol=1e-6)
    if kind == "none":
        assert not emb.any()


def test_unknown_position_embedding_is_rejected():
    with pytest.raises(ValueError, match="spatiotemporal"):
        PositionEmbedding("rope", (1, 1, 1), 2)
