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


@click.command("imagej")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="ImageJ's home folder (its plugins folder inside; default: the deepimagej config folder's 'imagej').",
)
@friendly_errors
def imagej_cmd(images: tuple[Path, ...], folder: Path | None) -> None:
    """Open ImageJ's window with Plugins > DeepImageJ (Run, Explore, Install Model, Build Bundled Model)
    and Plugins > U-Net > U-Net Train, and the IMAGES given; returns when ImageJ is closed.

    ImageJ 1.x runs as its own program with this package's plugin installed in FOLDER; its
    commands run their models in a worker of this Python environment, as in your own Fiji.
    """
    import shutil
    import subprocess

    from deepimagej.errors import ImageJError
    from deepimagej.imagej import jvm, xvfb
    from deepimagej.imagej.plugin.install import imagej_home

    xvfb.require_display("`deepimagej imagej`")
    home, installed = imagej_home(folder)
    ij_jar = jvm.find_ij_jar()
    click.echo(
        f"ImageJ {ij_jar} with {installed.jar.name} in {home / 'plugins'}: Plugins > DeepImageJ, Plugins > U-Net"
    )
    java = shutil.which("java")
    if java is None:
        raise ImageJError("no Java found: install a Java runtime (Debian: default-jre)")
    command = [java, f"-Dplugins.dir={home}", "-jar", str(ij_jar), *map(str, images)]
    raise SystemExit(subprocess.run(command, check=False).returncode)


@click.command("worker")
@click.option(
    "--shared-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of the memory-mapped image files (made by the plugin).",
)
def worker_cmd(shared_dir: Path) -> None:
    """Serve the DeepImageJ plugin of an ImageJ on stdin/stdout (started by the plugin itself)."""
    from deepimagej.imagej.plugin.worker import main

    raise SystemExit(main(["--shared-dir", str(shared_dir)]))
