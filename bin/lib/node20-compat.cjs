// cdktn-cli 0.24 bundles an undici that needs worker_threads.markAsUncloneable (Node 22.10+).
// On Node 20 the function is missing; it only marks objects as not structured-cloneable, so a
// no-op keeps the CLI working. Loaded with `node --require` by bin/cdktn; a no-op on Node 22+.
const workerThreads = require("node:worker_threads");
if (typeof workerThreads.markAsUncloneable !== "function") {
  workerThreads.markAsUncloneable = function markAsUncloneable() {};
}
