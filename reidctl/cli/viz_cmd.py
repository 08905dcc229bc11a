"""``reidctl explain``: the classifier block's confidence map of an image (paper Fig. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidctl.cli.common import (
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    check_output_file,
    errors_to_exit,
    load_extractor,
    out,
    print_json,
)


def _class_names(model: str) -> list[str] | None:
    """Identity names stored in a checkpoint; None for a backbone name."""
    from reidctl.model import load_checkpoint

    path = Path(model)
    return load_checkpoint(path).classes if path.is_file() else None


def explain(
    image: Annotated[Path, typer.Argument(help="Image to explain.")],
    out_path: Annotated[Path, typer.Option(
        "--out", "-o", help="PNG to write: image, confidence map, overlay.")],
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto", json_out: JsonOpt = False,
) -> None:
    """Draw the classifier block's confidence map of the image's best identity.

    Needs a trained checkpoint (``reidctl train``): the classifier block is what draws it.
    """
    with errors_to_exit():
        from reidctl.data.images import load_given
        from reidctl.viz import confidence_map, render_confidence_map

        load_given(image, (16, 16))  # before loading the model: fail fast on a typo, a pipe
        check_output_file(out_path, "--out")
        extractor, _ = load_extractor(model, device)
        classes = _class_names(model) if extractor.model.num_classes else None
        pixels, cmap, name, score = confidence_map(extractor, image, classes=classes)
        written = render_confidence_map(
            pixels, cmap, out_path, f"{image.name}: best class {name}, p={score:.3f}")
        if json_out:
            print_json({"image": str(image), "out": str(written), "class": name,
                        "score": round(score, 6), "model": extractor.fingerprint})
        else:
            out.print(f"wrote {written}: best class {name} (p={score:.3f}), "
                      f"model {extractor.fingerprint}")


def register(app: typer.Typer) -> None:
    """Adds the ``explain`` command to ``app``."""
    app.command("explain")(explain)
