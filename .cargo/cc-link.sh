#!/bin/sh
# The linker driver of .cargo/config.toml: `cc` with mold when mold is installed (links take a
# fraction of GNU ld's time; `apt-get install mold`, done by dpdk-build/setup.sh), else plain `cc`.
if command -v mold >/dev/null 2>&1; then
    exec cc -fuse-ld=mold "$@"
fi
exec cc "$@"
