"""Interactive explorers (ipywidgets) for a trained VQ-VAE and prior.

Four functions, each returning an ``ipywidgets.VBox`` to display in Jupyter or Colab:

- :func:`frame_conditioned_explorer`: pick (a dataset clip) or draw a first frame, set temperature, top-k
  and seed, and sample the continuation from a frame-conditioned prior;
- :func:`action_conditioned_explorer`: edit an action sequence (one dropdown per step, or a preset) and
  sample the future an action-conditioned prior predicts for it;
- :func:`codebook_explorer`: which codes a video uses, where, what one code decodes to, and the usage
  histogram;
- :func:`reconstruction_scrubber`: original | reconstruction | error, frame by frame, with the NMSE.

Every box carries its parts as attributes, so that code (tests, a chapter's recorded example) can set
the controls and read the outputs: ``box.controls`` (name -> control widget), ``box.outputs``
(name -> ``ipywidgets.Image``), ``box.status`` (a ``Label``) and, for the samplers, ``box.button``.
The work is done by plain functions (:func:`sample_from_frame`, :func:`sample_from_actions`,
:func:`render_code_grid`, :func:`reconstruct`, ...) that the widgets call. :func:`snapshot` turns a box's
current outputs into static HTML, what a built book shows where no kernel runs.

Videos in the outputs are GIFs, stills PNGs (``Image.value`` holds the file's bytes). Sampling runs only
when the Sample button is clicked; a lite prior takes seconds on a CPU.
"""
from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable, Sequence

import ipywidgets as W
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import HTML
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from .viz import tile, to_uint8

SCALE = 2  # outputs are shown at twice the model's resolution (nearest neighbour)
PRESET_ACTIONS = {"turn left": "TURN_LEFT", "turn right": "TURN_RIGHT", "forward": "MOVE_FORWARD", "no-op": "NOOP"}
VIZDOOM_HGS_ACTIONS = ["NOOP", "TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"]  # videogen_lite.data.collect_vizdoom's


# ---------------------------------------------------------------------------------------------------
# pictures as bytes


