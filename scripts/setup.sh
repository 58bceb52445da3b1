#!/usr/bin/env bash
# Install everything deepimagej needs on a fresh Debian/Ubuntu machine: idempotent.
#   - Debian packages: Java (JDK), ImageJ 1.x (libij-java), Xvfb, OpenSSH server (the remote-job tests),
#     xdotool and scrot (the plugin's menu test)
#   - a .venv with the package and its extras (tensorflow-cpu 2.21, onnxruntime, torch 2.13.0 CPU, ...)
#   - the small Java shim that registers the DeepImageJ commands in ImageJ
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/ij.jar ] || [ -n "${DEEPIMAGEJ_IJ_JAR:-}" ] || need_apt+=(libij-java)
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# the plugin tests drive ImageJ's menus and photograph them (tests/test_plugin.py)
command -v xdotool >/dev/null 2>&1 || need_apt+=(xdotool)
command -v scrot >/dev/null 2>&1 || need_apt+=(scrot)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "[setup] installing Debian packages: ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.deepimagej-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    echo "[setup] installing Python packages into .venv (first time: a few minutes)"
    .venv/bin/pip install -q --upgrade pip
    # torch first and pinned, so that nothing pulls a CUDA build
    .venv/bin/pip install -q "torch==2.13.0"
    # the exact versions of requirements.lock (pip constraints: only what the extras need is installed)
    .venv/bin/pip install -q -c requirements.lock -e ".[all]"
    touch "$stamp"
fi

# Java shim (compiled from source, never committed)
.venv/bin/python -m deepimagej.imagej.shim --build >/dev/null 2>&1 || echo "[setup] note: Java shim not built (ImageJ features unavailable)"
echo "[setup] ready"
