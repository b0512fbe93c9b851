#!/usr/bin/env bash
# System packages of raygent's offline tools: espeak-ng (text to speech), tesseract with English and
# simplified Chinese data (OCR), a Chinese font (drawing text on images), redis-server (the
# MessageHub's Redis Streams log; its tests start one), chromium (the web UI's browser tests drive it
# through Playwright by its path, so Playwright never downloads a browser). Idempotent: installs only
# what is missing; skipped with a message where there is no apt-get or no root (then the tools
# that need a package report it by name when called).
set -euo pipefail

PACKAGES=(espeak-ng tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim fonts-wqy-microhei redis-server chromium)

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get here; skipped. Install yourself: ${PACKAGES[*]}"
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_system_deps: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "install_system_deps: not root; skipped. Run: sudo $0  (missing: ${missing[*]})"
        exit 0
    fi
fi

echo "install_system_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
