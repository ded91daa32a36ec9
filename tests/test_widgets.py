"""The ipywidget explorers: set the controls from Python, click, and check what the outputs show."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import videogen_lite as vg
from videogen_lite import widgets
from videogen_lite.conditioning import ConditionalLayerNorm

torch.set_num_threads(1)

ACTIONS = widgets.VIZDOOM_HGS_ACTIONS  # 4 actions; the tiny action prior conditions on 3 steps (action_dim 12)


def make_prior(cfg, frame_cond=False, action_dim=0):
    cfg.prior.frame_cond, cfg.prior.action_dim = frame_cond, action_dim
    torch.manual_seed(0)
    prior = vg.VideoGPT(cfg.prior, vqvae=vg.VQVAE(cfg.vqvae)).eval()
    with torch.no_grad():  # conditional norms start as plain LayerNorms; give them weights so actions matter
        for module in prior.modules():
            if isinstance(module, ConditionalLayerNorm):
                for p in module.parameters():
                    p.normal_(std=0.5)
    return prior


def clip(seed=0):
    """A clip of the tiny config's size: video [1, 8, 32, 32] in [-0.5, 0.5], one-hot actions [8, 4]."""
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, 8, 32, 32, generator=g) - 0.5
    actions = torch.nn.functional.one_hot(torch.randint(0, 4, (8,), generator=g), 4).float()
    return {"video": video, "actions": actions}


def sample(box, **controls):
    for name, value in controls.items():
        box.controls[name].value = value
    box.button.click()
    assert box.status.value.startswith("sampled"), box.status.value
    return box.outputs["sample"].value


@pytest.fixture
def frame_box(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True)
    dataset = vg.data.MovingMNIST("test", sequence_length=8, resolution=32, length=4)
    return widgets.frame_conditioned_explorer(prior, dataset, grid=4), prior, dataset


def test_gif_bytes_is_a_gif_of_every_frame():
    video = torch.rand(2, 1, 5, 8, 8)
    data = widgets.gif_bytes(video)
    assert data[:6] == b"GIF89a"
    image = Image.open(io.BytesIO(data))
    assert image.size == (2 * (2 * 8) + 2 * 2, 2 * 8)  # two videos side by side, a 2-px gap, scaled 2x
    assert image.n_frames <= 5


def test_frame_explorer_seed_clip_and_drawing_change_the_sample(frame_box):
    box, prior, dataset = frame_box
    first = sample(box, seed=0)
    assert first[:6] == b"GIF89a"
    assert sample(box, seed=0) == first  # same controls, same bytes
    expected = widgets.sample_from_frame(prior, dataset[0]["video"][:, :1], seed=0)
    torch.testing.assert_close(box.video, expected)
    assert box.video.shape == (1, 8, 32, 32) and 0 <= box.video.min() and box.video.max() <= 1
    assert sample(box, seed=1) != first
    assert sample(box, seed=0, clip=1) != first
    assert sample(box, seed=0, clip=0, temperature=0.5, top_k=3) != first

    condition = box.outputs["condition"].value
    box.controls["source"].value = "drawing"  # an empty board: a black frame
    assert box.outputs["condition"].value != condition
    empty = sample(box, seed=0)
    box.cells[5].value = True
    drawn = sample(box, seed=0)
    assert drawn != empty
    assert "drawing" in box.status.value


def test_drawing_board_round_trip(frame_box):
    box, _, dataset = frame_box
    cells = np.zeros((4, 4), bool)
    cells[1, 2] = cells[3, 0] = True
    frame = widgets.drawn_frame(cells, 1, 32)
    assert frame.shape == (1, 1, 32, 32) and set(frame.unique().tolist()) == {-0.5, 0.5}
    assert (widgets.cells_from_frame(frame, 4) == cells).all()
    box.controls["source"].value = "dataset clip"
    box.board_buttons["copy clip"].click()
    assert box.controls["source"].value == "drawing"
    on = np.array([c.value for c in box.cells]).reshape(4, 4)
    assert (on == widgets.cells_from_frame(dataset[0]["video"][:, :1], 4)).all() and on.any()
    box.board_buttons["clear"].click()
    assert not any(c.value for c in box.cells)


def test_frame_explorer_refuses_an_unconditioned_prior(tiny_cfg):
    with pytest.raises(ValueError, match="not frame-conditioned"):
        widgets.frame_conditioned_explorer(make_prior(tiny_cfg))


