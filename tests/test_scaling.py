import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import videogen_lite as vg
from videogen_lite.scaling import saved_bytes, step_cost


def test_vqvae_cost_matches_a_real_run(tiny_cfg):
    cost = step_cost(tiny_cfg, "vqvae", batch=2)
    vq = vg.VQVAE(tiny_cfg.vqvae)
    assert cost["parameters"] == sum(p.numel() for p in vq.parameters())
    assert cost["state_bytes"] == 16 * cost["parameters"]
    x = torch.zeros(2, 1, 8, 32, 32)
    with FlopCounterMode(display=False) as counter, saved_bytes() as saved:
        F.mse_loss(vq.decode_embeddings(vq.encode_latents(x)), x).backward()
    assert cost["flops"] == counter.get_total_flops()  # meta device counts what a real step computes
    assert cost["activation_bytes"] == saved[0]


def test_bf16_halves_and_checkpointing_shrinks_activations(tiny_cfg):
    fp32 = step_cost(tiny_cfg, "vqvae", batch=2)
    bf16 = step_cost(tiny_cfg, "vqvae", batch=2, dtype=torch.bfloat16)
    assert bf16["flops"] == fp32["flops"]
    assert 0.45 < bf16["activation_bytes"] / fp32["activation_bytes"] < 0.55
    plain = step_cost(tiny_cfg, "prior", batch=2)
    checkpointed = step_cost(tiny_cfg, "prior", batch=2, activation_checkpointing=True)
    assert checkpointed["activation_bytes"] < plain["activation_bytes"]
    assert checkpointed["flops"] > plain["flops"]  # the blocks' forward runs twice


def test_prior_flops_scale_with_layers(tiny_cfg):
    two = step_cost(tiny_cfg, "prior")["flops"]
    tiny_cfg.prior.layers = 4
    four = step_cost(tiny_cfg, "prior")["flops"]
    assert 1.3 < four / two < 2.0


def test_fused_attention_leaves_out_exactly_the_attention_matrices(tiny_cfg):
    fused = step_cost(tiny_cfg, "prior", batch=2)
    math_path = step_cost(tiny_cfg, "prior", batch=2, fused_attention=False)
    length, heads, layers = 2 * 8 * 8, tiny_cfg.prior.heads, tiny_cfg.prior.layers
    matrix = 2 * heads * length * length * 4  # one fp32 [B, heads, L, L] attention matrix
    removed = math_path["activation_bytes"] - fused["activation_bytes"]
    assert removed > 0 and removed % (layers * matrix) == 0  # whole matrices, the same number per layer
    assert fused["flops"] == math_path["flops"]
