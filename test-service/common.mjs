// Small pieces the test service and the broker stand-in share: JSON log lines, JSON bodies.

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 }

/** One JSON object per line on stdout, like the agent's logs: {time, level, service, msg, ...fields}. */
export function createLogger(service, level) {
  const threshold = LEVELS[level]
  if (threshold === undefined) {
    throw new Error(`log level must be one of ${Object.keys(LEVELS).join(', ')}, received ${JSON.stringify(level)}`)
  }
  const write = (name) => (msg, fields) => {
    if (LEVELS[name] < threshold) return
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level: name, service, msg, ...fields })}\n`)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}

const MAX_BODY = 1 << 20

/** Reads a JSON request body of at most 1 MiB; an empty body is `undefined`. */
export function readJsonBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    req.on('data', (chunk) => {
      size += chunk.length
      if (size > MAX_BODY) {
        reject(new Error('request body over 1 MiB'))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('error', reject)
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      if (text.trim() === '') return resolve(undefined)
      try {
        resolve(JSON.parse(text))
      } catch {
        reject(new Error('request body is not JSON'))
      }
    })
  })
}

export function sendJson(res, status, body) {
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