def test_action_explorer_actions_change_the_future(tiny_cfg):
    prior = make_prior(tiny_cfg, action_dim=12)
    start = clip()
    box = widgets.action_conditioned_explorer(prior, start, action_names=ACTIONS)
    assert [box.controls[f"step_{i}"].value for i in range(3)] == [ACTIONS[i] for i in start["actions"][:3].argmax(-1)]
    assert set(box.presets) == {"turn left", "turn right", "forward", "no-op", "recorded"}
    assert box.outputs["start"].value == widgets.gif_bytes(start["video"] + 0.5)

    box.presets["turn left"].click()
    assert [box.controls[f"step_{i}"].value for i in range(3)] == ["TURN_LEFT"] * 3
    left = sample(box, seed=0)
    assert sample(box, seed=0) == left
    expected = widgets.sample_from_actions(prior, widgets.one_hot_actions(["TURN_LEFT"] * 3, ACTIONS),
                                           start["video"], seed=0)
    torch.testing.assert_close(box.video, expected)
    # the future continues the start clip: its first latent step is the start's own codes
    codes = prior.sample_codes(1, actions=widgets.one_hot_actions(["TURN_LEFT"] * 3, ACTIONS)[None],
                               prime=start["video"][None], prime_steps=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(codes[:, :1].flatten(1), prior.prime_codes(start["video"][None], 1, 1))
    torch.testing.assert_close(box.video, (prior.vqvae.decode(codes)[0] + 0.5).clamp(0, 1))
    box.presets["forward"].click()
    assert sample(box, seed=0) != left
    box.controls["step_2"].value = "TURN_LEFT"  # one step changed
    assert sample(box, seed=0) != left
    assert sample(box, seed=1) != sample(box, seed=0)


def test_action_explorer_checks_its_inputs(tiny_cfg):
    with pytest.raises(ValueError, match="not action-conditioned"):
        widgets.action_conditioned_explorer(make_prior(tiny_cfg))
    with pytest.raises(ValueError, match="not a multiple"):
        widgets.action_conditioned_explorer(make_prior(tiny_cfg, action_dim=12), action_names=["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="unknown action"):
        widgets.one_hot_actions(["JUMP"], ACTIONS)


def test_codebook_explorer_highlights_where_a_code_occurs(tiny_cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(tiny_cfg.vqvae).eval()
    video = clip()["video"]
    box = widgets.codebook_explorer(vq, video)
    codes = vq.encode(video[None])[0]
    assert torch.equal(box.codes, codes)
    used = codes.unique().tolist()
    where = box.outputs["where"].value
    for t, code in [(0, used[0]), (3, used[-1]), (1, used[len(used) // 2])]:
        box.controls["t"].value, box.controls["code"].value = t, code
        assert torch.equal(box.highlighted, codes[t] == code)
        assert f"{int((codes == code).sum())} of {codes.numel()}" in box.status.value
    assert box.outputs["where"].value != where
    assert box.outputs["decoded"].value == widgets.gif_bytes(widgets.decode_single_code(vq, used[len(used) // 2]))
    usage = box.outputs["usage"].value
    box.controls["code"].value = used[0]  # the histogram marks the picked code
    assert box.outputs["usage"].value != usage and usage[:4] == b"\x89PNG"
    counts = [int(label.split("(")[1].split()[0]) for label, _ in box.controls["code"].options]
    assert counts == sorted(counts, reverse=True) and sum(counts) == codes.numel()


def test_reconstruction_scrubber_prints_the_models_nmse(tiny_cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(tiny_cfg.vqvae)  # in training mode: the scrubber must not update the codebook
    before = vq.codebook.embeddings.clone()
    video = clip()["video"]
    box = widgets.reconstruction_scrubber(vq, video)
    assert vq.training and torch.equal(vq.codebook.embeddings, before)
    with torch.no_grad():
        nmse = vq.eval()(video[None])["nmse"].item()
    assert f"{nmse:.4f}" in box.nmse.value
    frame0 = box.outputs["frame"].value
    box.controls["t"].value = 5
    assert box.outputs["frame"].value != frame0
    assert "frame 5:" in box.nmse.value
    torch.testing.assert_close(box.result["frame_nmse"].mean(), torch.tensor(nmse))
    assert widgets.render_reconstruction(box.result, 5) == box.outputs["frame"].value


def test_snapshot_embeds_every_output(tiny_cfg):
    torch.manual_seed(0)
    box = widgets.reconstruction_scrubber(vg.VQVAE(tiny_cfg.vqvae).eval(), clip()["video"])
    page = widgets.snapshot(box).data
    assert page.count("<img") == len(box.outputs) and "data:image/png;base64," in page