def upscale(frames: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Nearest-neighbour ``[..., H, W, C] -> [..., scale*H, scale*W, C]``."""
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def _pil(frame: np.ndarray) -> Image.Image:
    return Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)


def png_bytes(frame: np.ndarray) -> bytes:
    """uint8 ``[H, W, C]`` (C = 1 or 3) -> a PNG file's bytes."""
    buffer = io.BytesIO()
    _pil(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def gif_bytes(video: torch.Tensor | np.ndarray, fps: float = 4, scale: int = SCALE) -> bytes:
    """Float ``[C, T, H, W]`` or ``[N, C, T, H, W]`` in [0, 1] (N side by side) -> a looping GIF's bytes."""
    frames = upscale(tile(video), scale)  # [T, scale*H, scale*(N*W + gaps), C]
    images = [_pil(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0)
    return buffer.getvalue()


def figure_png(figure: Figure, dpi: int = 80) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def snapshot(box: W.VBox) -> HTML:
    """The box's current output images and status as static HTML (what a page without a kernel can show)."""
    figures = []
    for name, image in box.outputs.items():
        data = base64.b64encode(image.value).decode("ascii")
        figures.append(
            f'<figure style="display:inline-block;margin:0 12px 8px 0;vertical-align:top">'
            f'<img src="data:image/{image.format};base64,{data}" alt="{html.escape(name)}" '
            f'style="image-rendering:pixelated"><figcaption>{html.escape(name)}</figcaption></figure>'
        )
    status = f"<p><code>{html.escape(box.status.value)}</code></p>" if box.status.value else ""
    return HTML("<div>" + "".join(figures) + status + "</div>")


# ---------------------------------------------------------------------------------------------------
# shared pieces


def _as_model(model):
    """A model, a lite checkpoint's name (``vg.pretrained``) or a path/run folder (``vg.load``)."""
    if not isinstance(model, str):
        return model
    from .io import load
    from .pretrained import manifest, pretrained

    try:
        if model in manifest()["checkpoints"]:
            return pretrained(model)
    except FileNotFoundError:
        pass
    return load(model)


def _as_video(video, channels: int) -> torch.Tensor:
    """A dataset item ``dict(video=...)`` or a video ``[C, T, H, W]`` / ``[1, C, T, H, W]`` -> ``[C, T, H, W]``."""
    video = video["video"] if isinstance(video, dict) else video
    if not isinstance(video, torch.Tensor) or not video.is_floating_point():
        raise TypeError(f"expected a float video tensor [C, T, H, W] in [-0.5, 0.5] (or a dataset item with "
                        f"'video'), got {type(video).__name__}")
    if video.dim() == 5 and video.shape[0] == 1:
        video = video[0]
    if video.dim() != 4 or video.shape[0] != channels:
        raise ValueError(f"expected one video [C, T, H, W] with C = {channels} (the model's channels), "
                         f"got shape {list(video.shape)}")
    return video


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _sampling_controls(n_codes: int) -> dict:
    style = {"description_width": "90px"}
    return {
        "temperature": W.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature", style=style),
        "top_k": W.IntSlider(value=0, min=0, max=n_codes, description="top-k (0: all)", style=style),
        "seed": W.IntText(value=0, description="seed", style=style, layout=W.Layout(width="200px")),
    }


def _on_click(button: W.Button, status: W.Label, work: Callable[[], str]) -> None:
    """Run ``work`` when ``button`` is clicked, with "sampling..." shown meanwhile and the outcome after."""

    def handler(_):
        button.disabled = True
        status.value = "sampling..."
        started = time.perf_counter()
        try:
            status.value = f"{work()} ({time.perf_counter() - started:.1f} s)"
        except Exception as error:  # shown in the widget, and raised for the kernel's log
            status.value = f"error: {error}"
            raise
        finally:
            button.disabled = False

    button.on_click(handler)


def _describe(seed: int, temperature: float, top_k: int) -> str:
    return f"seed {seed}, temperature {temperature:.2f}, top-k {top_k or 'all'}"


# ---------------------------------------------------------------------------------------------------
# frame-conditioned sampling


def drawn_frame(cells: np.ndarray, channels: int, resolution: int) -> torch.Tensor:
    """A drawing on a ``G x G`` grid (bool ``cells``) -> a frame ``[C, 1, H, W]`` in [-0.5, 0.5]: drawn cells
    white, the rest black, each cell ``H / G`` pixels wide."""
    cells = torch.as_tensor(np.asarray(cells, dtype=np.float32))[None, None]  # [1, 1, G, G]
    frame = F.interpolate(cells, size=(resolution, resolution), mode="nearest")[0]  # [1, H, W]
    return (frame - 0.5).expand(channels, -1, -1)[:, None].clone()  # [C, 1, H, W]


def cells_from_frame(frame: torch.Tensor, grid: int, threshold: float = 0.15) -> np.ndarray:
    """The inverse of :func:`drawn_frame`, roughly: cells whose mean brightness (in [0, 1]) exceeds ``threshold``."""
    brightness = (frame[:, 0] + 0.5).mean(0)[None, None]  # [1, 1, H, W]
    return (F.adaptive_avg_pool2d(brightness, grid)[0, 0] > threshold).numpy()


def sample_from_frame(prior, frame: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                      seed: int = 0) -> torch.Tensor:
    """One continuation of ``frame [C, F, H, W]`` in [-0.5, 0.5] (F = ``prior.cfg.n_cond_frames``; a single
    frame is repeated) -> video ``[C, T, H, W]`` in [0, 1]. ``top_k = 0`` keeps every code."""
    frames = frame.expand(-1, prior.cfg.n_cond_frames, -1, -1) if frame.shape[1] == 1 else frame
    video = prior.sample(1, frames=frames[None], temperature=temperature, top_k=top_k or None,
                         generator=_generator(seed))
    return video[0]


def frame_conditioned_explorer(prior, dataset=None, grid: int = 8) -> W.VBox:
    """Sample continuations of a first frame from a frame-conditioned prior (``prior.cfg.frame_cond``).

    The first frame comes from a clip of ``dataset`` (default: the Moving MNIST test split at the prior's
    clip size) or from a drawing on a ``grid x grid`` board of toggle buttons ("copy clip" puts the current
    clip's first frame on the board to edit). Controls: ``source``, ``clip``, ``temperature``, ``top_k``,
    ``seed``; outputs: ``condition`` (PNG of the first frame) and ``sample`` (GIF of the sampled video).
    """
    prior = _as_model(prior)
    if not prior.cfg.frame_cond:
        raise ValueError("this prior is not frame-conditioned (prior.cfg.frame_cond is false): use "
                         "action_conditioned_explorer for an action-conditioned prior, or sample it directly")
    vq = prior.vqvae.cfg
    if dataset is None:
        from .data import MovingMNIST

        if vq.channels != 1:
            raise ValueError(f"the default dataset is Moving MNIST (1 channel) but this prior's videos have "
                             f"{vq.channels} channels: pass dataset=, e.g. the test split of its training data")
        dataset = MovingMNIST("test", sequence_length=vq.sequence_length, resolution=vq.resolution)
    n_cond = prior.cfg.n_cond_frames

    controls = dict(
        source=W.ToggleButtons(options=["dataset clip", "drawing"], value="dataset clip", description="first frame"),
        clip=W.IntSlider(value=0, min=0, max=len(dataset) - 1, description="clip"),
        **_sampling_controls(prior.n_codes),
    )
    cell_size = "22px"
    cells = [W.ToggleButton(value=False, layout=W.Layout(width=cell_size, height=cell_size, padding="0"))
             for _ in range(grid * grid)]
    board = W.GridBox(cells, layout=W.Layout(grid_template_columns=f"repeat({grid}, {cell_size})", grid_gap="1px"))
    copy_button, clear_button = W.Button(description="copy clip"), W.Button(description="clear")
    button, status = W.Button(description="Sample", button_style="primary"), W.Label()
    outputs = {"condition": W.Image(format="png"), "sample": W.Image(format="gif")}

    def board_cells() -> np.ndarray:
        return np.array([c.value for c in cells]).reshape(grid, grid)

    def first_frames() -> torch.Tensor:  # [C, F, H, W] in [-0.5, 0.5]
        if controls["source"].value == "drawing":
            return drawn_frame(board_cells(), vq.channels, vq.resolution)
        return _as_video(dataset[controls["clip"].value], vq.channels)[:, :n_cond]

    def show_condition(*_):
        outputs["condition"].value = png_bytes(upscale(to_uint8(first_frames()[:, 0:1] + 0.5)[0, 0]))

    def copy_clip(_):
        clip_frame = _as_video(dataset[controls["clip"].value], vq.channels)[:, :1]
        for cell, on in zip(cells, cells_from_frame(clip_frame, grid).flatten()):
            cell.value = bool(on)
        controls["source"].value = "drawing"

    def clear(_):
        for cell in cells:
            cell.value = False

    def sample() -> str:
        c = {name: controls[name].value for name in ("temperature", "top_k", "seed")}
        video = sample_from_frame(prior, first_frames(), c["temperature"], c["top_k"], c["seed"])
        outputs["sample"].value = gif_bytes(video)
        box.video = video
        where = "the drawing" if controls["source"].value == "drawing" else f"clip {controls['clip'].value}"
        return f"sampled from {where}, {_describe(c['seed'], c['temperature'], c['top_k'])}"

    for name in ("source", "clip"):
        controls[name].observe(show_condition, names="value")
    for cell in cells:
        cell.observe(show_condition, names="value")
    copy_button.on_click(copy_clip)
    clear_button.on_click(clear)
    _on_click(button, status, sample)
    show_condition()

    drawing = W.VBox([W.HTML("<b>draw</b> (used when the first frame is <i>drawing</i>)"), board,
                      W.HBox([copy_button, clear_button])])
    pictures = W.HBox([W.VBox([W.HTML("first frame"), outputs["condition"]]),
                       W.VBox([W.HTML("sampled video"), outputs["sample"]])])
    box = W.VBox([controls["source"], W.HBox([W.VBox([controls["clip"], controls["temperature"], controls["top_k"],
                                                     controls["seed"], W.HBox([button, status])]), drawing]),
                  pictures])
    box.controls, box.outputs, box.button, box.status, box.video = controls, outputs, button, status, None
    box.cells, box.board_buttons = cells, {"copy clip": copy_button, "clear": clear_button}
    return box


# ---------------------------------------------------------------------------------------------------
# action-conditioned sampling


def _names(action_names) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in action_names]


def one_hot_actions(choices: Sequence[str], action_names: Sequence[str]) -> torch.Tensor:
    """Action names, one per step -> float one-hot ``[steps, A]`` over ``action_names``."""
    names = _names(action_names)
    unknown = [c for c in choices if c not in names]
    if unknown:
        raise ValueError(f"unknown action(s) {unknown}: expected names from {names}")
    return F.one_hot(torch.tensor([names.index(c) for c in choices]), len(names)).float()


def sample_from_actions(prior, actions: torch.Tensor, frame: torch.Tensor | None = None, temperature: float = 1.0,
                        top_k: int = 0, seed: int = 0, prime_steps: int = 1) -> torch.Tensor:
    """The future for ``actions [steps, A]`` (``steps * A = prior.cfg.action_dim``) of the clip ``frame
    [C, T', H, W]`` -> video ``[C, T, H, W]`` in [0, 1].

    With a clip, its first ``prime_steps`` latent time steps (its first ``prime_steps * dt`` frames) are the
    real codes and the rest is sampled (priming), so the sample continues that start; a frame-conditioned
    prior also gets its first frame(s). Without a clip the prior samples from nothing but the actions."""
    frames = frame[None, :, : prior.cfg.n_cond_frames] if prior.cfg.frame_cond else None
    prime = frame[None] if frame is not None and prime_steps else None
    video = prior.sample(1, frames=frames, actions=actions[None], temperature=temperature, top_k=top_k or None,
                         generator=_generator(seed), prime=prime, prime_steps=prime_steps if prime is not None else None)
    return video[0]


def action_conditioned_explorer(prior, start_clip=None, action_names: Sequence[str] | None = None) -> W.VBox:
    """Choose an action for each step and see the future an action-conditioned prior samples for them.

    ``start_clip``: a dataset item ``dict(video [C, T, H, W], actions [T, A])`` (e.g. a ViZDoom test clip):
    its recorded actions are the starting sequence (preset "recorded"), its video is shown beside the samples,
    and the samples continue its first latent time step (its first 4 frames at 4x time downsampling, primed
    as real codes; with a frame-conditioned prior its first frame(s) condition them too). ``action_names``: the
    dataset's (``HDF5Dataset(...).attrs["action_names"]``); default the ViZDoom HGS names. Controls:
    ``step_0`` ... ``step_{S-1}`` (dropdowns), ``temperature``, ``top_k``, ``seed``; presets in
    ``box.presets``; outputs: ``start`` (GIF of the clip, if given) and ``sample``.
    """
    prior = _as_model(prior)
    if prior.cfg.action_dim <= 0:
        raise ValueError("this prior is not action-conditioned (prior.cfg.action_dim = 0): use "
                         "frame_conditioned_explorer, or train a prior with prior.action_dim set")
    names = _names(action_names if action_names is not None else VIZDOOM_HGS_ACTIONS)
    size = len(names)
    if prior.cfg.action_dim % size:
        raise ValueError(f"prior.cfg.action_dim = {prior.cfg.action_dim} is not a multiple of the {size} action "
                         f"names {names}: pass the dataset's action_names")
    steps = prior.cfg.action_dim // size
    vq = prior.vqvae.cfg
    video = recorded = None
    if start_clip is not None:
        video = _as_video(start_clip, vq.channels)
        actions = start_clip.get("actions") if isinstance(start_clip, dict) else None
        if actions is not None and actions.shape[-1] == size and actions.shape[0] >= steps:
            recorded = [names[i] for i in actions[:steps].argmax(-1).tolist()]
    if prior.cfg.frame_cond and video is None:
        raise ValueError("this prior is also frame-conditioned: pass start_clip (its first frame conditions the samples)")

    labels = [(name.replace("_", " ").lower(), name) for name in names]
    step_controls = {f"step_{i}": W.Dropdown(options=labels, value=recorded[i] if recorded else names[0],
                                             description=str(i), layout=W.Layout(width="160px"),
                                             style={"description_width": "20px"})
                     for i in range(steps)}
    controls = dict(**step_controls, **_sampling_controls(prior.n_codes))
    sequence = {label: [name] * steps for label, name in PRESET_ACTIONS.items() if name in names}
    if recorded:
        sequence["recorded"] = recorded
    presets = {label: W.Button(description=label, layout=W.Layout(width="100px")) for label in sequence}
    button, status = W.Button(description="Sample", button_style="primary"), W.Label()
    outputs = {"start": W.Image(format="gif", value=gif_bytes(video + 0.5))} if video is not None else {}
    outputs["sample"] = W.Image(format="gif")

    def choices() -> list[str]:
        return [step_controls[f"step_{i}"].value for i in range(steps)]

    def set_choices(values: Sequence[str]) -> None:
        for i, value in enumerate(values):
            step_controls[f"step_{i}"].value = value

    def sample() -> str:
        c = {name: controls[name].value for name in ("temperature", "top_k", "seed")}
        sampled = sample_from_actions(prior, one_hot_actions(choices(), names), video, c["temperature"],
                                      c["top_k"], c["seed"])
        outputs["sample"].value = gif_bytes(sampled)
        box.video = sampled
        return f"sampled for the {steps} actions above, {_describe(c['seed'], c['temperature'], c['top_k'])}"

    for label, values in sequence.items():
        presets[label].on_click(lambda _, values=values: set_choices(values))
    _on_click(button, status, sample)

    rows = [W.HBox(list(step_controls.values())[i : i + 5]) for i in range(0, steps, 5)]
    captions = {"start": "start clip (recorded actions)",
                "sample": "sampled future (continues the start's first frames)" if video is not None else "sample"}
    pictures = W.HBox([W.VBox([W.HTML(captions[name]), image]) for name, image in outputs.items()])
    box = W.VBox([W.HTML(f"<b>actions</b>, one per step ({steps} steps)"), *rows,
                  W.HBox([W.HTML("presets:"), *presets.values()]),
                  controls["temperature"], controls["top_k"], W.HBox([controls["seed"], button, status]), pictures])
    box.controls, box.outputs, box.presets, box.button, box.status = controls, outputs, presets, button, status
    box.action_names, box.video = names, None
    return box


# ---------------------------------------------------------------------------------------------------
# the codebook


def code_positions(codes: torch.Tensor, code: int) -> torch.Tensor:
    """Where ``code`` occurs: bool, the shape of ``codes`` (``[t, h, w]``)."""
    return codes == code


def code_colours(n_codes: int) -> np.ndarray:
    """One RGB colour per code, uint8 ``[n_codes, 3]`` (viridis over the code index)."""
    return (matplotlib.colormaps["viridis"](np.linspace(0, 1, n_codes))[:, :3] * 255).astype(np.uint8)


def render_code_grid(video: torch.Tensor, codes: torch.Tensor, t: int, code: int, n_codes: int) -> bytes:
    """PNG: the first frame of latent step ``t`` with the cells where ``code`` occurs tinted red | the code grid
    ``codes[t]`` in colour (one colour per code, dimmed), with ``code``'s cells red.

    ``video [C, T, H, W]`` in [-0.5, 0.5], ``codes [t, h, w]``."""
    c, frames, height, width = video.shape
    _, h, w = codes.shape
    here = code_positions(codes[t], code).numpy()  # [h, w]
    grid = code_colours(n_codes)[codes[t].numpy()] // 2  # [h, w, 3], dimmed
    grid[here] = (255, 40, 40)
    grid = grid.repeat(height // h, 0).repeat(width // w, 1)  # [H, W, 3]
    frame = to_uint8(video[:, t * (frames // codes.shape[0])][:, None] + 0.5)[0, 0]  # [H, W, C]
    frame = np.repeat(frame, 3, axis=-1) if c == 1 else frame
    mask = here.repeat(height // h, 0).repeat(width // w, 1)
    frame[mask] = (frame[mask] * 0.4 + np.array([255, 40, 40]) * 0.6).astype(np.uint8)
    gap = np.full((height, 2, 3), 255, np.uint8)
    return png_bytes(upscale(np.concatenate([frame, gap, grid], axis=1)))


@torch.no_grad()
def decode_single_code(vqvae, code: int) -> torch.Tensor:
    """What one code means: the decoding of a latent grid filled with ``code`` -> video ``[C, T, H, W]`` in [0, 1]."""
    codes = torch.full((1, *vqvae.cfg.latent_shape), int(code), dtype=torch.long,
                       device=vqvae.codebook.embeddings.device)
    return (vqvae.decode(codes)[0] + 0.5).clamp(0, 1).cpu()


def usage_histogram(codes: torch.Tensor, n_codes: int, code: int | None = None) -> bytes:
    """PNG of how often each code occurs in ``codes``, codes sorted from most to least used; ``code`` marked
    in red."""
    counts = torch.bincount(codes.flatten(), minlength=n_codes).numpy()
    order = np.argsort(-counts, kind="stable")
    figure = Figure(figsize=(4.5, 2.2))
    ax = figure.subplots()
    ax.bar(np.arange(n_codes), counts[order], width=1.0, color="tab:blue")
    if code is not None:
        rank = int(np.flatnonzero(order == code)[0])
        ax.axvline(rank, color="tab:red", lw=1.5)
        ax.annotate(f"code {code}: {counts[code]}", (rank, counts[code]), xytext=(8, 12), textcoords="offset points",
                    color="tab:red", fontsize=9)
    ax.set_xlabel("codes, most used first")
    ax.set_ylabel("positions")
    ax.set_title(f"{(counts > 0).sum()} of {n_codes} codes used", fontsize=10)
    return figure_png(figure)


def codebook_explorer(vqvae, video) -> W.VBox:
    """Which codes ``video`` (``[C, T, H, W]`` in [-0.5, 0.5], or a dataset item) uses, where, and what one
    code decodes to.

    Controls: ``t`` (latent time step) and ``code`` (a dropdown, most used first). Outputs: ``where``
    (frame with the code's cells tinted | the colour-coded code grid at ``t``), ``decoded`` (GIF of a grid
    filled with the code) and ``usage`` (histogram). ``box.codes`` holds the codes ``[t, h, w]``,
    ``box.highlighted`` the bool ``[h, w]`` mask of the picked code at the shown ``t``.
    """
    vqvae = _as_model(vqvae)
    video = _as_video(video, vqvae.cfg.channels)
    with torch.no_grad():
        codes = vqvae.encode(video[None].to(vqvae.codebook.embeddings.device))[0].cpu()  # [t, h, w]
    n_codes = vqvae.cfg.n_codes
    counts = torch.bincount(codes.flatten(), minlength=n_codes)
    order = sorted(range(n_codes), key=lambda k: (-int(counts[k]), k))
    controls = {
        "t": W.IntSlider(value=0, min=0, max=codes.shape[0] - 1, description="latent i_t"),
        "code": W.Dropdown(options=[(f"{k} ({int(counts[k])} positions)", k) for k in order], value=order[0],
                           description="code"),
    }
    outputs = {"where": W.Image(format="png"), "decoded": W.Image(format="gif"), "usage": W.Image(format="png")}
    status = W.Label()
    decoded_cache: dict[int, bytes] = {}

    def update(*_):
        t, code = controls["t"].value, controls["code"].value
        outputs["where"].value = render_code_grid(video, codes, t, code, n_codes)
        if code not in decoded_cache:
            decoded_cache[code] = gif_bytes(decode_single_code(vqvae, code))
        outputs["decoded"].value = decoded_cache[code]
        outputs["usage"].value = usage_histogram(codes, n_codes, code)
        box.highlighted = code_positions(codes[t], code)
        status.value = (f"code {code}: {int(box.highlighted.sum())} of {codes[t].numel()} cells at i_t = {t}, "
                        f"{int(counts[code])} of {codes.numel()} in the whole video")

    captions = {"where": "where (frame | code grid)", "decoded": "a grid of only this code, decoded",
                "usage": "code usage in this video"}
    box = W.VBox([W.HBox([controls["t"], controls["code"]]), status,
                  W.HBox([W.VBox([W.HTML(captions[name]), image]) for name, image in outputs.items()])])
    box.controls, box.outputs, box.status, box.codes = controls, outputs, status, codes
    for control in controls.values():
        control.observe(update, names="value")
    update()
    return box


# ---------------------------------------------------------------------------------------------------
# reconstructions


@torch.no_grad()
def reconstruct(vqvae, video: torch.Tensor) -> dict:
    """Run ``video [C, T, H, W]`` in [-0.5, 0.5] through the VQ-VAE (in eval mode: the codebook is not
    updated) -> ``dict(original, recon)`` float ``[C, T, H, W]`` in [0, 1], ``error`` ``[T, H, W]`` (absolute,
    averaged over channels), ``nmse`` (the model's, whole clip) and ``frame_nmse`` ``[T]``."""
    was_training = vqvae.training
    vqvae.eval()
    try:
        out = vqvae(video[None].to(vqvae.codebook.embeddings.device))
    finally:
        vqvae.train(was_training)
    recon = out["recon"][0].cpu()
    frame_nmse = ((recon - video) ** 2).mean(dim=(0, 2, 3)) / vqvae.data_variance.cpu()  # [T]
    return {"original": video + 0.5, "recon": (recon + 0.5).clamp(0, 1), "error": (recon - video).abs().mean(0),
            "nmse": float(out["nmse"]), "frame_nmse": frame_nmse}


def error_colour_bar(height: int, vmax: float, width: int = 58) -> np.ndarray:
    """A labelled vertical colour bar for the error heat map, uint8 ``[height, width, 3]``: magma from 0
    (bottom) to ``vmax`` (top), the two values written beside it and ``|error|`` between them."""
    image = Image.new("RGB", (width, height), "white")
    top, bottom = 6, height - 6
    ramp = (matplotlib.colormaps["magma"](np.linspace(1, 0, bottom - top))[:, :3] * 255).astype(np.uint8)
    image.paste(Image.fromarray(np.repeat(ramp[:, None], 10, axis=1)), (4, top))
    draw = ImageDraw.Draw(image)
    draw.text((17, top), f"{vmax:.2f}", fill="black")
    draw.text((17, (top + bottom) // 2 - 5), "|error|", fill="black")
    draw.text((17, bottom - 11), "0", fill="black")
    return np.asarray(image)


def render_reconstruction(result: dict, t: int) -> bytes:
    """PNG of frame ``t``: original | reconstruction | absolute error (magma, scaled to the clip's largest error,
    with a colour bar in pixel units of [0, 1])."""
    frames = to_uint8(torch.stack([result["original"][:, t], result["recon"][:, t]], 0)[:, :, None])[:, 0]
    frames = np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames  # [2, H, W, 3]
    largest = float(result["error"].max())
    error = (result["error"][t] / max(largest, 1e-8)).numpy()
    heat = (matplotlib.colormaps["magma"](error)[..., :3] * 255).astype(np.uint8)  # [H, W, 3]
    gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
    panels = upscale(np.concatenate([frames[0], gap, frames[1], gap, heat], axis=1))
    return png_bytes(np.concatenate([panels, error_colour_bar(panels.shape[0], largest)], axis=1))


def reconstruction_scrubber(vqvae, video) -> W.VBox:
    """Original | reconstruction | error of ``video`` (``[C, T, H, W]`` in [-0.5, 0.5], or a dataset item),
    frame by frame. Control: ``t`` (with a play button); output: ``frame`` (PNG); ``box.nmse`` (a label)
    prints the clip's NMSE (the model's own, ``vqvae(x)["nmse"]``) and frame ``t``'s."""
    vqvae = _as_model(vqvae)
    video = _as_video(video, vqvae.cfg.channels)
    result = reconstruct(vqvae, video)
    frames = video.shape[1]
    controls = {"t": W.IntSlider(value=0, min=0, max=frames - 1, description="frame")}
    play = W.Play(value=0, min=0, max=frames - 1, interval=250)
    W.jslink((play, "value"), (controls["t"], "value"))
    outputs = {"frame": W.Image(format="png")}
    nmse, status = W.HTML(), W.Label()

    def update(*_):
        t = controls["t"].value
        outputs["frame"].value = render_reconstruction(result, t)
        nmse.value = (f"NMSE (whole clip) = <b>{result['nmse']:.4f}</b> &nbsp; frame {t}: "
                      f"{float(result['frame_nmse'][t]):.4f}")
        status.value = f"frame {t} of {frames}: original | reconstruction | |error|"

    controls["t"].observe(update, names="value")
    update()
    box = W.VBox([W.HBox([play, controls["t"]]), nmse, outputs["frame"], status])
    box.controls, box.outputs, box.status, box.nmse, box.result = controls, outputs, status, nmse, result
    return box
