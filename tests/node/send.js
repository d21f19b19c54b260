// Sends a plan of messages through the real, unmodified @segment/analytics-node SDK and prints
// what the SDK reported, as one JSON line. Used by tests/integration/test_sdk_node.py.
//
// usage: node send.js PLAN.json   where PLAN is
//   {"host": "http://127.0.0.1:PORT", "writeKey": "...", "flushAt": 15,
//    "messages": [{"call": "track", "params": {...}}, ...]}
// prints {"errors": [reason messages from the SDK's callbacks], "statuses": [HTTP statuses seen],
//         "callbacks": N}
'use strict'
const fs = require('fs')
const { Analytics } = require('@segment/analytics-node')

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const analytics = new Analytics({
    writeKey: plan.writeKey,
    host: plan.host,
    flushAt: plan.flushAt || 15,
    maxRetries: plan.maxRetries === undefined ? 10 : plan.maxRetries,
  })
  const errors = []
  const statuses = []
  let callbacks = 0
  analytics.on('http_response', (r) => statuses.push(r.status))
  for (const m of plan.messages) {
    analytics[m.call](m.params, (err) => {
      callbacks += 1
      if (err) errors.push(String(err.message || err))
    })
  }
  await analytics.closeAndFlush({ timeout: plan.timeoutMs || 60000 })
  process.stdout.write(JSON.stringify({ errors, statuses, callbacks }) + '\n')
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
