#!/usr/bin/env node
// Sends a scenario through a vendor's own Node.js server library, configured as its
// README says with only the host and the write key changed, and prints what happened.
//
//   node send.js segment|rudderstack COLLECTOR_URL WRITE_KEY SCENARIO.json
//
// SCENARIO.json: {"batches": [[{"call": "track", "params": {...}}, ...], ...]}. Each
// inner list goes through a client of its own that is flushed and closed before the
// next one starts, so each becomes its own upload(s). `params` are Segment's call
// parameters (userId, event, properties, traits, name, groupId, previousId,
// timestamp, messageId); both libraries take them as they are.
//
// Prints one JSON object: the library's name and version as it put them on the wire,
// every HTTP attempt it made (url, status) and, per messageId, whether the library
// reported it delivered or the error it gave up with.
'use strict'

const fs = require('fs')
const zlib = require('zlib')

function report() {
  return { library: null, attempts: [], delivered: [], failed: {} }
}

// A call's callback, and a promise that settles when the library has called it.
function noteCallback(out, messageId) {
  let callback
  const called = new Promise((resolve) => {
    callback = (err) => {
      if (err) out.failed[messageId] = String(err.message || err)
      else out.delivered.push(messageId)
      resolve()
    }
  })
  return { callback, called }
}

function sendAll(client, calls, out, prepare = (params) => params) {
  return calls.map(({ call, params }) => {
    const { callback, called } = noteCallback(out, params.messageId)
    client[call](prepare(params), callback)
    return called
  })
}

async function sendSegment(url, writeKey, calls, out) {
  const { Analytics } = require('@segment/analytics-node')
  const analytics = new Analytics({ writeKey, host: url })
  analytics.on('http_request', (request) => {
    const body = JSON.parse(request.body)
    out.library = out.library || body.batch[0].context.library
    out.attempts.push({ url: request.url, status: null,
      contentType: request.headers['Content-Type'], contentEncoding: null })
  })
  analytics.on('http_response', (response) => {
    out.attempts.find((a) => a.status === null).status = response.status
  })
  const called = sendAll(analytics, calls, out)
  await analytics.closeAndFlush()
  await Promise.all(called)
}

async function sendRudderStack(url, writeKey, calls, out) {
  const Analytics = require('@rudderstack/rudder-sdk-node')
  // errorHandler is not optional in practice: without it a refused upload (any 4xx)
  // rejects a flush nobody awaits, and Node ends the process on the unhandled rejection.
  const client = new Analytics(writeKey, { dataPlaneUrl: url, errorHandler: () => {} })
  // Observe (not change) each attempt on the library's own axios instance: retries by
  // axios-retry pass through request interceptors again.
  client.axiosInstance.interceptors.request.use((config) => {
    const body = JSON.parse(zlib.gunzipSync(config.data).toString('utf8'))
    out.library = out.library || body.batch[0].context.library
    out.attempts.push({ url: config.url, status: null })
    return config
  })
  // Each answer, with the body's labels as they went out (axios names them at send time).
  const settle = (status, sent) => {
    const open = out.attempts.filter((a) => a.status === null)
    if (!open.length) return
    Object.assign(open[open.length - 1], {
      status,
      contentType: sent ? sent.getHeader('content-type') : null,
      contentEncoding: sent ? sent.getHeader('content-encoding') : null,
    })
  }
  client.axiosInstance.interceptors.response.use(
    (response) => { settle(response.status, response.request); return response },
    (error) => {
      settle(error.response ? error.response.status : String(error.code), error.request)
      throw error
    })
  const called = sendAll(client, calls, out, (params) =>
    params.timestamp ? { ...params, timestamp: new Date(params.timestamp) } : params)
  await client.flush()
  await Promise.all(called)
}

async function main() {
  const [library, url, writeKey, scenarioPath] = process.argv.slice(2)
  const send = { segment: sendSegment, rudderstack: sendRudderStack }[library]
  if (!send || !url || !writeKey || !scenarioPath) {
    console.error('usage: send.js segment|rudderstack COLLECTOR_URL WRITE_KEY SCENARIO.json')
    process.exit(2)
  }
  const scenario = JSON.parse(fs.readFileSync(scenarioPath, 'utf8'))
  const out = report()
  for (const calls of scenario.batches) {
    await send(url, writeKey, calls, out)
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
