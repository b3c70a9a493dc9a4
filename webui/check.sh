#!/usr/bin/env bash
# The web console's part of the test suite (called by .ci/test): generated API types match the
# API, type check, unit tests, production build, then the end-to-end tests in Chromium against
# the real API (control/examples/console_demo.rs). Needs `bash webui/setup.sh` first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm run --silent check:api
npm run --silent check
npm test --silent
npm run --silent build
npm run --silent e2e
