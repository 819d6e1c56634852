"""``attnlab explain --model RUN --image INDEX_OR_PNG`` for the image experiments.

An image experiment's ``explain_image(config, run_folder, image, out)`` rebuilds its
data and hands it to :func:`explain_run`, which rebuilds the trained models from the
run's checkpoints (:func:`trained_models`), reads the image the user named
(:func:`read_image`: a test index or a PNG file) and draws every model's attention on it
with :func:`attnlab.interpret.explain_image`, one folder per model (:func:`explain_models`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.experiments._image_data import ImageSplits, Split
from attnlab.interpret.explain_image import explain_image
from attnlab.train import load_checkpoint

__all__ = ["explain_models", "explain_run", "read_image", "test_index", "trained_models"]

QueryPoints = Sequence[tuple[int, int]]


def _read_png(path: Path, size: tuple[int, int], channels: int) -> Tensor:
    from matplotlib.image import imread

    try:
        pixels = torch.as_tensor(imread(path, format="png"), dtype=torch.float32)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"--image {path} is not a readable PNG file ({err})") from None
    if pixels.dtype != torch.float32 or pixels.max() > 1:
        pixels = pixels / 255.0
    image = pixels[None] if pixels.ndim == 2 else pixels[..., :3].permute(2, 0, 1)
    if channels == 1:
        image = image.mean(0, keepdim=True)
    elif image.shape[0] == 1:
        image = image.expand(channels, -1, -1)
    if tuple(image.shape[-2:]) != size:  # the models were trained on this size only
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    return image.clamp(0.0, 1.0)


def test_index(image: str) -> int | None:
    """The test index ``--image`` names (``"12"`` -> 12), or None for a file name."""
    return int(image) if re.fullmatch(r"-?\d+", image.strip()) else None


def read_image(image: str, test: Split, *, size: tuple[int, int], channels: int) -> Tensor:
    """The image ``--image`` names: an index into the test split, or a PNG file.

    A PNG is read as float in [0, 1], made grey (the mean of R, G and B) for one-channel
    models, and resized bilinearly to the models' input size.

    Args:
        image: A test index (``"12"``) or the path of a PNG file.
        test: The run's test split.
        size: The models' input ``(H, W)``.
        channels: Their input channels.

    Returns:
        ``(channels, H, W)``: the test image as stored (uint8 or float), or the PNG as float.

    Raises:
        ValueError: An index outside the test split, or neither an index nor a PNG file.
    """
    index = test_index(image)
    if index is not None:
        if not 0 <= index < len(test):
            raise ValueError(
                f"--image {index} is outside the {len(test):,} test images; give 0..{len(test) - 1}"
                " or a PNG file"
            )
        return test.images[index]
    path = Path(image).expanduser()
    if not path.is_file() or path.suffix.lower() != ".png":
        raise ValueError(f"--image {image} is neither a test index nor a PNG file")
    return _read_png(path, size, channels)


def trained_models(
    names: Iterable[str], build: Callable[[str], nn.Module], checkpoints: Path
) -> dict[str, nn.Module]:
    """The run's seed-0 models with their best weights, in eval mode, on the CPU.

    Args:
        names: The models of the run, in order.
        build: ``build(name)`` makes an untrained model of that name.
        checkpoints: The run's ``checkpoints/`` folder (``NAME/seed0/best``).

    Returns:
        Name to model, for every model whose seed-0 checkpoint exists.

    Raises:
        ValueError: The run holds no trained model.
    """
    models = {}
    for name in names:
        best = checkpoints / name / "seed0" / "best"
        if best.is_dir():
            model = build(name)
            load_checkpoint(best, model=model)  # names and shapes checked first
            models[name] = model.eval()
    if not models:
        raise ValueError(f"{checkpoints} holds no trained model (NAME/seed0/best); finish the run")
    return models


def explain_models(
    models: dict[str, nn.Module],
    image: Tensor,
    data: ImageSplits,
    out: Path,
    *,
    class_names: Sequence[str] | None = None,
    query_points: QueryPoints | None = None,
) -> list[Path]:
    """Draw each model's attention on ``image`` into ``out/NAME/``; return the files written.

    Args:
        models: Name to trained model.
        image: ``(C, H, W)`` image, uint8 or float in [0, 1].
        data: The run's splits (the normalisation the models were trained with).
        out: The folder to draw into.
        class_names: Names of the classes for the predictions, or None.
        query_points: Query pixels ``(row, col)`` of non-local maps; None: the centre.

    Returns:
        The paths written, ``explain.json`` of each model last.
    """
    written = []
    for name, model in models.items():
        folder = out / name
        summary = explain_image(
            model,
            image,
            folder,
            prepare=lambda picture: data.prepare(torch.as_tensor(picture)[None]),
            class_names=class_names,
            query_points=query_points,
            title=name,
        )
        written += [folder / file for file in summary["files"].values()]
        written.append(folder / "explain.json")
    return written


def explain_run(
    folder: Path,
    image: str,
    out: Path,
    *,
    data: ImageSplits,
    names: Iterable[str],
    build: Callable[[str], nn.Module],
    query_points: Callable[[int], QueryPoints] | None = None,
) -> list[Path]:
    """Every trained model of a run on the image ``--image`` names (the ``explain_image`` hook).

    Args:
        folder: The run folder (its seed-0 checkpoints are loaded).
        image: A test index or a PNG file (made grey or RGB and resized to the test images').
        out: The new folder to draw into, one subfolder per model.
        data: The run's splits, rebuilt from its Config.
        names: The run's models, in order.
        build: ``build(name)`` makes an untrained model of that name.
        query_points: ``query_points(index)``: the query pixels of a non-local map for
            test image ``index`` (e.g. the centres of its items); a PNG gets the centre.

    Returns:
        The files written.
    """
    test = data.test.images
    picture = read_image(
        image, data.test, size=(test.shape[-2], test.shape[-1]), channels=test.shape[1]
    )
    models = trained_models(names, build, folder / "checkpoints")
    index = test_index(image)
    points = query_points(index) if query_points is not None and index is not None else None
    return explain_models(
        models, picture, data, out, class_names=data.classes or None, query_points=points
    )
