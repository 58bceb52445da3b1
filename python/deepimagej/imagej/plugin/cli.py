"""``deepimagej install-plugin IMAGEJ`` and ``deepimagej worker`` (started by the plugin)."""

from __future__ import annotations

from pathlib import Path

import click

from deepimagej.cli_errors import friendly_errors


@click.command("install-plugin")
@click.argument("imagej", type=click.Path(path_type=Path))
@friendly_errors
def install_plugin_cmd(imagej: Path) -> None:
    """Install the DeepImageJ plugin into the ImageJ or Fiji folder IMAGEJ (then restart ImageJ).

    The plugin's commands (Plugins › DeepImageJ, Plugins › U-Net) run their models in a worker
    of this Python environment.
    """
    from deepimagej.imagej.plugin.install import install_plugin

    installed = install_plugin(imagej)
    click.echo(f"installed {installed.jar}")
    click.echo(f"worker    {' '.join(installed.command)}  (recorded in {installed.config})")
    for warning in installed.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("next      restart ImageJ/Fiji: Plugins > DeepImageJ > DeepImageJ Run")


@click.command("worker")
@click.option("--shared-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of the memory-mapped image files (made by the plugin).")
def worker_cmd(shared_dir: Path) -> None:
    """Serve the DeepImageJ plugin of an ImageJ on stdin/stdout (started by the plugin itself)."""
    from deepimagej.imagej.plugin.worker import main

    raise SystemExit(main(["--shared-dir", str(shared_dir)]))

