// Loaded into every test process by scripts/test.sh (`--import`). The runner kills a test file that
// is still running at its 240 s timeout and reports only "timed out", with nothing from inside the
// file. So a test file's process that is still alive after HANG_REPORT_MS (no file takes a third of
// that in CI) writes to stderr, which the runner shows as `#` lines, what keeps its event loop
// busy, and again a minute later: enough to tell a stuck fs or crypto request, a timer, a socket
// or a child process apart. It changes nothing else and never keeps the process alive.
import process from 'node:process';
import { setTimeout } from 'node:timers';

const HANG_REPORT_MS = Number(process.env.PORTCULLIS_TEST_HANG_REPORT_MS) || 150_000;

function report() {
  const resources = process.getActiveResourcesInfo();
  const counts = {};
  for (const r of resources) counts[r] = (counts[r] ?? 0) + 1;
  process.stderr.write(
    `hang-watch: ${process.argv[1] ?? '?'} still running ${Math.round(process.uptime())} s after start; ` +
    `pending: ${Object.entries(counts).map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}; ` +
    `memory rss ${Math.round(process.memoryUsage().rss / 1048576)} MiB\n`,
  );
}

// Only in the per-file child processes (the runner itself legitimately runs for minutes).
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  setTimeout(report, HANG_REPORT_MS).unref();
  setTimeout(report, HANG_REPORT_MS + 60_000).unref();
}
