# Sourced by scripts/test: Debian packages the tests need (headless Chromium for the page tests,
# a CJK TrueType font to embed in label PDFs). Installed only when missing, as root, with apt.
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages: ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "Not installed (needs root and apt-get): ${need[*]}; the tests that need them are skipped." >&2
  fi
fi
