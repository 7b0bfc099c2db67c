#!/bin/sh
# Runs inside the image (chroot) after the venv and the user exist.
set -eu
# A matplotlib that never tries to open a display.
mkdir -p /etc/matplotlib
echo "backend: Agg" > /etc/matplotlib/matplotlibrc
# C.UTF-8 is built in; make it the default so Python and less agree on encoding.
echo "LANG=C.UTF-8" > /etc/default/locale
# The user may administer their own workstation.
echo "scientist ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/scientist
chmod 0440 /etc/sudoers.d/scientist
