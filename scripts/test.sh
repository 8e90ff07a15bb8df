#!/usr/bin/env bash
# Runs every test file under test/ (the shell expands the glob: node --test alone finds no .ts).
# Extra arguments are passed to node (e.g. --test-name-pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s globstar nullglob
files=(test/**/*.test.ts)
if ((${#files[@]} == 0)); then echo "no test files found" >&2; exit 1; fi
# hang-watch: a test file still running after 150 s says what keeps it alive (the runner kills it
# at 240 s and reports nothing from inside it).
exec node --import tsx --import ./src/loader/register.mjs --import ./test/helpers/hang-watch.mjs --test --test-concurrency=2 --test-timeout=240000 "$@" "${files[@]}"
