"""``deepimagej macro FILE.ijm [--image IN] [-o OUT]``: run an ImageJ macro headlessly.

The macro runs in the embedded ImageJ with the DeepImageJ commands registered. ``--image``
opens an image first (the macro's current image); ``-o`` saves the macro's active image at
the end as TIFF; ``--results`` saves the Results table as CSV. Errors are one line, no Java
stack traces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from deepimagej.errors import DeepImageJError


@click.command("macro")
@click.argument("macro_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--image", "-i", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Image to open before the macro runs (its current image).")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the macro's active image at the end to this TIFF file.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Save ImageJ's Results table at the end to this CSV file.")
@click.option("--arg", "args", multiple=True, metavar="NAME=VALUE",
              help="Define a macro variable before the macro runs (repeatable).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Stop the macro after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the macro's Log output.")
def macro_command(macro_file: Path, image: Path | None, output: Path | None, results: Path | None,
                  args: tuple[str, ...], timeout: float, quiet: bool) -> None:
    """Run an ImageJ macro (.ijm) in the embedded ImageJ with the DeepImageJ commands."""
    try:
        variables = dict(_parse_arg(a) for a in args)
        from deepimagej.imagej import start

        ij = start(timeout=timeout)
        res = ij.run_macro(macro_file, image=image, args=variables)
        if res.log and not quiet:
            click.echo(res.log.rstrip("\n"))
        if output is not None:
            if res.imageplus is None:
                raise click.ClickException("the macro left no image open; nothing to save with -o")
            save_tiff(res.imageplus, output)
            click.echo(f"saved {output}", err=True)
        if results is not None:
            res.results.to_csv(results, index=False)
            click.echo(f"saved {results}", err=True)
    except DeepImageJError as exc:
        raise click.ClickException(str(exc)) from None


def _parse_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: use NAME=VALUE", param_hint="--arg")
    key, value = text.split("=", 1)
    for conv in (int, float):
        try:
            return key.strip(), conv(value)
        except ValueError:
            pass
    return key.strip(), value


def save_tiff(imp, path: Path) -> None:
    """Save an ImagePlus as an ImageJ TIFF (calibration kept)."""
    from jpype import JClass

    path.parent.mkdir(parents=True, exist_ok=True)
    if not bool(JClass("ij.IJ").saveAsTiff(imp, str(path))):
        raise click.ClickException(f"could not write {path}")


macro = macro_command

if __name__ == "__main__":  # pragma: no cover
    sys.exit(macro_command())
