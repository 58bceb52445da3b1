"""Installing into ImageJ writes through deepimagej.outputs: whole files, nothing left half-done.

``install_plugin`` copies the jar with :func:`deepimagej.outputs.atomic_file` and
``install_model(overwrite=True)`` swaps a model folder with :func:`deepimagej.outputs.replace_path`
(issue 16: one atomic-write helper). Real jar (compiled with javac against ImageJ 1.x), real bundle.
"""

from __future__ import annotations

import shutil
import stat
import zipfile

import pytest

from deepimagej.errors import ImageJError


@pytest.fixture(scope="module")
def ij_jar():
    from deepimagej.imagej.jvm import find_ij_jar

    if shutil.which("javac") is None:
        pytest.skip("javac not installed (scripts/setup.sh installs it)")
    try:
        return find_ij_jar()
    except ImageJError as exc:
        pytest.skip(str(exc))


def test_install_plugin_replaces_the_jar_whole_and_refuses_cleanly(ij_jar, tmp_path):
    from deepimagej.imagej.plugin.install import CONFIG_NAME, PLUGIN_JAR, install_plugin

    plugins = tmp_path / "ImageJ" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / PLUGIN_JAR).write_bytes(b"an older jar")
    installed = install_plugin(tmp_path / "ImageJ", ij_jar=ij_jar)
    assert installed.jar == plugins / PLUGIN_JAR
    with zipfile.ZipFile(installed.jar) as zf:
        assert "plugins.config" in zf.namelist()
    assert stat.S_IMODE(installed.jar.stat().st_mode) & 0o044  # readable by ImageJ run as another user
    assert sorted(p.name for p in plugins.iterdir()) == sorted([PLUGIN_JAR, CONFIG_NAME])  # no .part

    blocked = tmp_path / "Fiji.app" / "plugins"
    (blocked / PLUGIN_JAR).mkdir(parents=True)  # the jar's name is taken by a folder
    with pytest.raises(ImageJError) as exc:
        install_plugin(blocked.parent, ij_jar=ij_jar)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"cannot install the plugin into {blocked}: ")
    assert PLUGIN_JAR in message and "is a folder" in message
    assert [p.name for p in blocked.iterdir()] == [PLUGIN_JAR] and (blocked / PLUGIN_JAR).is_dir()


def test_install_model_overwrite_swaps_the_folder(pancreatic_bundle, tmp_path):
    from deepimagej.imagej.models import install_model

    models = tmp_path / "models"
    first = install_model(pancreatic_bundle.root, models)
    marker = first.root / "stale.txt"
    marker.write_text("from the first install")
    second = install_model(pancreatic_bundle.root, models, overwrite=True)
    assert second.root == first.root and second.name == pancreatic_bundle.name
    assert not marker.exists()  # the old folder is gone, not merged
    assert [p.name for p in models.iterdir()] == [pancreatic_bundle.root.name]  # no staging or .old left
